"""The continued-pretraining loop, in phases. (Over 400 lines: the loop's named steps
share one ``_Run`` state and read as one recipe; what they check and fix before the first
step is in ``run_inputs``.)

Phase one trains the embeddings only (body frozen), so new vocabulary rows adapt to the
pretrained body before the body sees their still-noisy gradients; phase two trains the
whole model (de Vries & Nissim 2021; WECHSEL, OFA and FOCUS continue pretraining the same
way). Each phase has its own AdamW optimizer and warmup + cosine schedule.

The loop is plain PyTorch (DistributedDataParallel under ``torchrun``/``accelerate``, or
FSDP2 sharding: ``transfer/train/sharding.py``): gradient accumulation, gradient clipping,
bf16 autocast, fused AdamW and SDPA attention on CUDA, float32 on CPU, optionally
activation checkpointing. It is deterministic for a given seed and data: batches come from
:class:`BlockOrder`, masks from the sample position, dropout from a seeded RNG that is
forked (the caller's RNG is left alone) and saved in checkpoints, so a resumed run
continues exactly where the crashed one stopped.

``train`` is a short loop over named steps, as torchtune's recipes read: ``setup`` (checks,
device, memory, the run's identity), ``restore`` (the latest checkpoint), ``place``, then
per phase ``start_phase`` and per optimizer step ``train_step``, ``evaluate_dev`` and
``save_checkpoint``; ``release`` hands the model back. Their shared state is a ``_Run``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

import transfer.train.checkpoint as ckpt
import transfer.train.distributed as dist
import transfer.train.sharding as shard
from transfer.engine.devices import model_device, pick_device, place_model
from transfer.errors import NonFiniteLossError, TrainingError
from transfer.source.objective import Objective, model_objective
from transfer.train.callbacks import TrainingCallback
from transfer.train.config import PhaseConfig, TrainingConfig
from transfer.train.curves import CurvePoint, LearningCurve, save_curve_files
from transfer.train.data import BlockOrder, PackedData, separator_token_id
from transfer.train.distill import Distillation, distill_step
from transfer.train.freezing import set_trainable
from transfer.train.memory import (
    MemoryEstimate,
    available_memory,
    check_memory,
)
from transfer.train.objectives import LossKernel, MicroBatch, loss_sum, make_batch
from transfer.train.row_freeze import FrozenRows, check_frozen_rows
from transfer.train.run_inputs import (
    as_packed,
    check_compile,
    check_data,
    compile_backend,
    model_fingerprint,
    prefer_sdpa,
    short_sha,
    tokenizer_fingerprint,
    uses_bf16,
)
from transfer.train.schedule import lr_at

# evaluate(model) -> dev BPB, or a dict with "bpb" and/or "loss" (and the "metric" it names)
Evaluate = Callable[[PreTrainedModel], "float | dict[str, float | str | None]"]


@dataclass
class TrainResult:
    """What a run did. ``seconds`` is training time only (evaluations and checkpoints excluded)."""

    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    steps: int = 0
    tokens_seen: int = 0
    bytes_seen: int = 0
    seconds: float = 0.0
    evaluations: dict[int, float | None] = field(default_factory=dict)
    curve: LearningCurve = field(default_factory=lambda: LearningCurve("run"))
    resumed_from: int | None = None
    last_checkpoint: str | None = None
    objective: str = "causal"
    precision: str = "fp32"
    device: str = "cpu"
    world_size: int = 1
    # cross-tokenizer distillation (transfer/train/distill.py): per-step ALM term and the
    # teacher's compute, so objectives compare at equal compute
    distill_mode: str = "next_token"
    distill_losses: list[float] = field(default_factory=list)
    teacher_forward_passes: int = 0
    teacher_tokens: int = 0
    frozen_rows: int = 0  # vocabulary rows kept exactly (an extension's source rows)
    sharding: str = "none"  # "none" (one process), "ddp" or "fsdp": what the run trained with
    activation_checkpointing: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["curve"] = self.curve.to_dict()
        return data


# ---------------------------------------------------------------- identity of a run


def _optimizer(params: list[torch.nn.Parameter], stage: PhaseConfig, config: TrainingConfig,
               device: torch.device) -> torch.optim.AdamW:
    # Decay matrices only; biases and norm gains are not decayed (the usual GPT recipe).
    decay = [p for p in params if p.dim() >= 2]
    plain = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": stage.weight_decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    # One fused kernel for all parameters: much faster on a GPU, and on CPU it cuts the
    # optimizer step to about a third (benchmarks/README.md, issue 7).
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=stage.lr, betas=config.betas, eps=config.eps, fused=fused or None)


def _eval_metrics(value: Any) -> tuple[float | None, float | None, str]:
    """(bpb, loss, metric) of an evaluation: a float is BPB; a dict may name its metric
    (``dev_evaluator``: "bpb" or "mlm_loss")."""
    if isinstance(value, dict):
        bpb, loss = value.get("bpb"), value.get("loss")
        metric = value.get("metric") or ("bpb" if bpb is not None else "loss")
        return (None if bpb is None else float(bpb)), (None if loss is None else float(loss)), str(metric)
    return float(value), None, "bpb"


# ---------------------------------------------------------------- the run's state

@dataclass
class _Run:
    """One call of :func:`train`: what set-up fixed, plus where the run stands."""

    model: PreTrainedModel
    packed: PackedData
    config: TrainingConfig
    tokenizer: PreTrainedTokenizerBase | None
    evaluate: Evaluate | None
    callbacks: Sequence[TrainingCallback]
    checkpoint_dir: Path | None
    curve_dir: Path | None
    ctx: dist.DistContext
    device: torch.device
    objective: Objective
    use_bf16: bool
    estimate: MemoryEstimate
    identity: dict[str, str]  # what a checkpoint must match to be resumed
    result: TrainResult
    eval_steps: set[int]
    order: BlockOrder
    per_step: int  # blocks per optimizer step, all processes
    # the next sample of the data order, and the last finished step of which stage
    position: dict[str, int] = field(default_factory=lambda: {"stage": 0, "stage_step": 0, "samples": 0})
    resume_from: Path | None = None
    fork_devices: list[int] = field(default_factory=list)
    autocast: Any = field(default_factory=nullcontext)
    distill: Distillation | None = None  # the teacher side, when the objective distills
    sharding: shard.Resolved = "none"
    activation_checkpointing: bool = False
    loss_kernel: LossKernel = "auto"
    # the module that trains: ``model`` itself, or its sharded copy under fsdp (whose
    # weights are written back into ``model`` when training ends)
    trained: torch.nn.Module | None = None

    @property
    def net(self) -> torch.nn.Module:
        return self.trained if self.trained is not None else self.model

    def notify(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on every callback, on the main process only."""
        if self.ctx.is_main:
            for callback in self.callbacks:
                getattr(callback, hook)(*args)


