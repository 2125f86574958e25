"""One model's score on a set of texts, by its objective's metric: the single scoring
function that both the pipeline's ``evaluate`` stage and ``vocab-transfer evaluate`` call.

Bits per byte for causal LMs, which
compares models whatever their tokenizers; the masked-LM loss (fixed seed, 15% rate) for
masked LMs, which have no left-to-right likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.source.objective import METRIC_OF, Objective, model_objective


@dataclass(frozen=True)
class Score:
    """``metric`` ("bpb" or "mlm_loss", see ``METRIC_OF``), its ``value``, and the totals it
    was computed from (``BPBResult.to_dict()`` or ``MLMResult.to_dict()``)."""

    metric: str
    value: float
    details: dict[str, Any] = field(default_factory=dict)


def score_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    objective: Objective | None = None,
    rate: float = 0.15,
    seed: int = 0,
) -> Score:
    """Bits per byte of a causal model, the masked-LM loss of a masked one (masking ``rate``,
    ``seed``), on ``texts``: the one place that picks the metric by the model's objective
    (``model_objective``, unless ``objective`` is given)."""
    from transfer.evaluate.bpb import bits_per_byte
    from transfer.evaluate.masked_lm import masked_lm_loss

    objective = objective or model_objective(model)
    if objective == "masked":
        mlm = masked_lm_loss(model, tokenizer, texts, rate=rate, seed=seed, batch_size=batch_size, device=device)
        return Score(METRIC_OF[objective], mlm.loss, mlm.to_dict())
    bpb = bits_per_byte(model, tokenizer, texts, batch_size=batch_size, device=device)
    return Score(METRIC_OF[objective], bpb.bpb, bpb.to_dict())
