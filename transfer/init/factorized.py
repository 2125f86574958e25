"""Factorized embeddings (OFA): per-token coordinates times shared primitive vectors.

OFA (Liu et al., "OFA: A Framework of Initializing Unseen Subword Embeddings for
Efficient Large-scale Multilingual Continued Pretraining", 2024) factorizes the source
embedding matrix E (V x d) with a truncated SVD into coordinates F (V x r) and primitives
P (r x d), E ~ F @ P. New tokens only need coordinates, and a model can keep the
factorized form during continued pretraining: V*r + r*d parameters instead of V*d.

Here P has orthonormal rows (P = the top-r right singular vectors) and F = U_r * S_r, so
the coordinates of any matrix in P's row space are recovered exactly by projection
(F = E @ P.T), and the factorization error of a row is its distance to that space.

:class:`FactorizedEmbedding` replaces a model's input embedding; with a tied head,
:class:`FactorizedHead` computes the logits from the *same* parameters (hidden @ P.T @ F.T,
which is also cheaper than hidden @ E.T when r << d). :func:`materialize` turns the model
back into a plain one (one ``nn.Embedding`` with the product, head tied to it), so the
saved folder loads with ``AutoModelFor...`` without this module. :func:`save_factorized`
writes such a plain folder plus the two factors, and :func:`load_factorized` restores the
factorized form from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.engine.cache import replacing_directory
from transfer.errors import FactorizationError
from transfer.source.heads import is_tied

FACTORS_FILE = "factorized_embedding.safetensors"


@dataclass(frozen=True)
class Factorization:
    """E ~ coordinates (V x r) @ primitives (r x d); primitives have orthonormal rows."""

    coordinates: torch.Tensor
    primitives: torch.Tensor

    @property
    def rank(self) -> int:
        return int(self.primitives.shape[0])

    def product(self) -> torch.Tensor:
        return self.coordinates @ self.primitives

    def project(self, matrix: torch.Tensor) -> torch.Tensor:
        """Coordinates of ``matrix``'s rows in the primitives' space (exact for rows in it)."""
        return matrix.to(self.primitives.dtype) @ self.primitives.T


def check_rank_value(rank: int) -> None:
    """The part of :func:`check_rank` that needs no matrix (run before any stage)."""
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise FactorizationError(f"rank must be an integer >= 1, got {rank!r}")


def check_rank(rank: int, matrix_shape: tuple[int, ...], what: str = "embedding matrix") -> None:
    """Refuse ranks that are not a real reduction: above the hidden size (or row count)."""
    n_rows, width = int(matrix_shape[0]), int(matrix_shape[1])
    check_rank_value(rank)
    if rank > width:
        raise FactorizationError(
            f"rank {rank} is larger than the hidden size {width} of the {what}: "
            "a factorization cannot have more primitives than dimensions"
        )
    if rank > n_rows:
        raise FactorizationError(f"rank {rank} is larger than the {n_rows} rows of the {what}")


def factorize(matrix: torch.Tensor, rank: int) -> Factorization:
    """Truncated SVD E = U S V^T -> coordinates U_r S_r, primitives V_r^T (rows orthonormal).

    Computed in float64 (the small singular directions of a float32 SVD are noisy),
    returned in ``matrix``'s dtype."""
    check_rank(rank, tuple(matrix.shape))
    u, s, vh = torch.linalg.svd(matrix.detach().to(torch.float64), full_matrices=False)
    coordinates = (u[:, :rank] * s[:rank]).to(matrix.dtype)
    primitives = vh[:rank].to(matrix.dtype).contiguous()
    return Factorization(coordinates.contiguous(), primitives)


def embedding_parameters(n_rows: int, width: int, rank: int | None = None) -> int:
    """Parameters of an embedding matrix: V*d in full, V*r + r*d factorized."""
    return n_rows * width if rank is None else n_rows * rank + rank * width


