"""One device's memory for a Hydra run's training: the single-language plan of the same shape
(``transfer.settings.memory_budget``), plus what only a Hydra model holds.

A Hydra step trains one language through the shared body, so its gradients, activations and
loss are those of one model of the target vocabulary (the plan of a run of one language). On
top stay resident: the source language's own table (and untied head), which never trains, and
every other target language's table (and head) with the AdamW moments it gathered when it
trained (gradients are dropped after each step, so only the step's language has them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from transfer.settings.memory_budget import planning_device, training_memory_plan
from transfer.train.memory_plan import MemoryPlan, StageMemory

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from transfer.settings.config import AdaptConfig

_FLOAT32 = 4
_ADAM_MOMENTS = 2


def _table_bytes(rows: int, hidden: int, tied: bool) -> int:
    return rows * hidden * _FLOAT32 * (1 if tied else 2)


def hydra_memory_plan(cfg: AdaptConfig, config: PretrainedConfig, *, device_type: str | None = None,
                      available: int | None = None) -> MemoryPlan | None:
    """The memory of each training stage of Hydra run ``cfg`` on one device (see the module doc);
    None without training. Every target table has ``vocab_size`` rows (the budget: an upper
    bound where a tokenizer stops short of it)."""
    plan = training_memory_plan(cfg, config, device_type=device_type, available=available)
    if plan is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    tied = bool(getattr(text, "tie_word_embeddings", getattr(config, "tie_word_embeddings", True)))
    hidden = int(text.hidden_size)
    target_table = _table_bytes(cfg.vocab_size, hidden, tied)
    others = len(cfg.target_languages) - 1
    weights = _table_bytes(int(text.vocab_size), hidden, tied) + others * target_table
    optimizer = others * _ADAM_MOMENTS * target_table
    stages = tuple(StageMemory(s.stage, replace(s.estimate, weights=s.estimate.weights + weights,
                                                optimizer=s.estimate.optimizer + optimizer))
                   for s in plan.stages)
    return replace(plan, stages=stages)


def planned_hydra_memory(cfg: AdaptConfig, config: PretrainedConfig | None, *,
                         planning_only: bool = False) -> tuple[MemoryPlan, int] | None:
    """(the Hydra plan on the device the trainer would use, the bytes one such device has);
    None without training or a readable source config."""
    if config is None or not cfg.total_train_steps:
        return None
    device_type, available = planning_device(cfg, planning_only=planning_only)
    plan = hydra_memory_plan(cfg, config, device_type=device_type, available=available)
    return (plan, available) if plan is not None else None


def check_hydra_memory(cfg: AdaptConfig, config: PretrainedConfig | None, *, planning_only: bool = False) -> None:
    """Raise ``MemoryBudgetError`` before the first stage when the Hydra training would not fit
    one device (the message names what is needed, what is there, and a batch that fits)."""
    import torch

    from transfer.errors import MemoryBudgetError
    from transfer.train.memory import check_memory

    planned = planned_hydra_memory(cfg, config, planning_only=planning_only)
    if planned is None:
        return
    plan, available = planned
    try:
        check_memory(plan.peak, available, device=torch.device(plan.device_type), batch_size=plan.batch_size,
                     block_size=cfg.block_size, grad_accumulation=plan.grad_accumulation)
    except MemoryBudgetError as error:
        raise MemoryBudgetError(f"hydra ({len(cfg.target_languages)} target tables and heads on one body): "
                                f"refused before the first stage: {error}") from error
