"""New target rows from the shared tokens, weighted in a helper model's embedding space.

The helper-model strategies (CLP-Transfer, Ostendorff & Rehm 2023; tokenizer transplantation
by orthogonal matching pursuit, Goddard & Fernandes Neto 2025, arXiv 2506.06607) share one
shape. A *helper* model already speaks the target language and its tokenizer is the target
tokenizer, so every target token has a helper row, but the helper is not the model we want
(smaller, or another architecture, or another width). Tokens the source and target
vocabularies share (``match_overlap``) have a row in both spaces: they keep their source row
("copied") and serve as anchors. Every other target token is written as a combination of
anchors *in the helper's space*, and the same coefficients applied to the anchors' *source*
rows give its new source-space row; the strategies differ only in how they find the
coefficients (a ``Combine`` function). Coefficients never cross the two spaces, so the
helper's width may differ from the source's.

Which helper matrix weights which source matrix (``helper_passes``): the input embeddings
always come from the helper's input embeddings. An untied source head (and its bias) gets its
own coefficients from the helper's untied head when the helper has one: each head encodes
"what predicts this token", a different geometry from the input side (as mergekit's
tokensurgeon treats the input embeddings and the LM head separately); a tied helper has only
one matrix, so the head reuses the input coefficients. A tied source with a bias (BERT's
decoder) gets the input coefficients for the bias too.

A token whose helper row is zero or not finite (a reserved, never-trained row) has no
direction to combine, and one the strategy's rule refuses has no sensible combination: both
fall back to the source's mean row (``fallback_mean_rows``, DESIGN: random rows hurt a tied
head), labelled "fallback" when either matrix fell back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from transfer.errors import StrategyResourceError
from transfer.init.base import SourceEmbeddings, StrategyInputs
from transfer.init.strategies.mean import fallback_mean_rows
from transfer.init.strategies.overlap import match_overlap

#: ``combine(queries (n_q, d_h), anchors (n_a, d_h), values (n_a, c)) -> (rows (n_q, c), ok (n_q,))``:
#: each query's row as a combination of the anchors' ``values``; ``ok`` False where the rule
#: refuses a query (that token falls back to the mean).
Combine = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

def check_helper(inputs: StrategyInputs, strategy: str) -> SourceEmbeddings:
    """The helper's matrices, refused when missing or when they cannot be the target
    tokenizer's (fewer rows than target tokens; a padded helper vocabulary may have more)."""
    helper = inputs.resources.helper_embeddings
    if helper is None:
        raise StrategyResourceError(
            f"strategy {strategy!r} needs a helper model: set helper_model to a model whose "
            "tokenizer is the target tokenizer (resources.helper_embeddings is None)"
        )
    n_target = len(inputs.target_tokenizer)
    for name, matrix in (("input", helper.input), ("output", helper.output)):
        if matrix is None:
            continue
        if matrix.dim() != 2:
            raise StrategyResourceError(
                f"helper_model: its {name} embeddings must be a 2-d matrix, got shape {tuple(matrix.shape)}"
            )
        if matrix.shape[0] < n_target:
            raise StrategyResourceError(
                f"helper_model has {matrix.shape[0]} {name} embedding rows but the target tokenizer "
                f"has {n_target} tokens: the helper's tokenizer must be the target tokenizer"
            )
    if helper.output is not None and helper.output.shape[1] != helper.input.shape[1]:
        raise StrategyResourceError(
            f"helper_model: its head has width {helper.output.shape[1]} but its input embeddings "
            f"{helper.input.shape[1]}"
        )
    return helper


def usable_rows(matrix: torch.Tensor) -> torch.Tensor:
    """(n,) mask of rows with a direction: finite and not all zero."""
    return torch.isfinite(matrix).all(dim=1) & (torch.linalg.vector_norm(matrix, dim=1) > 0)


@dataclass(frozen=True)
class HelperPass:
    """One helper matrix and the source matrices (of ``input``, ``output``, ``output_bias``)
    whose rows its coefficients combine."""

    side: str  # "input" or "head", for the report
    helper: torch.Tensor
    targets: tuple[str, ...]


def helper_passes(source: SourceEmbeddings, helper: SourceEmbeddings) -> list[HelperPass]:
    """The input side from the helper's input embeddings; an untied source head (and bias)
    from the helper's untied head when it has one, else with the input side's coefficients."""
    head = tuple(name for name, m in (("output", source.output), ("output_bias", source.output_bias))
                 if m is not None)
    if not head or helper.output is None or source.output is None:
        return [HelperPass("input", helper.input, ("input", *head))]
    return [HelperPass("input", helper.input, ("input",)), HelperPass("head", helper.output, head)]


