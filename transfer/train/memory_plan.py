"""One device's memory for each training stage, with the run's layout: the loss kernel,
sharding over processes, activation checkpointing (see ``transfer.settings.memory_budget``,
which plans it before the first stage from the source's config; the trainer calls
:func:`device_memory_plan` with its own model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from transfer.train.memory import MemoryEstimate


@dataclass(frozen=True)
class StageMemory:
    """One training stage's memory on one device."""

    stage: str  # "embeddings" (the body frozen) or "full" (every weight)
    estimate: MemoryEstimate


@dataclass(frozen=True)
class MemoryPlan:
    """One device's memory for each training stage, and the layout it assumes."""

    stages: tuple[StageMemory, ...]
    device_type: str
    world_size: int
    sharding: str  # what it resolved to: "none" (one process), "ddp" or "fsdp"
    loss_kernel: str  # "full", "chunked" or "fused"
    activation_checkpointing: bool
    batch_size: int  # each process's micro-batch
    grad_accumulation: int
    block_size: int
    loss_note: str | None = None  # why the loss is not the kernel asked for

    @property
    def peak(self) -> MemoryEstimate:
        """The largest stage's estimate: what must fit."""
        return max((s.estimate for s in self.stages), key=lambda e: e.total)


def checkpointed_activations(activations: int, *, layers: int, tokens: int, hidden: int) -> int:
    """Activations kept with activation checkpointing: every layer's input (the residual
    stream, float32 also under autocast) and one layer's own activations at a time (those
    of the layer being recomputed), instead of all layers' (``activations``)."""
    per_layer = activations // max(layers, 1)
    return min(activations, layers * tokens * hidden * 4 + per_layer)


def device_memory_plan(
    model: torch.nn.Module,
    stages: list[str],
    *,
    micro_batch: int,
    block_size: int,
    grad_accumulation: int = 1,
    device_type: str,
    bf16: bool,
    world_size: int = 1,
    sharding: str = "auto",
    activation_checkpointing: bool = False,
    loss_kernel: str = "auto",
    distills: bool = False,
    compiles: bool = False,
    available: int | None = None,
) -> MemoryPlan:
    """One device's memory for each of ``stages`` of training ``model`` (see the module doc).
    ``micro_batch`` and ``grad_accumulation`` are each of the ``world_size`` processes' (the
    trainer's ``TrainingConfig`` after ``per_process_batch``); ``available`` is one device's
    memory, for what ``sharding: auto`` becomes (fsdp when the whole model per device would
    not fit; None: unknown, ddp). The estimate of every stage with the whole model per
    device is ``estimate_for_phases``', the trainer's own; the loss, sharding and
    checkpointing terms are applied on top. The trainer can call this with its own model."""
    from dataclasses import replace

    from transfer.source.objective import model_objective
    from transfer.train.linear_cross_entropy import choose_loss_kernel, loss_memory_bytes
    from transfer.train.memory import _dims, _vocab_rows, estimate_for_phases
    from transfer.train.sharding import (
        fsdp_problem,
        gathered_bytes,
        per_device_estimate,
        resolve_sharding,
    )

    layers, hidden, _, _ = _dims(model)
    tokens = micro_batch * block_size
    choice = choose_loss_kernel(loss_kernel, objective=model_objective(model), config=model.config,
                                head=model.get_output_embeddings(), device_type=device_type)
    # distillation scores the student on the whole logits (transfer/train/distill.py)
    kernel = "full" if distills else choice.kernel
    loss = loss_memory_bytes(kernel, tokens=tokens, vocab=_vocab_rows(model), width=hidden,
                             matmul_bytes=2 if bf16 else 4)
    whole = []
    for stage in stages:
        estimate = estimate_for_phases(model, [stage], batch_size=micro_batch, block_size=block_size,
                                       activation_bytes=2 if bf16 else 4,
                                       fused_attention=True if device_type == "cuda" else None)
        activations = estimate.activations
        if activation_checkpointing:
            activations = checkpointed_activations(activations, layers=layers, tokens=tokens, hidden=hidden)
        whole.append(replace(estimate, activations=activations, logits=loss))
    needed = max(e.total for e in whole)
    resolved = resolve_sharding(sharding, world_size, needed=needed,
                                available=needed if available is None else available,
                                problem=fsdp_problem(distills=distills, compiles=compiles))
    if resolved == "fsdp":
        gathered = gathered_bytes(model)
        whole = [per_device_estimate(e, world_size, gathered_bytes=gathered) for e in whole]
    return MemoryPlan(stages=tuple(StageMemory(s, e) for s, e in zip(stages, whole, strict=True)),
                      device_type=device_type, world_size=world_size, sharding=resolved, loss_kernel=kernel,
                      activation_checkpointing=activation_checkpointing, batch_size=micro_batch,
                      grad_accumulation=grad_accumulation, block_size=block_size,
                      loss_note=None if distills else choice.note)
