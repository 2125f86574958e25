"""Settings of a continued-pretraining run: phases, optimizer, schedule, batching, devices."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from transfer.errors import TrainingError
from transfer.train.schedule import ScheduleName

Precision = Literal["auto", "fp32", "bf16"]


@dataclass
class PhaseConfig:
    """One training phase: ``embeddings`` (body frozen) or ``full`` (every weight)."""

    name: Literal["embeddings", "full"]
    steps: int
    lr: float
    warmup_steps: int = 0
    schedule: ScheduleName = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0


@dataclass
class TrainingConfig:
    """Everything that decides what the trainer computes (plus a few how-settings).

    ``batch_size`` is the micro-batch per process; one optimizer step sees
    ``batch_size * grad_accumulation * world_size`` blocks. ``eval_every`` and
    ``checkpoint_every`` count optimizer steps over all phases (0 = never);
    ``eval_at`` adds explicit steps. ``precision="auto"`` is bf16 autocast on a GPU that
    supports it, float32 otherwise.
    """

    phases: list[PhaseConfig]
    batch_size: int = 4
    grad_accumulation: int = 1
    clip_norm: float | None = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    seed: int = 0
    objective: Literal["auto", "causal", "masked"] = "auto"
    mlm_rate: float = 0.15
    precision: Precision = "auto"
    eval_every: int = 0
    eval_at: tuple[int, ...] = ()
    eval_at_start: bool = True
    eval_at_end: bool = True
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    memory_limit: str | int | None = None  # cap on the memory the run may use ("8GiB")
    # vocabulary rows 0..frozen_rows-1 (input embedding, untied head and bias) stay exactly
    # as they start: an extended vocabulary's source rows (transfer/train/row_freeze.py)
    frozen_rows: int = 0
    # torch.compile the model for the forward and backward passes: the same numbers up to
    # float rounding, faster once compiled (worth it on a GPU beyond a few hundred steps).
    # True: torch's default backend (inductor); a string names another torch.compile backend
    compile: bool | str = False
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept in results

    @property
    def total_steps(self) -> int:
        return sum(phase.steps for phase in self.phases)

    def validate(self) -> None:
        if not self.phases:
            raise TrainingError("phases is empty: give at least one PhaseConfig")
        for i, stage in enumerate(self.phases):
            if stage.name not in ("embeddings", "full"):
                raise TrainingError(f"phases[{i}].name must be 'embeddings' or 'full', got {stage.name!r}")
            if stage.steps < 0:
                raise TrainingError(f"phases[{i}].steps must be >= 0, got {stage.steps}")
            if not stage.lr > 0:
                raise TrainingError(f"phases[{i}].lr must be > 0, got {stage.lr}")
            if stage.warmup_steps < 0 or stage.weight_decay < 0 or not 0 <= stage.min_lr_ratio <= 1:
                raise TrainingError(f"phases[{i}]: warmup_steps, weight_decay >= 0 and min_lr_ratio in [0, 1]")
        if self.batch_size < 1:
            raise TrainingError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.grad_accumulation < 1:
            raise TrainingError(f"grad_accumulation must be >= 1, got {self.grad_accumulation}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise TrainingError(f"clip_norm must be > 0 or None, got {self.clip_norm}")
        if self.eval_every < 0 or self.checkpoint_every < 0:
            raise TrainingError("eval_every and checkpoint_every must be >= 0")
        bad = [s for s in self.eval_at if not 0 <= s <= self.total_steps]
        if bad:
            raise TrainingError(f"eval_at has steps outside 0..{self.total_steps}: {bad}")
        if not 0 < self.mlm_rate < 1:
            raise TrainingError(f"mlm_rate must be in (0, 1), got {self.mlm_rate}")
        if self.frozen_rows < 0:
            raise TrainingError(f"frozen_rows must be >= 0, got {self.frozen_rows}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise TrainingError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share (how-settings such as intervals excluded)."""
        data = asdict(self)
        for how in ("eval_every", "eval_at", "eval_at_start", "eval_at_end", "checkpoint_every",
                    "keep_checkpoints", "memory_limit", "compile", "extra"):
            data.pop(how)
        if not self.frozen_rows:  # only when set, so earlier runs' checkpoints keep their identity
            data.pop("frozen_rows")
        return data

    def effective_batch_tokens(self, block_size: int, world_size: int = 1) -> int:
        """Tokens per optimizer step over all processes."""
        return self.batch_size * self.grad_accumulation * world_size * block_size


def accumulation_for(batch_tokens: int, *, batch_size: int, block_size: int, world_size: int = 1) -> int:
    """Gradient-accumulation steps that reach an effective batch of about ``batch_tokens``
    tokens per optimizer step (at least 1), given the micro-batch and process count."""
    if batch_tokens < 1 or batch_size < 1 or block_size < 1 or world_size < 1:
        raise TrainingError("batch_tokens, batch_size, block_size and world_size must be >= 1")
    return max(1, round(batch_tokens / (batch_size * block_size * world_size)))


def per_device_defaults(device_type: str) -> dict[str, Any]:
    """Sensible starting points: micro-batch and precision for a CPU or a GPU.

    A GPU runs larger micro-batches in bf16; a CPU small ones in float32 (bf16 matmuls on
    CPUs without AMX are slower than float32). Reach a larger effective batch with
    ``grad_accumulation``.
    """
    if device_type == "cuda":
        return {"batch_size": 16, "precision": "auto", "block_size": 1024}
    return {"batch_size": 4, "precision": "fp32", "block_size": 256}