@dataclass
class _Phase:
    """One training phase in progress: its trainable parameters and optimizer."""

    index: int
    config: PhaseConfig
    start: int  # steps of this stage already done (a resumed run)
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.AdamW
    wrapped: torch.nn.Module  # the model, under DistributedDataParallel with several processes
    # vocabulary rows that must not move (config.frozen_rows); on local shards under fsdp
    frozen: FrozenRows | shard.ShardedFrozenRows | None = None


# ---------------------------------------------------------------- the steps

def _objective(model: PreTrainedModel, config: TrainingConfig, tokenizer: PreTrainedTokenizerBase | None,
               distill: Distillation | None) -> Objective:
    """The run's objective (the model's own for ``auto``), checked against what it needs."""
    objective: Objective = model_objective(model) if config.objective == "auto" else config.objective
    if objective == "masked" and tokenizer is None:
        raise TrainingError("the masked-LM objective needs tokenizer=")
    if distill is not None:
        if objective != "causal":
            raise TrainingError(f"distillation needs a causal LM student, got the {objective!r} objective")
        distill.check(tokenizer)
    return objective


def _eval_steps(config: TrainingConfig) -> set[int]:
    """The optimizer steps after which the dev set is scored (0: before the first)."""
    steps = set(config.eval_at)
    if config.eval_at_start:
        steps.add(0)
    if config.eval_at_end:
        steps.add(config.total_steps)
    if config.eval_every:
        steps.update(range(0, config.total_steps + 1, config.eval_every))
    return steps


