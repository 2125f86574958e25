"""Training a Hydra model (trans-tokenization, Remy et al. 2024): one shared body, each batch in
one language through that language's table and head.

The recipe is the product trainer's (``transfer.train``): packed blocks and their seeded order
(``pack_train_split``, ``BlockOrder``), the causal loss without the whole logits (``loss_sum``),
the learning-rate schedule (``lr_at``), gradient clipping, AdamW, and its two phases: the new
tables and heads alone (body frozen), then optionally the body too. What Hydra adds is the
choice of a language per optimizer step: drawn from a generator seeded with ``seed``, language i
with probability q_i proportional to n_i^alpha (its train bytes; part A's sampling,
``transfer.corpus.many_languages.sampling_shares``), and the swap of that language's table and
head into the body before the step. With ``checkpoint_every`` the training writes the product
trainer's atomic checkpoints (``transfer.train.checkpoint``: safetensors weights of every table,
head and the body, the optimizer's moments, the generators, and the step, each language's
position in its block order and the log so far); a run started again over the same folder
resumes from the latest one and ends where the uninterrupted run would. Precision follows the product trainer (``precision``:
bf16 autocast on a GPU that supports it under ``auto``, or asked for; float32 weights). The source language's own table and head stay as the source
model had them (they read the source language; nothing trains them), so only the body and the
step's language's rows move in a step (AdamW skips parameters without a gradient).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from transfer.errors import NonFiniteLossError, TrainingError
from transfer.hydra.model import HydraModel
from transfer.train.config import PhaseConfig
from transfer.train.data import BlockOrder, PackedData
from transfer.train.objectives import LossKernel, loss_sum, make_batch
from transfer.train.schedule import lr_at

if TYPE_CHECKING:
    from transfer.train.distributed import DistContext


@dataclass(frozen=True)
class HydraTraining:
    """The phases (``transfer.train.PhaseConfig``: ``embeddings`` then optionally ``full``), the
    batch, the language sampling exponent and the seed."""

    phases: list[PhaseConfig]
    batch_size: int = 4
    grad_accumulation: int = 1
    clip_norm: float | None = 1.0
    alpha: float = 0.3
    seed: int = 0
    loss_kernel: LossKernel = "auto"
    precision: str = "auto"  # the product trainer's rule: bf16 autocast on a GPU that has it
    checkpoint_every: int = 0  # optimizer steps between checkpoints (0: none)


@dataclass
class HydraLog:
    """What the training did: per step its language, loss and learning rate; the samples and
    bytes each language trained on; the shares languages were drawn with."""

    languages: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    shares: dict[str, float] = field(default_factory=dict)
    steps_per_language: dict[str, int] = field(default_factory=dict)
    bytes_seen: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def language_schedule(shares: dict[str, float], steps: int, seed: int) -> list[str]:
    """The language of each optimizer step: ``steps`` draws with probabilities ``shares``, from a
    generator seeded with ``seed`` (the same every run)."""
    names = [lang for lang, share in shares.items() if share > 0]
    if not names:
        raise TrainingError("Hydra training: no language has training text")
    weights = torch.tensor([shares[lang] for lang in names], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    draws = torch.multinomial(weights, steps, replacement=True, generator=generator) if steps else torch.empty(0)
    return [names[int(i)] for i in draws.tolist()]


def _trainable(hydra: HydraModel, phase: str) -> list[torch.nn.Parameter]:
    """The new languages' tables and heads, and in phase ``full`` the body; never the source's."""
    for param in hydra.parameters():
        param.requires_grad_(False)
    found: dict[int, torch.nn.Parameter] = {}
    for lang in hydra.languages:
        if lang == hydra.source_language:
            continue
        for module in (hydra.tables[lang], hydra.heads[lang]):
            found.update({id(p): p for p in module.parameters()})
    if phase == "full":
        found.update({id(p): p for _, p in hydra.body_parameters()})
    for param in found.values():
        param.requires_grad_(True)
    return list(found.values())


def _optimizer(params: list[torch.nn.Parameter], phase: PhaseConfig) -> torch.optim.AdamW:
    # decay matrices only (the product trainer's rule); AdamW skips parameters without a gradient
    decay = [p for p in params if p.dim() >= 2]
    plain = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": phase.weight_decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=phase.lr)


def _identity(hydra: HydraModel, data: dict[str, PackedData], config: HydraTraining) -> dict[str, str]:
    """What a checkpoint must match to be resumed: the settings, the languages and their data."""
    import hashlib
    import json

    settings = {k: v for k, v in asdict(config).items() if k != "checkpoint_every"}  # how often: not what
    payload = {"config": settings, "languages": hydra.languages,
               "data": {lang: [packed.n_blocks, packed.n_bytes] for lang, packed in sorted(data.items())}}
    return {"hydra": hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]}


def train_hydra(hydra: HydraModel, data: dict[str, PackedData], config: HydraTraining, *,
                device: torch.device | str = "cpu", checkpoint_dir: Path | None = None,
                ctx: DistContext | None = None) -> HydraLog:
    """Train ``hydra`` on each language's packed ``data`` (a target language without data is
    never drawn): ``config.phases`` in order, each optimizer step in one language; with
    ``checkpoint_dir`` and ``config.checkpoint_every``, checkpointed and resumed there.

    ``ctx``: this process's place among several (torchrun). Every process draws the same
    language for a step (one seeded schedule) and takes its share of the step's blocks
    (``config.batch_size`` and ``grad_accumulation`` are each process's, as the product
    trainer's); the gradients of the step's parameters are summed over the processes in one
    collective, so the step is that of one process with the whole batch. Only the first
    process writes checkpoints."""
    from contextlib import nullcontext

    from transfer.corpus.many_languages import sampling_shares
    from transfer.train.distributed import DistContext, barrier
    from transfer.train.run_inputs import uses_bf16

    ctx = ctx or DistContext()

    unknown = [lang for lang in data if lang not in hydra.languages or lang == hydra.source_language]
    if unknown or not data:
        raise TrainingError(f"Hydra training: data for {unknown or 'no language'}; give blocks of the model's target "
                            f"languages {[lang for lang in hydra.languages if lang != hydra.source_language]}")
    device = torch.device(device)
    hydra.to(device).train()
    bf16 = uses_bf16(config.precision, device)
    # weights and optimizer state stay float32; only the forward computes in bf16
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    shares = sampling_shares({lang: packed.n_bytes for lang, packed in data.items()}, config.alpha)
    total = sum(phase.steps for phase in config.phases)
    schedule = language_schedule(shares, total, config.seed)
    orders = {lang: BlockOrder(packed.n_blocks, config.seed) for lang, packed in data.items()}
    positions = dict.fromkeys(data, 0)
    log = HydraLog(shares=shares, steps_per_language=dict.fromkeys(data, 0), bytes_seen=dict.fromkeys(data, 0),
                   precision="bf16" if bf16 else "fp32")
    started = time.perf_counter()
    step = 0
    identity = _identity(hydra, data, config)
    resumed = _resume(hydra, checkpoint_dir, identity, log, positions) if config.checkpoint_every else None
    prior = 0.0  # seconds trained before the checkpoint resumed
    if resumed is not None:
        step, prior = resumed["step"], resumed["seconds"]
    for phase in config.phases:
        if phase.steps == 0:
            continue
        params = _trainable(hydra, phase.name)
        optimizer = _optimizer(params, phase)
        first = 1
        if resumed is not None:
            done_before = sum(p.steps for p in config.phases[:config.phases.index(phase)])
            if step >= done_before + phase.steps:
                continue  # this phase ended before the checkpoint
            first = step - done_before + 1
            if first > 1 and resumed["phase"] == phase.name:
                from transfer.train.checkpoint import load_optimizer

                load_optimizer(resumed["path"], optimizer)
        for phase_step in range(first, phase.steps + 1):
            lang = schedule[step]
            lr = lr_at(phase_step, peak=phase.lr, total_steps=phase.steps, warmup_steps=phase.warmup_steps,
                       schedule=phase.schedule, min_lr_ratio=phase.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = _step(hydra, lang, data[lang], orders[lang], positions, config, device, autocast, ctx)
            if config.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], config.clip_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            samples = config.batch_size * config.grad_accumulation * ctx.world_size
            log.languages.append(lang)
            log.losses.append(loss)
            log.lrs.append(lr)
            log.steps_per_language[lang] += 1
            log.bytes_seen[lang] += round(samples * data[lang].block_size * data[lang].bytes_per_token)
            step += 1
            if checkpoint_dir is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
                from transfer.train.checkpoint import save_checkpoint

                # the source's table in the body while saving, as in a model just built: the body's
                # shared tensors then name the same table when a resume loads them
                hydra.use(hydra.source_language)
                if ctx.rank == 0:  # one folder every process resumes from
                    save_checkpoint(checkpoint_dir, step, model=hydra, optimizer=optimizer, state={
                        "identity": identity, "phase": phase.name, "positions": positions, "log": log.to_dict(),
                        "seconds": prior + time.perf_counter() - started})
                barrier(ctx)
    log.seconds = prior + time.perf_counter() - started
    for param in hydra.parameters():
        param.requires_grad_(False)
    hydra.use(hydra.source_language).eval()
    return log


def _resume(hydra: HydraModel, checkpoint_dir: Path | None, identity: dict[str, str], log: HydraLog,
            positions: dict[str, int]) -> dict[str, Any] | None:
    """Load the latest checkpoint in ``checkpoint_dir`` (weights, generators, positions, log) when
    there is one of this run; None when there is none (a checkpoint of another run is refused)."""
    from transfer.train.checkpoint import (
        check_identity,
        latest_checkpoint,
        load_weights,
        restore_rng,
    )

    path = latest_checkpoint(checkpoint_dir)
    if path is None:
        return None
    state = check_identity(path, identity)
    hydra.use(hydra.source_language)  # as when the checkpoint was saved
    load_weights(path, hydra)
    restore_rng(path)
    positions.update(state["positions"])
    for name, value in state["log"].items():
        setattr(log, name, value)
    return {"path": path, "step": int(state["step"]), "phase": state["phase"], "seconds": float(state["seconds"])}


def _step(hydra: HydraModel, lang: str, data: PackedData, order: BlockOrder, positions: dict[str, int],
          config: HydraTraining, device: torch.device, autocast: Any, ctx: DistContext) -> float:
    """One optimizer step's gradients in ``lang`` (its table and head swapped in), this process's
    share of the step's blocks, summed over the processes; the step's mean loss."""
    from transfer.train.distributed import all_reduce_sum

    lm = hydra.use(lang)
    world, rank, size = ctx.world_size, ctx.rank, config.batch_size
    per_step = size * config.grad_accumulation * world
    start = positions[lang]
    indices = order.take(start, per_step)
    positions[lang] += per_step
    micro = []
    for m in range(config.grad_accumulation):
        lo = (m * world + rank) * size  # the product trainer's split of a step over processes
        micro.append(make_batch(data.rows(indices[lo:lo + size]), torch.arange(start + lo, start + lo + size),
                                "causal").to(device))
    n_targets = float(all_reduce_sum(torch.tensor(float(sum(b.n_targets for b in micro)), device=device), ctx))
    total = torch.zeros((), device=device)
    for batch in micro:
        with autocast:
            summed = loss_sum(lm, batch, "causal", kernel=config.loss_kernel)
        (summed / n_targets).backward()
        total += summed.detach().float()
    if ctx.enabled:
        _sum_gradients(hydra, device, ctx)
    mean = float(all_reduce_sum(total, ctx)) / n_targets
    if not math.isfinite(mean):
        raise NonFiniteLossError(f"Hydra training: loss {mean} in language {lang!r}; lower learning_rate")
    return mean


def _sum_gradients(hydra: HydraModel, device: torch.device, ctx: DistContext) -> None:
    """Sum the step's gradients over the processes in one collective (flattened): the same
    parameters have them on every process, since every process trains the same language."""
    from transfer.train.distributed import all_reduce_sum

    grads = [p.grad for p in hydra.parameters() if p.grad is not None]
    if not grads:
        return
    flat = all_reduce_sum(torch.cat([g.reshape(-1) for g in grads]), ctx)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()
