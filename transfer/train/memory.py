"""Estimate the memory a training configuration needs, and refuse one that will not fit.

On a GPU an oversized batch raises an out-of-memory error after the model has loaded; on
a CPU it is worse, the kernel's OOM killer ends the process without a message. So the
trainer estimates before the first step and refuses with a suggestion instead.

The estimate adds up (bytes):

- weights (float32 masters) + gradients and AdamW's two moments of the *trainable* weights;
- activations kept for the backward pass, per transformer layer and token, after
  Korthikanti et al. 2022 ("Reducing activation recomputation in large transformer
  models"): ``s*b*(10*h + 4*i)`` elements for the linear layers and norms, plus
  ``2.5*a*s*s*b`` for attention scores when the attention kernel materializes them
  (eager attention; SDPA/flash kernels do not);
- with the body frozen (the embeddings-only stage) the linear layers keep no inputs for
  weight gradients, so 0.6 of those activations: measured on an H200 (SmolLM2-135M's shape,
  32 x 1024 tokens, bf16) the embeddings-only stage peaked at 34.6 GiB against 47.8 GiB for
  the whole model (benchmarks/README.md, "On a GPU"), where the full-size estimate was 41%
  above the measured peak and could refuse a run that fits;
- the logits: float32 logits, their log-softmax and gradient (``3 * b*s*V * 4`` bytes);
- a fixed 1.2 margin for the allocator and temporaries.

It is an estimate, deliberately on the high side: its job is to catch configurations
that are clearly too large, before they crash.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from transfer.errors import MemoryBudgetError, TrainingError

MEMORY_LIMIT_ENV = "VOCAB_TRANSFER_MEMORY_LIMIT"
_MARGIN = 1.2
# share of the linear layers' and norms' activations kept when only the embeddings train
_FROZEN_BODY_ACTIVATIONS = 0.6
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000**2,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30, "t": 1 << 40, "tb": 1000**4, "tib": 1 << 40}


def parse_bytes(value: str | int) -> int:
    """``"2GiB"``, ``"512MB"``, ``"1e9"`` or an int -> bytes."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise TrainingError(f"memory size {value!r} is not a size like '2GiB' or '512MB'")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training step needs, by part."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int

    @property
    def total(self) -> int:
        return int((self.weights + self.gradients + self.optimizer + self.activations + self.logits) * _MARGIN)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def _text_config(model: torch.nn.Module) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _dims(model: torch.nn.Module) -> tuple[int, int, int, int]:
    """(layers, hidden, intermediate, heads) from the config, under the names HF uses."""
    config = _text_config(model)

    def first(*names: str, default: int) -> int:
        for name in names:
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return default

    hidden = first("hidden_size", "n_embd", "d_model", "dim", default=768)
    layers = first("num_hidden_layers", "n_layer", "num_layers", default=12)
    heads = first("num_attention_heads", "n_head", default=max(hidden // 64, 1))
    inner = first("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)
    return layers, hidden, inner, heads


def _vocab_rows(model: torch.nn.Module) -> int:
    """Rows of the logits: the head's ``out_features``, else the input embedding's
    ``num_embeddings`` (both plain and OFA's factorized modules have them, not always a
    ``.weight``), else the config's vocabulary size."""
    for module, rows in ((model.get_output_embeddings(), "out_features"),
                         (model.get_input_embeddings(), "num_embeddings")):
        if getattr(module, rows, None):
            return int(getattr(module, rows))
    return int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0)


def estimate_training_memory(
    model: torch.nn.Module,
    *,
    batch_size: int,
    block_size: int,
    trainable_parameters: int,
    activation_bytes: int = 4,
    fused_attention: bool | None = None,
    body_frozen: bool = False,
) -> MemoryEstimate:
    """Estimate one training step's memory (see module doc).

    ``activation_bytes`` is 2 under bf16 autocast, else 4. ``fused_attention`` says whether
    the attention kernel avoids materializing the score matrix (default: read the model's
    ``attn_implementation``; only "eager" materializes it). ``body_frozen``: only the
    embeddings train (fewer activations kept).
    """
    total_params = sum(p.numel() for p in model.parameters())
    layers, hidden, inner, heads = _dims(model)
    vocab = _vocab_rows(model)
    if fused_attention is None:
        fused_attention = getattr(_text_config(model), "_attn_implementation", "eager") not in (None, "eager")
    tokens = batch_size * block_size
    per_layer = tokens * (10 * hidden + 4 * inner) * activation_bytes
    if body_frozen:
        per_layer = int(per_layer * _FROZEN_BODY_ACTIVATIONS)
    if not fused_attention:
        per_layer += int(2.5 * heads * block_size * tokens * activation_bytes)
    return MemoryEstimate(
        weights=total_params * 4,
        gradients=trainable_parameters * 4,
        optimizer=trainable_parameters * 8,
        activations=layers * per_layer,
        logits=3 * tokens * vocab * 4,
    )


def estimate_for_phases(
    model: torch.nn.Module,
    phases: list[str],
    *,
    batch_size: int,
    block_size: int,
    activation_bytes: int = 4,
    fused_attention: bool | None = None,
) -> MemoryEstimate:
    """The largest estimate over a run's training phases (``embeddings``: the body frozen; ``full``:
    every weight trains). Leaves every parameter trainable afterwards."""
    from transfer.train.freezing import set_trainable

    estimates = []
    for name in phases:
        trainable = sum(p.numel() for p in set_trainable(model, name))
        estimates.append(estimate_training_memory(
            model, batch_size=batch_size, block_size=block_size, trainable_parameters=trainable,
            activation_bytes=activation_bytes, fused_attention=fused_attention, body_frozen=name == "embeddings"))
    for param in model.parameters():
        param.requires_grad_(True)
    return max(estimates, key=lambda e: e.total)



def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def available_memory(device: torch.device, limit: str | int | None = None) -> int:
    """Bytes the training may use on ``device``.

    ``limit`` (or the environment variable ``VOCAB_TRANSFER_MEMORY_LIMIT``) caps it, e.g. to
    share a machine. CUDA: free device memory. CPU: available RAM, capped by a cgroup limit.
    """
    forced = limit if limit is not None else os.environ.get(MEMORY_LIMIT_ENV)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        found = int(free)
    else:
        try:
            import psutil

            found = int(psutil.virtual_memory().available)
        except ImportError:  # pragma: no cover - psutil is a dependency
            found = int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        cgroup = _cgroup_limit()
        if cgroup is not None:
            found = min(found, cgroup)
    return min(found, parse_bytes(forced)) if forced is not None else found


def human_bytes(n: int) -> str:
    """A size a person reads at a glance: 812 KiB, 37.5 MiB, 2.41 GiB."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def check_memory(
    estimate: MemoryEstimate,
    available: int,
    *,
    device: torch.device,
    batch_size: int,
    block_size: int,
    grad_accumulation: int,
) -> None:
    """Raise :class:`MemoryBudgetError` when the estimate exceeds ``available``, with a
    configuration that keeps the effective batch and would fit, when one exists."""
    if estimate.total <= available:
        return
    fixed = estimate.weights + estimate.gradients + estimate.optimizer
    per_sample = (estimate.activations + estimate.logits) / max(batch_size, 1)
    hint = []
    room = available / _MARGIN - fixed
    if room <= 0:
        hint.append(
            "even the weights and optimizer state do not fit: train the embeddings only, "
            "use a GPU with more memory, or a smaller model"
        )
    else:
        fits = int(room // per_sample) if per_sample > 0 else batch_size
        if 1 <= fits < batch_size:
            new_batch = max(d for d in range(1, fits + 1) if batch_size % d == 0)
            hint.append(
                f"use batch_size={new_batch} with grad_accumulation="
                f"{grad_accumulation * batch_size // new_batch} (same effective batch)"
            )
        shorter = block_size
        while shorter > 8 and per_sample * batch_size * (shorter / block_size) > room:
            shorter //= 2
        if shorter < block_size:
            hint.append(f"or a shorter sequence, block_size={shorter}")
        if not hint:
            hint.append("use gradient accumulation with batch_size=1 or a shorter block_size")
    raise MemoryBudgetError(
        f"training needs about {human_bytes(estimate.total)} on {device} but only {human_bytes(available)} "
        f"is available (batch_size={batch_size}, block_size={block_size}; weights "
        f"{human_bytes(estimate.weights)}, gradients+optimizer {human_bytes(estimate.gradients + estimate.optimizer)}, "
        f"activations {human_bytes(estimate.activations)}, logits {human_bytes(estimate.logits)}): "
        + "; ".join(hint)
    )