def setup(
    model: PreTrainedModel,
    data: PackedData | torch.Tensor,
    config: TrainingConfig,
    *,
    tokenizer: PreTrainedTokenizerBase | None,
    evaluate: Evaluate | None,
    callbacks: Sequence[TrainingCallback],
    device: str | torch.device | None,
    checkpoint_dir: Path | None,
    curve_dir: Path | None,
    label: str,
    distill: Distillation | None = None,
    sharding: shard.Sharding = "auto",
    activation_checkpointing: bool = False,
    resume: bool = True,
    loss_kernel: LossKernel = "auto",
) -> _Run:
    """Check the input, pick device and precision, decide the sharding (``sharding.py``),
    refuse what cannot fit in memory, and fix the run's identity (the starting weights,
    tokenizer, data and settings)."""
    config.validate()
    packed = as_packed(data)
    check_data(model, packed)
    check_frozen_rows(model, config.frozen_rows)
    if config.eval_at and evaluate is None:
        raise TrainingError("eval_at is given but evaluate is None")
    objective = _objective(model, config, tokenizer, distill)

    want_cuda = (device is None and torch.cuda.is_available()) or str(device).startswith("cuda")
    ctx = dist.context_from_env("cuda" if want_cuda else "cpu")
    device_used = pick_device(f"cuda:{ctx.local_rank}" if ctx.enabled and want_cuda else device)
    use_bf16 = uses_bf16(config.precision, device_used)
    check_compile(config.compile, device_used)
    block_size = packed.block_size

    # Refuse a configuration that cannot fit before anything heavy happens: the figures of the
    # plan the dry run prints (loss kernel and activation checkpointing included), whole model
    # per device; the sharding decision below divides it.
    from transfer.train.memory_plan import device_memory_plan

    estimate = device_memory_plan(
        model, [p.name for p in config.phases], micro_batch=config.batch_size, block_size=block_size,
        grad_accumulation=config.grad_accumulation, device_type=device_used.type, bf16=use_bf16,
        sharding="ddp", activation_checkpointing=activation_checkpointing, loss_kernel=loss_kernel,
        distills=distill is not None, compiles=bool(config.compile)).peak
    available = available_memory(device_used, config.memory_limit)
    if device_used.type == "cuda" and model_device(model).type == "cuda":
        # the weights already sit there: free memory no longer counts them, the estimate does
        available += sum(p.numel() * p.element_size() for p in model.parameters())
    # 'auto' shards when one device cannot hold the run; every process takes the same decision.
    # A run resumed from its own checkpoint goes on as it started (free memory may differ now)
    found = ckpt.latest_checkpoint(checkpoint_dir) if resume and sharding == "auto" and ctx.enabled else None
    if found is not None:
        sharding = "fsdp" if ckpt.is_sharded(found) else "ddp"
    too_big = dist.all_reduce_max(float(estimate.total > available), ctx)
    resolved = shard.resolve_sharding(
        sharding, ctx.world_size, needed=estimate.total, available=0 if too_big else available,
        problem=shard.fsdp_problem(distills=distill is not None, compiles=bool(config.compile)))
    if resolved == "fsdp":  # what one process holds: its shares, plus what is gathered at a time
        estimate = shard.per_device_estimate(estimate, ctx.world_size,
                                             gathered_bytes=shard.gathered_bytes(model))
    check_memory(estimate, available, device=device_used,
                 batch_size=config.batch_size, block_size=block_size,
                 grad_accumulation=config.grad_accumulation)

    identity = {
        "model": model_fingerprint(model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "data": packed.fingerprint(),
        # fsdp's checkpoints are sharded: only then in the identity, so others keep theirs
        "settings": short_sha(json.dumps({**config.identity(), "world_size": ctx.world_size,
                                          "objective": objective,
                                          **({"sharding": "fsdp"} if resolved == "fsdp" else {})},
                                         sort_keys=True, default=str)),
    }
    if distill is not None:  # only then, so a next-token run's checkpoints keep their identity
        identity["distill"] = short_sha(json.dumps({
            "teacher": model_fingerprint(distill.teacher),
            "teacher_tokenizer": tokenizer_fingerprint(distill.teacher_tokenizer),
            "mode": distill.mode, "weight": distill.weight}, sort_keys=True))
    result = TrainResult(curve=LearningCurve(label), objective=objective,
                         precision="bf16" if use_bf16 else "fp32", device=str(device_used),
                         world_size=ctx.world_size, distill_mode=distill.mode if distill else "next_token",
                         frozen_rows=config.frozen_rows, sharding=resolved,
                         activation_checkpointing=activation_checkpointing)
    return _Run(
        model=model, packed=packed, config=config, tokenizer=tokenizer, evaluate=evaluate,
        callbacks=callbacks, checkpoint_dir=checkpoint_dir, curve_dir=curve_dir, ctx=ctx,
        device=device_used, objective=objective, use_bf16=use_bf16, estimate=estimate,
        identity=identity, result=result, eval_steps=_eval_steps(config) if evaluate is not None else set(),
        order=BlockOrder(packed.n_blocks, config.seed),
        per_step=config.batch_size * config.grad_accumulation * ctx.world_size, distill=distill,
        sharding=resolved, activation_checkpointing=activation_checkpointing, loss_kernel=loss_kernel,
    )


def restore(run: _Run) -> None:
    """Continue from the run's latest checkpoint, if there is one: weights, position in the
    data order and the result so far (another run's checkpoint is refused)."""
    resume_from = ckpt.latest_checkpoint(run.checkpoint_dir)
    _check_same_checkpoint(run, resume_from)
    if resume_from is None:
        return
    state = ckpt.check_identity(resume_from, run.identity)
    if not ckpt.is_sharded(resume_from):  # a sharded one loads once the model is sharded (place)
        ckpt.load_weights(resume_from, run.model)
    run.position = state["position"]
    saved, result = state["result"], run.result
    result.losses, result.lrs = saved["losses"], saved["lrs"]
    result.steps, result.tokens_seen, result.bytes_seen = saved["steps"], saved["tokens_seen"], saved["bytes_seen"]
    result.seconds = saved["seconds"]
    result.distill_losses = saved.get("distill_losses", [])
    result.teacher_forward_passes = saved.get("teacher_forward_passes", 0)
    result.teacher_tokens = saved.get("teacher_tokens", 0)
    result.evaluations = {int(k): v for k, v in saved["evaluations"].items()}
    result.curve = LearningCurve.from_dict(saved["curve"])
    result.resumed_from = state["step"]
    result.last_checkpoint = str(resume_from)
    run.resume_from = resume_from


def _check_same_checkpoint(run: _Run, found: Path | None) -> None:
    """Every process must resume from the same step (with several machines, a checkpoint
    folder some of them do not see would make them train different steps)."""
    if not run.ctx.enabled:
        return
    step = float(ckpt.read_state(found)["step"]) if found is not None else -1.0
    highest, lowest = dist.all_reduce_max(step, run.ctx), -dist.all_reduce_max(-step, run.ctx)
    if highest != lowest:
        from transfer.errors import CheckpointError

        raise CheckpointError(
            f"the training processes see different latest checkpoints in {run.checkpoint_dir} (steps "
            f"{int(lowest)} to {int(highest)}; -1: none): with several machines the checkpoint folder must "
            "be on a file system every machine shares")


def place(run: _Run, device: str | torch.device | None) -> None:
    """Move the model to the run's device (SDPA attention on CUDA) and prepare autocast;
    under fsdp, shard a copy of it there (and load a sharded checkpoint's weights into it).
    Activation checkpointing is switched on here."""
    if run.device.type == "cuda":
        prefer_sdpa(run.model)
    if run.sharding == "fsdp":
        # the caller's model stays whole where it is; the sharded copy trains
        run.trained = shard.shard_model(run.model, run.device, bf16=run.use_bf16,
                                        activation_checkpointing=run.activation_checkpointing)
        if run.resume_from is not None and ckpt.is_sharded(run.resume_from):
            ckpt.load_sharded_weights(run.resume_from, run.trained)
    elif run.ctx.enabled or device is not None:
        run.model.to(run.device)
    else:  # a model the caller already placed on a GPU (maybe sharded) stays there
        run.device = place_model(run.model, None)
    if run.activation_checkpointing and run.sharding != "fsdp":
        shard.enable_activation_checkpointing(run.model)
    if run.distill is not None:  # frozen, beside the student
        run.distill.teacher.to(run.device).eval().requires_grad_(False)
    if run.device.type == "cuda":
        run.fork_devices = [run.device.index if run.device.index is not None else torch.cuda.current_device()]
    if run.use_bf16:
        run.autocast = torch.autocast(run.device.type, dtype=torch.bfloat16)


def start_phase(run: _Run, index: int, stage: PhaseConfig) -> _Phase | None:
    """The phase's trainable parameters and a fresh optimizer (its state restored when the
    run resumes inside this phase); None when the phase is already done."""
    if index < run.position["stage"]:
        return None
    start = run.position["stage_step"] if index == run.position["stage"] else 0
    if start >= stage.steps:
        return None
    params = set_trainable(run.net, stage.name)
    optimizer = _optimizer(params, stage, run.config, run.device)
    if run.resume_from is not None and index == run.position["stage"] and start > 0:
        if ckpt.is_sharded(run.resume_from):
            ckpt.load_sharded_optimizer(run.resume_from, run.net, optimizer)
        else:
            ckpt.load_optimizer(run.resume_from, optimizer)
    # sharded once (place): the same module trains every stage, FSDP follows requires_grad
    wrapped = run.net if run.sharding == "fsdp" else dist.wrap_model(run.model, run.ctx, run.device)
    if run.config.compile:
        # compiled after the DDP wrapper (as torch recommends); a new stage's other trainable
        # set recompiles once. Checkpoints keep using run.model's plain parameter names.
        wrapped = torch.compile(wrapped, backend=compile_backend(run.config.compile))
    # the rows' values now, on the run's device: the init's, also after a resume (a
    # checkpoint holds them unchanged, and its identity is the same starting model)
    frozen = (shard.ShardedFrozenRows.capture(run.net, run.config.frozen_rows) if run.sharding == "fsdp"
              else FrozenRows.capture(run.model, run.config.frozen_rows))
    run.notify("on_phase_start", stage.name, run.result.steps)
    return _Phase(index, stage, start, params, optimizer, wrapped, frozen)


def _micro_batches(run: _Run, samples: int) -> list[MicroBatch]:
    """This process's share of the step's blocks, split into accumulation micro-batches."""
    config, world, rank = run.config, run.ctx.world_size, run.ctx.rank
    indices = run.order.take(samples, run.per_step)
    batches = []
    for micro in range(config.grad_accumulation):
        lo = (micro * world + rank) * config.batch_size
        rows = run.packed.rows(indices[lo : lo + config.batch_size])  # from RAM or the memory map
        batches.append(make_batch(rows, torch.arange(samples + lo, samples + lo + rows.size(0)),
                                  run.objective, tokenizer=run.tokenizer, seed=config.seed,
                                  mlm_rate=config.mlm_rate))
    return batches


def _next_token_accumulate(run: _Run, stage: _Phase, samples: int) -> float:
    """The gradient of the next-token (or masked-LM) loss over the step's micro-batches: the
    mean over all scored tokens of the step, on every process; returns that mean."""
    world, device = run.ctx.world_size, run.device
    batches = _micro_batches(run, samples)
    n_targets = dist.all_reduce_sum(torch.tensor(float(sum(b.n_targets for b in batches)), device=device), run.ctx)
    total_loss = torch.zeros((), device=device)
    for micro, batch in enumerate(batches):
        last = micro == len(batches) - 1
        with dist.no_sync(stage.wrapped, skip=not last):
            with run.autocast:
                summed = loss_sum(stage.wrapped, batch.to(device), run.objective, kernel=run.loss_kernel)
            # DDP averages gradients over processes: scale by world / all targets
            # so the step's gradient is the mean over every scored token.
            (summed * (world / n_targets.clamp(min=1))).backward()
        total_loss += summed.detach()
    return float(dist.all_reduce_sum(total_loss, run.ctx) / n_targets.clamp(min=1))


def _distill_accumulate(run: _Run, stage: _Phase, samples: int) -> float:
    """The gradient of the distillation objective over the step's blocks (read back as text,
    transfer/train/distill.py); the teacher's passes and tokens are counted."""
    config, world, rank = run.config, run.ctx.world_size, run.ctx.rank
    indices = run.order.take(samples, run.per_step)
    rows = [run.packed.rows(indices[(micro * world + rank) * config.batch_size:][: config.batch_size])
            for micro in range(config.grad_accumulation)]
    assert run.distill is not None and run.tokenizer is not None  # setup checked both
    terms = distill_step(stage.wrapped, rows, run.distill, student_tokenizer=run.tokenizer,
                         separator_id=separator_token_id(run.tokenizer), device=run.device,
                         autocast=run.autocast, ctx=run.ctx)
    run.result.distill_losses.append(terms.alm)
    run.result.teacher_forward_passes += terms.teacher_forward_passes
    run.result.teacher_tokens += terms.teacher_tokens
    return terms.loss


def train_step(run: _Run, stage: _Phase, stage_step: int) -> None:
    """One optimizer step: accumulate the gradient of every micro-batch (the mean over all
    scored tokens of the step, on every process; or the distillation objective), clip,
    update, record."""
    started = time.perf_counter()
    config, result, spec = run.config, run.result, stage.config
    lr = lr_at(stage_step, peak=spec.lr, total_steps=spec.steps, warmup_steps=spec.warmup_steps,
               schedule=spec.schedule, min_lr_ratio=spec.min_lr_ratio)
    for group in stage.optimizer.param_groups:
        group["lr"] = lr
    run.net.train()
    samples = run.position["samples"]
    if run.distill is not None:
        value = _distill_accumulate(run, stage, samples)
    else:
        value = _next_token_accumulate(run, stage, samples)
    if not math.isfinite(value):
        stage.optimizer.zero_grad(set_to_none=True)
        kept = result.last_checkpoint
        raise NonFiniteLossError(
            f"training loss is {value} at step {result.steps + 1} (stage {spec.name!r}, "
            f"lr {lr:.3g}); training stopped without applying that update. "
            + (f"The last good checkpoint is kept: {kept}" if kept else
               "No checkpoint was written (checkpoint_every=0 or none reached yet)")
            + "; try a lower learning rate, warmup, or clip_norm"
        )
    if stage.frozen is not None:
        stage.frozen.zero_gradients()  # before clipping: frozen rows do not count in the norm
    grad_norm = None
    if config.clip_norm is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(stage.params, config.clip_norm))
    stage.optimizer.step()
    if stage.frozen is not None:
        stage.frozen.restore()  # undoes AdamW's decoupled weight decay on the frozen rows
    stage.optimizer.zero_grad(set_to_none=True)
    step_seconds = time.perf_counter() - started
    run.position = {"stage": stage.index, "stage_step": stage_step, "samples": samples + run.per_step}
    step_tokens = run.per_step * run.packed.block_size
    result.steps += 1
    result.tokens_seen += step_tokens
    result.bytes_seen = round(result.tokens_seen * run.packed.bytes_per_token)
    result.seconds += step_seconds
    result.losses.append(value)
    result.lrs.append(lr)
    run.notify("on_step", result.steps, {
        "loss": value, "lr": lr, "stage": spec.name, "grad_norm": grad_norm,
        "tokens_seen": result.tokens_seen, "bytes_seen": result.bytes_seen,
        "tokens_per_second": step_tokens / max(step_seconds, 1e-9), "total_steps": config.total_steps})