@dataclass
class HelperRows:
    """The target matrices (``output``/``output_bias`` None where the source has none), a
    label per target id and the report's notes."""

    input: torch.Tensor
    output: torch.Tensor | None
    output_bias: torch.Tensor | None
    labels: list[str]
    notes: list[str]


def transfer_with_helper(
    inputs: StrategyInputs,
    combine: Combine,
    *,
    strategy: str,
    fallback_covariance_scale: float,
    rule: str,
) -> HelperRows:
    """Copied shared rows, ``combine``'s rows for the other target tokens, the mean for
    tokens it cannot place; ``rule`` names the combination in the notes."""
    helper = check_helper(inputs, strategy)
    source = inputs.source
    n_target = len(inputs.target_tokenizer)
    match = match_overlap(inputs.source_tokenizer, inputs.target_tokenizer)
    anchor_t = torch.tensor(match.target_ids, dtype=torch.long)
    anchor_s = torch.tensor(match.source_ids, dtype=torch.long)
    is_anchor = torch.zeros(n_target, dtype=torch.bool)
    is_anchor[anchor_t] = True
    new_ids = (~is_anchor).nonzero().squeeze(1)

    # the bias as a (V_s, 1) matrix, so all three take the same row operations
    matrices = {
        "input": source.input,
        "output": source.output,
        "output_bias": source.output_bias.unsqueeze(1) if source.output_bias is not None else None,
    }
    out: dict[str, torch.Tensor] = {}
    for name, matrix in matrices.items():
        if matrix is None:
            continue
        rows = torch.empty(n_target, matrix.shape[1], dtype=matrix.dtype)
        rows[anchor_t] = matrix.detach()[anchor_s]
        out[name] = rows

    fell_back = torch.zeros(n_target, dtype=torch.bool)
    notes = [
        (f"copied {len(anchor_t)} tokens the source shares ({match.identical} identical strings, "
         f"{match.same_boundary} same surface and word boundary in another spelling, "
         f"{match.other_boundary} same surface after stripping the word-boundary marker)")
    ]
    for step in helper_passes(source, helper):
        space = step.helper[:n_target].detach().to(torch.float32)
        usable = usable_rows(space)
        keys = usable[anchor_t]
        queries = new_ids[usable[new_ids]]
        values = torch.cat(
            [matrices[name].detach()[anchor_s[keys]].to(torch.float32) for name in step.targets], dim=1
        )
        n_keys = int(keys.sum())
        if n_keys and len(queries):
            combined, ok = combine(space[queries], space[anchor_t[keys]], values)
        else:
            combined = torch.empty(0, values.shape[1])
            ok = torch.zeros(len(queries), dtype=torch.bool)
        computed = queries[ok]
        placed = torch.zeros(n_target, dtype=torch.bool)
        placed[computed] = True
        fallback = new_ids[~placed[new_ids]]
        fell_back[fallback] = True
        start = 0
        for name in step.targets:
            width = out[name].shape[1]
            out[name][computed] = combined[ok][:, start:start + width].to(out[name].dtype)
            start += width
            out[name][fallback] = fallback_mean_rows(
                matrices[name], len(fallback), seed=inputs.seed, covariance_scale=fallback_covariance_scale
            )
        no_row = len(new_ids) - len(queries)
        matrix_names = " and ".join({"input": "input embeddings", "output": "head",
                                     "output_bias": "head bias"}[n] for n in step.targets)
        notes.append(
            f"{step.side} side (helper {'head' if step.side == 'head' else 'input embeddings'}, "
            f"width {space.shape[1]}, for the source {matrix_names}): {len(computed)} new tokens "
            f"{rule} over {n_keys} shared tokens with a helper row; {len(fallback)} fell back to "
            f"the mean ({no_row} without a usable helper row, {len(queries) - len(computed)} "
            "refused by the rule)"
        )
    if len(anchor_t) == 0:
        notes.append("no token is shared by the source and target vocabularies: every new row is the mean")

    labels = [
        "copied" if shared else ("fallback" if fallback else "computed")
        for shared, fallback in zip(is_anchor.tolist(), fell_back.tolist(), strict=True)
    ]
    bias = out.get("output_bias")
    return HelperRows(
        input=out["input"],
        output=out.get("output"),
        output_bias=bias.squeeze(1) if bias is not None else None,
        labels=labels,
        notes=notes,
    )
