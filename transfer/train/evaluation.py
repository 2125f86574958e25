"""Dev-set evaluation for learning curves: bits per byte (causal LMs) or masked-LM loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.errors import TrainingError


def dev_evaluator(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    objective: str = "causal",
    seed: int = 0,
    rate: float = 0.15,
) -> Callable[[PreTrainedModel], dict[str, float | None]]:
    """A function ``model -> {"bpb", "loss"}`` on the dev ``texts``.

    Causal: bits per byte exactly as :func:`transfer.evaluate.bpb.bits_per_byte` (DESIGN.md)
    and the loss in nats per scored token. Masked: the masked-LM loss with a fixed seed and
    masking rate (DESIGN.md: all strategies share the target tokenizer, so losses compare);
    BPB is not defined for a masked LM and is None.
    """
    texts = list(texts)
    if not texts:
        raise TrainingError("dev texts are empty")
    if objective == "causal":
        from transfer.evaluate.bpb import bits_per_byte

        def causal(model: PreTrainedModel) -> dict[str, float | None]:
            result = bits_per_byte(model, tokenizer, texts, batch_size=batch_size,
                                   device=device if device is not None else next(model.parameters()).device)
            return {"bpb": result.bpb, "loss": result.total_bits * math.log(2.0) / result.n_tokens}

        return causal

    from transfer.evaluate.masked_lm import masked_lm_loss

    def masked(model: PreTrainedModel) -> dict[str, float | None]:
        result = masked_lm_loss(model, tokenizer, texts, rate=rate, seed=seed, batch_size=batch_size,
                                device=device if device is not None else next(model.parameters()).device)
        return {"bpb": None, "loss": result.loss}

    return masked