def evaluate_dev(run: _Run, step: int, stage_name: str) -> None:
    """Score the model on the dev texts if ``step`` is an evaluation step not yet scored: a
    point of the learning curve (written to ``curve_dir``), on the main process; the
    others wait. A sharded model's forward pass needs every process: under fsdp all
    score the same texts and the main process records."""
    result = run.result
    if step not in run.eval_steps or step in result.evaluations:
        return
    scored = None
    if run.sharding == "fsdp":
        run.net.eval()
        scored = run.evaluate(run.net)
        shard.reshard(run.net)  # the shards, which the optimizer steps, are the parameters again
    if run.ctx.is_main:
        if scored is None:
            run.model.eval()  # evaluations never see dropout; the next step switches back
            scored = run.evaluate(run.model)
        bpb, loss, metric = _eval_metrics(scored)
        previous = result.curve.points[-1].step if result.curve.points else 0
        since = result.losses[previous:step]
        mean_train = sum(since) / len(since) if since else None
        result.evaluations[step] = bpb if bpb is not None else loss
        result.curve.metric = metric
        result.curve.points.append(CurvePoint(
            step=step, stage=stage_name, tokens_seen=result.tokens_seen, bytes_seen=result.bytes_seen,
            dev_bpb=bpb, dev_loss=loss, train_loss=mean_train, seconds=round(result.seconds, 3)))
        if run.curve_dir is not None:
            save_curve_files(result.curve, Path(run.curve_dir))
        run.notify("on_eval", step, {"dev_bpb": bpb, "dev_loss": loss, "metric": metric, "stage": stage_name,
                                     "tokens_seen": result.tokens_seen, "bytes_seen": result.bytes_seen})
    dist.barrier(run.ctx)