class FactorizedEmbedding(nn.Module):
    """Input embedding E = coordinates @ primitives, looked up without building E."""

    def __init__(
        self, coordinates: torch.Tensor, primitives: torch.Tensor, padding_idx: int | None = None
    ) -> None:
        super().__init__()
        if coordinates.dim() != 2 or primitives.dim() != 2 or coordinates.shape[1] != primitives.shape[0]:
            raise FactorizationError(
                f"coordinates {tuple(coordinates.shape)} and primitives {tuple(primitives.shape)} "
                "do not multiply: need (V, r) and (r, d)"
            )
        self.coordinates = nn.Parameter(coordinates.detach().clone())
        self.primitives = nn.Parameter(primitives.detach().clone())
        self.padding_idx = padding_idx

    @property
    def num_embeddings(self) -> int:
        return int(self.coordinates.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.primitives.shape[1])

    @property
    def rank(self) -> int:
        return int(self.primitives.shape[0])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(input_ids, self.coordinates) @ self.primitives

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden @ E.T computed as (hidden @ P.T) @ F.T: r*(d + V) per position, not d*V."""
        return (hidden @ self.primitives.T) @ self.coordinates.T

    def materialized(self) -> torch.Tensor:
        return self.coordinates @ self.primitives

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}"


class FactorizedHead(nn.Module):
    """Output head tied to a :class:`FactorizedEmbedding`: its parameters are the
    embedding's own (the module is shared, not copied), plus an optional bias."""

    def __init__(self, embedding: FactorizedEmbedding, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.embedding = embedding
        self.bias = bias if bias is None or isinstance(bias, nn.Parameter) else nn.Parameter(bias)

    @property
    def in_features(self) -> int:
        return self.embedding.embedding_dim

    @property
    def out_features(self) -> int:
        return self.embedding.num_embeddings

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.embedding.logits(hidden)
        return logits + self.bias if self.bias is not None else logits


def factorize_model(
    model: PreTrainedModel,
    rank: int | None = None,
    *,
    primitives: torch.Tensor | None = None,
) -> FactorizedEmbedding:
    """Replace ``model``'s input embedding (and a tied head) by a factorized one, in place.

    Either ``rank`` (truncated SVD of the current matrix) or ``primitives`` (r x d with
    orthonormal rows, e.g. the source model's, so OFA's target coordinates are recovered
    exactly by projection). An untied head is left as it is. Returns the new module.
    """
    embedding = model.get_input_embeddings()
    if isinstance(embedding, FactorizedEmbedding):
        raise FactorizationError(f"{type(model).__name__} already has a factorized embedding")
    weight = getattr(embedding, "weight", None)
    if weight is None:
        raise FactorizationError(f"{type(model).__name__}'s input embedding has no weight matrix")
    if (rank is None) == (primitives is None):
        raise FactorizationError("give exactly one of rank and primitives")
    tied = is_tied(model)
    if primitives is not None:
        if primitives.dim() != 2 or primitives.shape[1] != weight.shape[1]:
            raise FactorizationError(
                f"primitives have shape {tuple(primitives.shape)}, need (rank, {weight.shape[1]})"
            )
        check_rank(int(primitives.shape[0]), tuple(weight.shape))
        factors = Factorization(weight.detach() @ primitives.to(weight).T, primitives.to(weight))
    else:
        factors = factorize(weight, rank)
    module = FactorizedEmbedding(
        factors.coordinates, factors.primitives, getattr(embedding, "padding_idx", None)
    ).to(weight.device)
    head = model.get_output_embeddings()
    model.set_input_embeddings(module)
    if tied and head is not None:
        model.set_output_embeddings(FactorizedHead(module, getattr(head, "bias", None)))
    return module


def materialize(model: PreTrainedModel) -> PreTrainedModel:
    """Turn a factorized model back into a plain one, in place: an ``nn.Embedding`` holding
    coordinates @ primitives and, for a factorized head, an ``nn.Linear`` tied to it."""
    embedding = model.get_input_embeddings()
    if not isinstance(embedding, FactorizedEmbedding):
        raise FactorizationError(f"{type(model).__name__} has no factorized embedding to materialize")
    head = model.get_output_embeddings()
    with torch.no_grad():
        weight = nn.Parameter(embedding.materialized().detach().clone())
    plain = nn.Embedding(
        embedding.num_embeddings, embedding.embedding_dim, padding_idx=embedding.padding_idx,
        device=weight.device, dtype=weight.dtype,
    )
    plain.weight = weight
    model.set_input_embeddings(plain)
    if isinstance(head, FactorizedHead):
        linear = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None,
                           device=weight.device, dtype=weight.dtype)
        linear.weight = weight  # the same Parameter: the head stays tied
        if head.bias is not None:
            linear.bias = head.bias
        model.set_output_embeddings(linear)
    model.config.vocab_size = embedding.num_embeddings
    return model


