"""Dev-set evaluation for learning curves: bits per byte (causal LMs) or masked-LM loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.errors import TrainingError
from transfer.source.objective import METRIC_OF, Objective


def dev_evaluator(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    objective: Objective | None = None,
    seed: int = 0,
    rate: float = 0.15,
) -> Callable[[PreTrainedModel], dict[str, float | str | None]]:
    """A function ``model -> {"metric", "bpb", "loss"}`` on the dev ``texts``; the objective
    is the model's own (:func:`transfer.source.objective.model_objective`) unless given.

    Causal (``metric`` "bpb"): bits per byte exactly as
    :func:`transfer.evaluate.bpb.bits_per_byte` (docs/DESIGN.md) and the loss in nats per scored
    token. Masked (``metric`` "mlm_loss"): the masked-LM loss of
    :func:`transfer.evaluate.masked_lm.masked_lm_loss` with a fixed seed and masking rate,
    the evaluate stage's metric (docs/DESIGN.md, "Metric"; all strategies share the target
    tokenizer, so losses compare); BPB is not defined for a masked LM and is None.
    """
    texts = list(texts)
    if not texts:
        raise TrainingError("dev texts are empty")

    def evaluate(model: PreTrainedModel) -> dict[str, float | str | None]:
        from transfer.evaluate.score import score_model

        score = score_model(model, tokenizer, texts, batch_size=batch_size, objective=objective, rate=rate,
                            seed=seed, device=device if device is not None else next(model.parameters()).device)
        if score.metric == METRIC_OF["masked"]:
            return {"metric": score.metric, "bpb": None, "loss": score.value}
        # the loss in nats per scored token, beside bits per byte
        loss = score.details["total_bits"] * math.log(2.0) / score.details["n_tokens"]
        return {"metric": score.metric, "bpb": score.value, "loss": loss}

    return evaluate