def save_checkpoint(run: _Run, stage: _Phase) -> None:
    """Every ``checkpoint_every`` steps (with a ``checkpoint_dir``): weights, optimizer, RNG
    states, position and the result so far, written by the main process."""
    step, config = run.result.steps, run.config
    if run.checkpoint_dir is None or not config.checkpoint_every or step % config.checkpoint_every:
        return
    state = {"identity": run.identity, "position": run.position, "result": run.result.to_dict()}
    if run.sharding == "fsdp":  # every process writes its shards
        path = ckpt.save_sharded_checkpoint(Path(run.checkpoint_dir), step, model=run.net, optimizer=stage.optimizer,
                                            state=state, ctx=run.ctx, keep=config.keep_checkpoints)
        run.result.last_checkpoint = str(path)
        run.notify("on_checkpoint", step, str(path))
    elif run.ctx.is_main:
        path = ckpt.save_checkpoint(
            Path(run.checkpoint_dir), step, model=run.model, optimizer=stage.optimizer, state=state,
            keep=config.keep_checkpoints)
        run.result.last_checkpoint = str(path)
        run.notify("on_checkpoint", step, str(path))
    dist.barrier(run.ctx)


def finish(run: _Run) -> None:
    """After the last step, on every process: the sharded copy's weights written back into
    the caller's model (every process ends with the whole trained model), and the main
    process's evaluations shared, so each machine's first process can write the same log."""
    if run.sharding == "fsdp" and run.trained is not None:
        shard.gather_into(run.trained, run.model)
    if run.ctx.enabled:
        result = run.result
        shared = dist.broadcast_object({"evaluations": result.evaluations, "curve": result.curve.to_dict(),
                                        "last_checkpoint": result.last_checkpoint}, run.ctx)
        result.evaluations = {int(k): v for k, v in shared["evaluations"].items()}
        result.curve = LearningCurve.from_dict(shared["curve"])
        result.last_checkpoint = shared["last_checkpoint"]