def has_factors(folder: Path) -> bool:
    """Whether ``folder`` was written by :func:`save_factorized`, so a stage that continues
    from it (OFA's continued pretraining) should restore the factorized form."""
    return (Path(folder) / FACTORS_FILE).is_file()


def factorized_summary(model: PreTrainedModel) -> dict[str, Any]:
    """What OFA's factorization saves in ``model``: rank, whether the head shares the
    factors, and the embedding parameters V*r + r*d against the full V*d."""
    module = model.get_input_embeddings()
    if not isinstance(module, FactorizedEmbedding):
        raise FactorizationError(f"{type(model).__name__} has no factorized embedding to summarize")
    n_rows, width = module.num_embeddings, module.embedding_dim
    return {
        "rank": module.rank,
        "tied_head": is_tied(model),
        "embedding_parameters": embedding_parameters(n_rows, width, module.rank),
        "full_embedding_parameters": embedding_parameters(n_rows, width),
    }


def save_factorized(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path
) -> Path:
    """Save a factorized model as a plain Hugging Face folder (the product materialized,
    loadable without this package) plus ``factorized_embedding.safetensors`` with the two
    factors, written to a temporary sibling and renamed. The model stays factorized."""
    module = model.get_input_embeddings()
    if not isinstance(module, FactorizedEmbedding):
        raise FactorizationError(f"{type(model).__name__} has no factorized embedding to save")
    head = model.get_output_embeddings()
    out_dir = Path(out_dir)
    with replacing_directory(out_dir) as tmp:
        materialize(model)
        try:
            model.save_pretrained(tmp)
        finally:  # put the factorized modules back whatever happened
            model.set_input_embeddings(module)
            if isinstance(head, FactorizedHead):
                model.set_output_embeddings(head)
        tokenizer.save_pretrained(tmp)
        save_file(
            {"coordinates": module.coordinates.detach().cpu().contiguous(),
             "primitives": module.primitives.detach().cpu().contiguous()},
            str(tmp / FACTORS_FILE),
            metadata={"format": "pt", "rank": str(module.rank)},
        )
    return out_dir


def load_factorized(
    folder: Path, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a folder written by :func:`save_factorized` back into the factorized form.

    The plain weights are loaded as usual, then the stored factors replace the embedding;
    they must reproduce the stored matrix, otherwise the two files do not belong together."""
    from transfer.source.loading import load_source

    folder = Path(folder)
    factors_path = folder / FACTORS_FILE
    if not factors_path.is_file():
        raise FactorizationError(f"{folder}: no {FACTORS_FILE}; was it saved with save_factorized?")
    factors = load_file(str(factors_path))
    if set(factors) != {"coordinates", "primitives"}:
        raise FactorizationError(f"{factors_path}: expected tensors coordinates and primitives, got {sorted(factors)}")
    model, tokenizer = load_source(str(folder), dtype=dtype)
    weight = model.get_input_embeddings().weight
    coordinates, primitives = factors["coordinates"].to(dtype), factors["primitives"].to(dtype)
    if coordinates.shape[0] != weight.shape[0] or primitives.shape[1] != weight.shape[1]:
        raise FactorizationError(
            f"{factors_path}: factors {tuple(coordinates.shape)} x {tuple(primitives.shape)} do not "
            f"match the model's {tuple(weight.shape)} embedding matrix"
        )
    product = coordinates @ primitives
    if not torch.allclose(product, weight.detach().cpu(), atol=1e-4, rtol=1e-4):
        raise FactorizationError(f"{factors_path}: the factors' product differs from the saved embedding matrix")
    tied = is_tied(model)
    head = model.get_output_embeddings()
    module = FactorizedEmbedding(coordinates, primitives, model.get_input_embeddings().padding_idx)
    model.set_input_embeddings(module)
    if tied and head is not None:
        model.set_output_embeddings(FactorizedHead(module, getattr(head, "bias", None)))
    return model, tokenizer
