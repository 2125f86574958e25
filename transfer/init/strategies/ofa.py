"""``ofa``: OFA's factorized initialization (Liu et al., 2024).

The source embedding matrix is factorized by a truncated SVD into coordinates (V x r) and
shared primitives (r x d) (``transfer.init.factorized``). Target tokens that the source
vocabulary also has copy their coordinates (matched by surface form, as in ``overlap``);
the others get the softmax(similarity / T)-weighted average of the coordinates of their k
most similar source tokens in the aligned static-vector space (the WECHSEL neighbour
search, ``neighbour_weights``); tokens with neither fall back to the mean coordinates.
The target matrix is coordinates @ primitives.

The strategy returns the plain product (so every later stage works unchanged) together
with the primitives (:class:`FactorizedTargetEmbeddings`); ``factorize_model(model,
primitives=result.primitives)`` after surgery gives the model its factorized embedding,
whose coordinates are recovered exactly for every row the strategy computed (rows later
replaced by ``initialize``, special and byte tokens, become their rank-r projection).
A rank above the hidden size is refused before any work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transfer.init.base import InitReport, StrategyInputs, TargetEmbeddings
from transfer.init.factorized import (
    Factorization,
    check_rank,
    check_rank_value,
    embedding_parameters,
    factorize,
)
from transfer.init.registry import register
from transfer.init.strategies.mean import DEFAULT_COVARIANCE_SCALE, fallback_mean_rows
from transfer.init.strategies.overlap import match_overlap
from transfer.init.strategies.wechsel import (
    DEFAULT_K,
    DEFAULT_TEMPERATURE,
    NeighbourWeights,
    check_wechsel_params,
    combine_rows,
    neighbour_weights,
)
from transfer.init.vector_resources import resolve_token_vectors

DEFAULT_RANK = 100


@dataclass
class FactorizedTargetEmbeddings(TargetEmbeddings):
    """Target matrices plus the source primitives (r x d) of the input factorization."""

    primitives: torch.Tensor | None = None
    rank: int = 0


def _target_coordinates(
    source_coordinates: torch.Tensor,
    n_target: int,
    copy_target: torch.Tensor,
    copy_source: torch.Tensor,
    neighbours: NeighbourWeights,
    fallback_index: torch.Tensor,
    *,
    seed: int,
    covariance_scale: float,
) -> torch.Tensor:
    """Target coordinates: copied, similarity-weighted, or mean rows."""
    out = torch.empty(n_target, source_coordinates.shape[1], dtype=source_coordinates.dtype)
    combine_rows(source_coordinates, neighbours, out)
    out[copy_target] = source_coordinates[copy_source]
    out[fallback_index] = fallback_mean_rows(
        source_coordinates, len(fallback_index), seed=seed, covariance_scale=covariance_scale
    )
    return out


def check_ofa_params(rank: int, k: int, temperature: float, search: str, fallback_covariance_scale: float) -> None:
    """Every rule on OFA's parameter values that needs no model (the registry runs it before
    any stage; the rank's bound by the hidden size is checked when the model is at hand)."""
    check_rank_value(rank)
    check_wechsel_params(k, temperature, search, fallback_covariance_scale)


@register("ofa", needs={"vectors"}, check=check_ofa_params)
def ofa(
    inputs: StrategyInputs,
    *,
    rank: int = DEFAULT_RANK,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    search: str = "exact",
    fallback_covariance_scale: float = DEFAULT_COVARIANCE_SCALE,
) -> FactorizedTargetEmbeddings:
    """OFA: copy overlapping tokens' coordinates, similarity-weight the rest, fall back to
    the mean; the rows are coordinates @ primitives of a rank-``rank`` SVD."""
    source = inputs.source
    check_rank(rank, tuple(source.input.shape), "source input embedding matrix")
    if source.output is not None:
        check_rank(rank, tuple(source.output.shape), "source output matrix")
    check_wechsel_params(k, temperature, search, fallback_covariance_scale)
    n_target = len(inputs.target_tokenizer)
    n_source = source.input.shape[0]
    vectors = resolve_token_vectors(inputs, n_source, n_target)

    match = match_overlap(inputs.source_tokenizer, inputs.target_tokenizer)
    pairs = [(t, s) for t, s in zip(match.target_ids, match.source_ids) if t < n_target and s < n_source]
    copy_target = torch.tensor([t for t, _ in pairs], dtype=torch.long)
    copy_source = torch.tensor([s for _, s in pairs], dtype=torch.long)
    copied = torch.zeros(n_target, dtype=torch.bool)
    copied[copy_target] = True
    # only tokens that are not copied need neighbours
    neighbours = neighbour_weights(
        vectors.source, vectors.source_has, vectors.target, vectors.target_has & ~copied,
        k=k, temperature=temperature, search=search,
    )
    computed = torch.zeros(n_target, dtype=torch.bool)
    computed[neighbours.target_ids] = True
    fallback_index = (~(copied | computed)).nonzero().squeeze(1)

    def rule(matrix: torch.Tensor, factors: Factorization | None) -> torch.Tensor:
        # factors None: a width-1 matrix (the head bias) is averaged directly, same weights
        coords = matrix.detach() if factors is None else factors.coordinates
        target = _target_coordinates(
            coords, n_target, copy_target, copy_source, neighbours, fallback_index,
            seed=inputs.seed, covariance_scale=fallback_covariance_scale,
        )
        return (target if factors is None else target @ factors.primitives).to(matrix.dtype)

    input_factors = factorize(source.input, rank)
    target_input = rule(source.input, input_factors)
    target_output = None
    if source.output is not None:
        target_output = rule(source.output, factorize(source.output, rank))
    target_bias = None
    if source.output_bias is not None:
        target_bias = rule(source.output_bias.unsqueeze(1), None).squeeze(1)

    labels = [
        "copied" if c else ("computed" if m else "fallback")
        for c, m in zip(copied.tolist(), computed.tolist())
    ]
    width = source.input.shape[1]
    energy = float(input_factors.product().norm() ** 2 / source.input.to(input_factors.coordinates).norm() ** 2)
    report = InitReport(
        strategy="ofa",
        params={"rank": rank, "k": k, "temperature": temperature, "search": search,
                "token_vector_method": vectors.method,
                "fallback_covariance_scale": fallback_covariance_scale},
        n_target=n_target,
        labels=labels,
        notes=[
            (f"rank-{rank} SVD keeps {energy:.1%} of the source matrix's squared norm; "
             f"factorized target embedding: {embedding_parameters(n_target, width, rank):,} "
             f"parameters vs {embedding_parameters(n_target, width):,} full"),
            f"{int(copied.sum())} overlapping tokens copied their coordinates",
            (f"{int(computed.sum())} tokens from their {neighbours.source_ids.shape[1]} nearest "
             f"source tokens' coordinates (softmax(sim / {temperature:g}), {search} search, "
             f"{vectors.method} token vectors)"),
            f"{len(fallback_index)} tokens neither overlapping nor with a token vector fell back to the mean",
        ],
    )
    return FactorizedTargetEmbeddings(
        target_input, target_output, target_bias, report,
        primitives=input_factors.primitives, rank=rank,
    )