def release(run: _Run) -> None:
    """Hand the model back in eval mode, every parameter trainable, no gradients kept."""
    run.trained = None  # the sharded copy, if any (its weights are in run.model)
    shard.disable_activation_checkpointing(run.model)
    for param in run.model.parameters():
        param.grad = None  # free gradient memory before handing the model back
        param.requires_grad_(True)
    run.model.eval()
    dist.shutdown(run.ctx)


# ---------------------------------------------------------------- the loop

def train(
    model: PreTrainedModel,
    data: PackedData | torch.Tensor,
    config: TrainingConfig,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    evaluate: Evaluate | None = None,
    callbacks: Sequence[TrainingCallback] = (),
    device: str | torch.device | None = None,
    checkpoint_dir: Path | None = None,
    curve_dir: Path | None = None,
    label: str = "run",
    resume: bool = True,
    distill: Distillation | None = None,
    sharding: shard.Sharding = "auto",
    activation_checkpointing: bool = False,
    loss_kernel: LossKernel = "auto",
) -> TrainResult:
    """Train ``model`` on packed ``data`` through ``config.phases``; see the module doc.

    ``evaluate(model)`` (dev BPB, or ``{"bpb", "loss"}`` and optionally ``"metric"``) runs
    at step 0, every ``eval_every`` steps, at ``eval_at`` and at the end; the points form
    the learning curve, written to ``curve_dir`` after every evaluation when given. With
    ``checkpoint_dir`` a checkpoint is written every ``checkpoint_every`` steps and an
    existing one of the same run is resumed (another run's is refused). The model is handed
    back in eval mode, every parameter trainable, no gradients kept. With ``distill`` the
    step's objective is cross-tokenizer distillation from its teacher (alone, or with the
    next-token loss: transfer/train/distill.py).

    Under torchrun, ``sharding`` says how the processes share the model ('ddp': each holds
    all of it; 'fsdp': sharded, transfer/train/sharding.py; 'auto': fsdp when one device
    cannot hold the run); the model handed back is whole on every process either way.
    ``activation_checkpointing`` recomputes each layer's activations in the backward pass;
    ``loss_kernel`` how the causal loss is computed (``objectives.loss_sum``: chunked by
    default, never the whole float32 logits).
    """
    run = setup(model, data, config, tokenizer=tokenizer, evaluate=evaluate, callbacks=callbacks,
                device=device, checkpoint_dir=checkpoint_dir, curve_dir=curve_dir, label=label,
                distill=distill, sharding=sharding, activation_checkpointing=activation_checkpointing,
                resume=resume, loss_kernel=loss_kernel)
    if resume and checkpoint_dir:
        restore(run)
    place(run, device)
    run.notify("on_train_start", config.total_steps, {
        "start_step": run.result.steps, "objective": run.objective, "device": str(run.device),
        "world_size": run.ctx.world_size, "sharding": run.sharding,
        "effective_batch_tokens": run.per_step * run.packed.block_size,
        "memory_estimate": run.estimate.to_dict()})
    try:
        # the run's own RNG (dropout), forked so the caller's is left alone, and restored on
        # a resume so the continued run draws exactly what the uninterrupted one would have
        with torch.random.fork_rng(devices=run.fork_devices):
            torch.manual_seed(config.seed)
            if run.resume_from is not None:
                ckpt.restore_rng(run.resume_from, run.ctx.rank)
            evaluate_dev(run, 0, config.phases[0].name)
            for index, spec in enumerate(config.phases):
                stage = start_phase(run, index, spec)
                if stage is None:
                    continue
                for stage_step in range(stage.start + 1, spec.steps + 1):
                    train_step(run, stage, stage_step)
                    evaluate_dev(run, run.result.steps, spec.name)
                    save_checkpoint(run, stage)
                del stage  # free the optimizer state before the next stage builds its own
        finish(run)
        run.notify("on_train_end", run.result)
    finally:
        release(run)
    return run.result
