"""Vocabulary extension on the embedding side: the source's rows stay, the strategy fills
only the appended ones.

An extended tokenizer (``tokenizer_builds.extend``) keeps every source token at its id, so
the source's trained rows are exactly right for them; whatever a strategy computed for
those ids is replaced by the source's rows, and its rows for the new ids are kept. With FVT
a new token's row is then the mean of the source rows of its decomposition by the source
tokenizer (Gee et al., 2022), which for an appended token is exact: the decomposition is
how the source spelled that string before the extension.

The tokenizer stage records the extension (``transfer.tokenizer.extension_record``).
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import torch

from transfer.errors import VocabTransferError
from transfer.init.base import SourceEmbeddings, TargetEmbeddings

Target = TypeVar("Target", bound=TargetEmbeddings)


def _with_source_rows(
    matrix: torch.Tensor | None, source: torch.Tensor | None, n_old: int, what: str
) -> torch.Tensor | None:
    if matrix is None or source is None:
        if (matrix is None) != (source is None):
            raise VocabTransferError(f"extension: the target {what} and the source's do not match "
                                     "(one is missing)")
        return matrix
    if source.shape[0] < n_old:
        raise VocabTransferError(
            f"extension: the source {what} has {source.shape[0]} rows but its tokenizer has "
            f"{n_old} ids; the old rows cannot be kept"
        )
    if matrix.shape[0] < n_old:
        raise VocabTransferError(
            f"extension: the target {what} has {matrix.shape[0]} rows, fewer than the "
            f"{n_old} source ids it must keep"
        )
    kept = matrix.clone()
    kept[:n_old] = source[:n_old].to(dtype=kept.dtype, device=kept.device)
    return kept


def keep_source_rows(target: Target, source: SourceEmbeddings, n_old: int) -> Target:
    """``target`` with rows ``0 .. n_old - 1`` of every matrix (input, untied output, head
    bias) replaced by the source's, labelled ``copied``; the appended rows unchanged."""
    labels = list(target.report.labels)
    changed = sum(1 for label in labels[:n_old] if label != "copied")
    labels[:n_old] = ["copied"] * min(n_old, len(labels))
    report = dataclasses.replace(
        target.report,
        labels=labels,
        notes=[*target.report.notes,
               (f"vocabulary extension: rows 0..{n_old - 1} are the source's ({changed} were "
               f"computed by the strategy and replaced); {len(labels) - n_old} appended rows "
               "from the strategy")],
    )
    return dataclasses.replace(
        target,
        input=_with_source_rows(target.input, source.input, n_old, "input matrix"),
        output=_with_source_rows(target.output, source.output, n_old, "output matrix"),
        output_bias=_with_source_rows(target.output_bias, source.output_bias, n_old, "head bias"),
        report=report,
    )
