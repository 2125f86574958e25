"""``wechsel``: similarity-weighted source embeddings in an aligned static-vector space.

WECHSEL (Minixhofer, Paischer and Rekabsaz, NAACL 2022) maps every token of both
vocabularies into one cross-lingual static word-vector space (fastText n-gram composition
of the token's surface string, or the frequency-weighted mean of the vectors of the words
whose tokenization contains the token), then gives each target token the average of the
embeddings of its k most cosine-similar source tokens, weighted by
softmax(similarity / T). Published defaults: k = 10, T = 0.1.

Differences from the authors' package, on purpose: the similarity search is one float32
blocked matrix product plus top-k (``transfer.similarity``) instead of a Python loop per
token; source tokens without a vector are never chosen as neighbours (the package lets
their zero vectors compete at similarity 0); target tokens without a vector fall back to
the mean row (``fallback_mean_rows``), not to random rows, which DESIGN.md measured to hurt
a tied head.

The neighbour search and weights are shared with OFA (``neighbour_weights``,
``combine_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from transfer.errors import TokenVectorError
from transfer.similarity import SEARCH_METHODS, cosine_topk, normalize_rows
from transfer.strategies.base import (
    InitReport,
    StrategyInputs,
    TargetEmbeddings,
    map_source_matrices,
)
from transfer.strategies.mean import DEFAULT_COVARIANCE_SCALE, fallback_mean_rows
from transfer.strategies.registry import register

DEFAULT_K = 10
DEFAULT_TEMPERATURE = 0.1
TOKEN_VECTOR_METHODS: tuple[str, ...] = ("ngram", "word_average")


@dataclass(frozen=True)
class TokenVectorPair:
    """Token vectors of both vocabularies in one space: (V, dim) float32 matrices and (V,)
    bool masks of the rows that have a vector (an all-zero row never counts)."""

    source: torch.Tensor
    source_has: torch.Tensor
    target: torch.Tensor
    target_has: torch.Tensor
    method: str


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


def _fit_rows(vectors: Any, n_rows: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(matrix, has_vector) of exactly ``n_rows`` rows: tokens the vectors do not cover
    (added tokens past the end) get no vector; an all-zero row counts as no vector."""
    matrix = getattr(vectors, "matrix", None)
    has = getattr(vectors, "has_vector", None)
    if matrix is not None:
        matrix = torch.as_tensor(matrix)
    if matrix is None or has is None or matrix.dim() != 2:
        raise TokenVectorError(
            f"{side} token vectors must have .matrix (V, dim) and .has_vector (V,), "
            f"got {type(vectors).__name__}"
        )
    has = torch.as_tensor(has).to(torch.bool)
    if has.shape != (matrix.shape[0],):
        raise TokenVectorError(
            f"{side} token vectors: has_vector has shape {tuple(has.shape)}, "
            f"matrix has {matrix.shape[0]} rows"
        )
    matrix = matrix.to(torch.float32)
    if matrix.shape[0] < n_rows:
        pad = n_rows - matrix.shape[0]
        matrix = torch.cat([matrix, matrix.new_zeros(pad, matrix.shape[1])])
        has = torch.cat([has, has.new_zeros(pad)])
    matrix, has = matrix[:n_rows], has[:n_rows]
    nonzero = matrix.abs().sum(dim=1) > 0
    return matrix, has & nonzero


def resolve_token_vectors(inputs: StrategyInputs, n_source: int, n_target: int) -> TokenVectorPair:
    """Token vectors from ``inputs.resources``: precomputed ``source_token_vectors`` /
    ``target_token_vectors``, or computed from ``aligned_vectors`` (an AlignedPair) with
    ``token_vector_method`` ("ngram" by default, or "word_average"; then optional
    ``source_word_frequencies`` / ``target_word_frequencies`` {word: count} weight the
    words, else every word of the vectors counts once)."""
    res = inputs.resources
    method = res.get("token_vector_method", "ngram")
    if "source_token_vectors" in res or "target_token_vectors" in res:
        missing = [k for k in ("source_token_vectors", "target_token_vectors") if k not in res]
        if missing:
            raise TokenVectorError(f"resources has one side of the token vectors but not {missing}")
        source, target = res["source_token_vectors"], res["target_token_vectors"]
        coverage = getattr(source, "coverage", None)  # transfer.subwords.TokenVectors
        if isinstance(coverage, dict) and "method" in coverage:
            method = coverage["method"]
    elif "aligned_vectors" in res:
        if method not in TOKEN_VECTOR_METHODS:
            raise TokenVectorError(
                f"token_vector_method={method!r} is unknown; use one of {TOKEN_VECTOR_METHODS}"
            )
        from transfer.subwords import token_vectors

        aligned = res["aligned_vectors"]
        sides = []
        for side, tokenizer, vectors in (("source", inputs.source_tokenizer, aligned.source),
                                         ("target", inputs.target_tokenizer, aligned.target)):
            kwargs: dict[str, Any] = {}
            frequencies = res.get(f"{side}_word_frequencies")
            if method == "word_average" and frequencies:
                # WECHSEL weights each word by its corpus frequency (fastText's counts)
                kwargs["words"] = list(frequencies)
                kwargs["word_frequencies"] = [float(f) for f in frequencies.values()]
            sides.append(token_vectors(tokenizer, vectors, method=method, **kwargs))
        source, target = sides
    else:
        raise TokenVectorError(
            "this strategy needs static vectors in resources: either 'source_token_vectors' "
            "and 'target_token_vectors', or 'aligned_vectors' (transfer.alignment.AlignedPair)"
        )
    s_matrix, s_has = _fit_rows(source, n_source, "source")
    t_matrix, t_has = _fit_rows(target, n_target, "target")
    if s_matrix.shape[1] != t_matrix.shape[1]:
        raise TokenVectorError(
            f"source token vectors have dimension {s_matrix.shape[1]}, target ones "
            f"{t_matrix.shape[1]}: they must be in one aligned space"
        )
    if not bool(s_has.any()):
        raise TokenVectorError("no source token has a vector: nothing to take neighbours from")
    return TokenVectorPair(s_matrix, s_has, t_matrix, t_has, str(method))


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


@register("wechsel")
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
    check_search_params(k, temperature, search)
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
