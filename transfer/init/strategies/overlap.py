"""``overlap``: copy the source row of every target token the source vocabulary also has.

The simplest form of vocabulary overlap reuse (as in FOCUS and OFA, which copy shared
tokens before computing the rest). A target token matches a source token with the same
surface string; tokenizers of different families write word boundaries differently
(``Ġ`` byte-level, ``▁`` SentencePiece, ``##`` WordPiece continuation), so surface forms
are compared as bytes with the marker turned into a "starts a word" flag, and a match with
the same flag is preferred over one with the other flag. Everything else falls back to
the mean row (``fallback_mean_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from transfer.init.base import (
    InitReport,
    StrategyInputs,
    TargetEmbeddings,
    map_source_matrices,
)
from transfer.init.registry import register
from transfer.init.strategies.mean import (
    DEFAULT_COVARIANCE_SCALE,
    check_fallback_params,
    fallback_mean_rows,
)
from transfer.tokenizer.special_tokens import (
    model_vocab,
    special_token_ids,
    token_surface,
    tokenizer_family,
)


@dataclass(frozen=True)
class OverlapMatch:
    """Target ids with a source id, split by how they matched."""

    target_ids: list[int]
    source_ids: list[int]
    identical: int  # same token string in the same family
    same_boundary: int  # same surface and word-boundary status, spelled differently
    other_boundary: int  # same surface once the word-boundary marker is stripped


def _surface_index(
    tok: PreTrainedTokenizerBase,
) -> tuple[dict[str, int], dict[tuple[bytes, bool], int], dict[bytes, int]]:
    """Lookups for the source: raw string, (surface, starts word), and surface alone.
    The lowest id wins ties (BPE ids grow with merge order, so the more frequent form)."""
    info = tokenizer_family(tok)
    excluded = special_token_ids(tok)
    by_string: dict[str, int] = {}
    by_key: dict[tuple[bytes, bool], int] = {}
    by_surface: dict[bytes, int] = {}
    for token, idx in sorted(model_vocab(tok).items(), key=lambda kv: kv[1]):
        if idx in excluded:
            continue
        surface, starts_word = token_surface(token, info)
        by_string.setdefault(token, idx)
        by_key.setdefault((surface, starts_word), idx)
        by_surface.setdefault(surface, idx)
    return by_string, by_key, by_surface


def match_overlap(
    source_tok: PreTrainedTokenizerBase, target_tok: PreTrainedTokenizerBase
) -> OverlapMatch:
    """Match every target model-vocabulary token to a source token, if one exists."""
    same_family = tokenizer_family(source_tok) == tokenizer_family(target_tok)
    target_info = tokenizer_family(target_tok)
    by_string, by_key, by_surface = _surface_index(source_tok)
    target_ids: list[int] = []
    source_ids: list[int] = []
    counts = {"identical": 0, "same_boundary": 0, "other_boundary": 0}
    for token, idx in sorted(model_vocab(target_tok).items(), key=lambda kv: kv[1]):
        surface, starts_word = token_surface(token, target_info)
        if same_family and token in by_string:
            found, kind = by_string[token], "identical"
        elif (surface, starts_word) in by_key:
            found, kind = by_key[(surface, starts_word)], "same_boundary"
        elif surface in by_surface:
            found, kind = by_surface[surface], "other_boundary"
        else:
            continue
        target_ids.append(idx)
        source_ids.append(found)
        counts[kind] += 1
    return OverlapMatch(target_ids, source_ids, **counts)


@register("overlap", check=check_fallback_params)
def overlap(
    inputs: StrategyInputs, *, fallback_covariance_scale: float = DEFAULT_COVARIANCE_SCALE
) -> TargetEmbeddings:
    """Copied rows for overlapping tokens, mean rows (``fallback_mean_rows``) for the rest."""
    n_target = len(inputs.target_tokenizer)
    match = match_overlap(inputs.source_tokenizer, inputs.target_tokenizer)
    target_index = torch.tensor(match.target_ids, dtype=torch.long)
    source_index = torch.tensor(match.source_ids, dtype=torch.long)
    copied = torch.zeros(n_target, dtype=torch.bool)
    copied[target_index] = True
    fallback_index = (~copied).nonzero().squeeze(1)

    def rule(matrix: torch.Tensor) -> torch.Tensor:
        out = torch.empty(n_target, matrix.shape[1], dtype=matrix.dtype)
        out[target_index] = matrix.detach()[source_index]
        out[fallback_index] = fallback_mean_rows(
            matrix,
            len(fallback_index),
            seed=inputs.seed,
            covariance_scale=fallback_covariance_scale,
        )
        return out

    target_input, target_output, target_bias = map_source_matrices(inputs.source, rule)
    labels = ["copied" if flag else "fallback" for flag in copied.tolist()]
    report = InitReport(
        strategy="overlap",
        params={"fallback_covariance_scale": fallback_covariance_scale},
        n_target=n_target,
        labels=labels,
        notes=[
            (
                f"copied {len(match.target_ids)}: {match.identical} identical strings, "
                f"{match.same_boundary} same surface and word boundary in another spelling, "
                f"{match.other_boundary} same surface after stripping the word-boundary marker"
            ),
            f"{len(fallback_index)} tokens not in the source vocabulary fell back to the mean",
        ],
    )
    return TargetEmbeddings(target_input, target_output, target_bias, report)
