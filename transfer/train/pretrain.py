"""Continued pretraining, minimal form: train the embeddings only, on packed token blocks.

The skeleton's entry points, kept for their callers: :func:`pack_blocks` and
:func:`train_embeddings_only` now run on the real trainer (:mod:`transfer.train`) with
one embeddings-only stage, a constant learning rate and no clipping, so an initialization
is judged after a short fixed budget exactly as before (DESIGN: "Judge an initialization
at step 0 **and** after a short fixed training budget"): the same blocks and seed give the
same batches whatever the strategy, so strategies differ only by their initial embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel

from transfer.errors import TrainingError
from transfer.train.callbacks import TrainingCallback
from transfer.train.config import StageConfig, TrainingConfig
from transfer.train.data import pack_blocks
from transfer.train.freezing import freeze_all_but_embeddings
from transfer.train.trainer import train


@dataclass
class TrainLog:
    """What a training run did: the loss of every step and the evaluations by step.

    ``seconds`` is the wall time of the training steps only (evaluations excluded), so
    runs with different evaluation schedules compare on speed.
    """

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    evaluations: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports (evaluation steps become string keys in JSON)."""
        return asdict(self)


def _check_train_args(
    blocks: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    evaluate_at: Sequence[int],
    evaluate: Callable[[PreTrainedModel], float] | None,
) -> None:
    if not isinstance(blocks, torch.Tensor) or blocks.dim() != 2 or blocks.size(0) == 0:
        raise TrainingError("blocks must be a non-empty (n_blocks, block_size) tensor of token ids")
    if blocks.dtype != torch.long:
        raise TrainingError(f"blocks must hold token ids as torch.long, got {blocks.dtype}")
    if blocks.size(1) < 2:
        raise TrainingError(f"blocks must have block_size >= 2, got {blocks.size(1)}")
    if steps < 0:
        raise TrainingError(f"steps must be >= 0, got {steps}")
    if batch_size < 1:
        raise TrainingError(f"batch_size must be >= 1, got {batch_size}")
    if not lr > 0:
        raise TrainingError(f"lr must be > 0, got {lr}")
    bad = [s for s in evaluate_at if not 0 <= s <= steps]
    if bad:
        raise TrainingError(f"evaluate_at has steps outside 0..{steps}: {bad}")
    if evaluate_at and evaluate is None:
        raise TrainingError("evaluate_at is given but evaluate is None")


class _StepLoss(TrainingCallback):
    """Adapts the trainer's ``on_step(step, metrics)`` to the old ``on_step(step, loss)``."""

    def __init__(self, on_step: Callable[[int, float], None]) -> None:
        self._on_step = on_step

    def on_step(self, step: int, metrics: dict[str, Any]) -> None:
        self._on_step(step, metrics["loss"])


def train_embeddings_only(
    model: PreTrainedModel,
    blocks: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float = 5e-4,
    seed: int = 0,
    device: str | torch.device | None = None,
    evaluate_at: Sequence[int] = (),
    evaluate: Callable[[PreTrainedModel], float] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainLog:
    """Train only the embeddings (and an untied head) with the causal LM loss.

    AdamW (weight decay 0, constant ``lr``, no clipping) over
    :func:`freeze_all_but_embeddings`'s parameters; each step takes ``batch_size`` blocks
    in an order seeded with ``seed``. Dropout randomness is seeded too (in a forked RNG,
    leaving the caller's global RNG untouched). ``evaluate(model)`` runs at each step in
    ``evaluate_at`` (0 = before training, k = after k updates). ``on_step(step, loss)`` is
    called after each update. Afterwards the model is in eval mode with every parameter
    trainable again; the body weights are unchanged.
    """
    _check_train_args(blocks, steps, batch_size, lr, evaluate_at, evaluate)
    config = TrainingConfig(
        stages=[StageConfig("embeddings", steps=steps, lr=lr, schedule="constant")],
        batch_size=batch_size, clip_norm=None, seed=seed, objective="causal", precision="fp32",
        eval_at=tuple(evaluate_at), eval_at_start=False, eval_at_end=False,
    )
    callbacks = [_StepLoss(on_step)] if on_step is not None else []
    result = train(model, blocks, config, evaluate=evaluate, callbacks=callbacks, device=device)
    return TrainLog(
        losses=result.losses, steps=result.steps, tokens_seen=result.tokens_seen,
        seconds=result.seconds, evaluations={k: float(v) for k, v in result.evaluations.items()},
    )


__all__ = ["TrainLog", "TrainingError", "freeze_all_but_embeddings", "pack_blocks", "train_embeddings_only"]
