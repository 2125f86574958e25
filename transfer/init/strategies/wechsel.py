"""``wechsel``: similarity-weighted source embeddings in an aligned static-vector space.

WECHSEL (Minixhofer, Paischer and Rekabsaz, NAACL 2022) maps every token of both
vocabularies into one cross-lingual static word-vector space (fastText n-gram composition
of the token's surface string, or the frequency-weighted mean of the vectors of the words
whose tokenization contains the token), then gives each target token the average of the
embeddings of its k most cosine-similar source tokens, weighted by
softmax(similarity / T). Published defaults: k = 10, T = 0.1.

Differences from the authors' package, on purpose: the similarity search is one float32
blocked matrix product plus top-k (``transfer.init.similarity``) instead of a Python loop per
token; source tokens without a vector are never chosen as neighbours (the package lets
their zero vectors compete at similarity 0); target tokens without a vector fall back to
the mean row (``fallback_mean_rows``), not to random rows, which docs/DESIGN.md measured to hurt
a tied head.

The neighbour search and weights are shared with OFA and trans-tokenization's fallback
(``neighbour_weights``, ``combine_rows``); the token vectors come from
``transfer.init.vector_resources``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transfer.errors import TokenVectorError
from transfer.init.base import (
    InitReport,
    StrategyInputs,
    TargetEmbeddings,
    map_source_matrices,
)
from transfer.init.registry import register
from transfer.init.similarity import SEARCH_METHODS, cosine_topk, normalize_rows
from transfer.init.strategies.mean import (
    DEFAULT_COVARIANCE_SCALE,
    check_covariance_scale,
    fallback_mean_rows,
)
from transfer.init.vector_resources import resolve_token_vectors

DEFAULT_K = 10
DEFAULT_TEMPERATURE = 0.1


@dataclass(frozen=True)
class NeighbourWeights:
    """For each target row in ``target_ids``: its k source rows and their softmax weights
    (each row of ``weights`` sums to one) and cosine similarities, best first."""

    target_ids: torch.Tensor  # (m,) int64
    source_ids: torch.Tensor  # (m, k) int64
    weights: torch.Tensor  # (m, k) float32
    scores: torch.Tensor  # (m, k) float32


def check_search_params(k: int, temperature: float, search: str) -> None:
    if not isinstance(k, int) or k < 1:
        raise TokenVectorError(f"k (number of neighbours) must be an integer >= 1, got {k!r}")
    if not temperature > 0:
        raise TokenVectorError(f"temperature must be > 0, got {temperature!r}")
    if search not in SEARCH_METHODS:
        raise TokenVectorError(f"search={search!r} is unknown; use one of {SEARCH_METHODS}")


def check_wechsel_params(k: int, temperature: float, search: str, fallback_covariance_scale: float) -> None:
    """Every rule on WECHSEL's parameter values (the registry runs it before any stage)."""
    check_search_params(k, temperature, search)
    check_covariance_scale(fallback_covariance_scale, "fallback_covariance_scale")


def neighbour_weights(
    source_vectors: torch.Tensor,
    source_has: torch.Tensor,
    target_vectors: torch.Tensor,
    target_has: torch.Tensor,
    *,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    search: str = "exact",
    device: str | torch.device | None = None,
) -> NeighbourWeights:
    """The k most cosine-similar source tokens of every target token that has a vector,
    weighted by softmax(similarity / temperature). Source tokens without a vector are not
    candidates; k is capped at the number of candidates."""
    check_search_params(k, temperature, search)
    candidates = source_has.nonzero().squeeze(1)
    queries = target_has.nonzero().squeeze(1)
    k = min(k, int(candidates.numel()))
    keys, _ = normalize_rows(source_vectors[candidates])
    found = cosine_topk(target_vectors[queries], keys, k, method=search, device=device)
    weights = torch.softmax(found.scores / temperature, dim=1)
    return NeighbourWeights(queries, candidates[found.indices], weights, found.scores)


def combine_rows(
    matrix: torch.Tensor, neighbours: NeighbourWeights, out: torch.Tensor
) -> torch.Tensor:
    """Write sum_j weights[i, j] * matrix[source_ids[i, j]] into ``out[target_ids[i]]``.

    Accumulates one neighbour rank at a time, so the extra memory is one (m, d) matrix,
    not (m, k, d)."""
    rows = matrix.detach().to(torch.float32)
    acc = torch.zeros(neighbours.target_ids.numel(), rows.shape[1], dtype=torch.float32)
    for j in range(neighbours.source_ids.shape[1]):
        acc.addcmul_(rows.index_select(0, neighbours.source_ids[:, j]), neighbours.weights[:, j : j + 1])
    out[neighbours.target_ids] = acc.to(out.dtype)
    return out


@register("wechsel", needs={"vectors"}, check=check_wechsel_params)
def wechsel(
    inputs: StrategyInputs,
    *,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    search: str = "exact",
    fallback_covariance_scale: float = DEFAULT_COVARIANCE_SCALE,
) -> TargetEmbeddings:
    """Softmax(similarity / T)-weighted average of the k nearest source tokens' rows;
    target tokens without a token vector fall back to the mean row."""
    check_wechsel_params(k, temperature, search, fallback_covariance_scale)
    n_target = len(inputs.target_tokenizer)
    n_source = inputs.source.input.shape[0]
    vectors = resolve_token_vectors(inputs, n_source, n_target)
    neighbours = neighbour_weights(
        vectors.source, vectors.source_has, vectors.target, vectors.target_has,
        k=k, temperature=temperature, search=search,
    )
    computed = torch.zeros(n_target, dtype=torch.bool)
    computed[neighbours.target_ids] = True
    fallback_index = (~computed).nonzero().squeeze(1)

    def rule(matrix: torch.Tensor) -> torch.Tensor:
        out = torch.empty(n_target, matrix.shape[1], dtype=matrix.dtype)
        combine_rows(matrix, neighbours, out)
        out[fallback_index] = fallback_mean_rows(
            matrix, len(fallback_index), seed=inputs.seed, covariance_scale=fallback_covariance_scale
        )
        return out

    target_input, target_output, target_bias = map_source_matrices(inputs.source, rule)
    labels = ["computed" if flag else "fallback" for flag in computed.tolist()]
    params = {"k": k, "temperature": temperature, "search": search,
              "token_vector_method": vectors.method,
              "fallback_covariance_scale": fallback_covariance_scale}
    report = InitReport(
        strategy="wechsel",
        params=params,
        n_target=n_target,
        labels=labels,
        notes=[
            (f"token vectors ({vectors.method}): {int(vectors.source_has.sum())}/{n_source} "
             f"source and {int(vectors.target_has.sum())}/{n_target} target tokens have one"),
            (f"{int(computed.sum())} tokens from their {neighbours.source_ids.shape[1]} nearest "
             f"source tokens (softmax(sim / {temperature:g}), {search} search); mean top-1 "
             f"similarity {float(neighbours.scores[:, 0].mean()) if neighbours.scores.numel() else 0.0:.3f}"),
            f"{len(fallback_index)} tokens without a token vector fell back to the mean",
        ],
    )
    return TargetEmbeddings(target_input, target_output, target_bias, report)
