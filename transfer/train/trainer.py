"""The staged continued-pretraining loop.

Stage one trains the embeddings only (body frozen), so new vocabulary rows adapt to the
pretrained body before the body sees their still-noisy gradients; stage two trains the
whole model (de Vries & Nissim 2021; WECHSEL, OFA and FOCUS continue pretraining the same
way). Each stage has its own AdamW optimizer and warmup + cosine schedule.

The loop is plain PyTorch (DistributedDataParallel under ``torchrun``/``accelerate``):
gradient accumulation, gradient clipping, bf16 autocast, fused AdamW and SDPA attention on
CUDA, float32 on CPU. It is deterministic for a given seed and data: batches come from
:class:`BlockOrder`, masks from the sample position, dropout from a seeded RNG that is
forked (the caller's RNG is left alone) and saved in checkpoints, so a resumed run
continues exactly where the crashed one stopped.
"""

from __future__ import annotations

import hashlib
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

from transfer.devices import model_device, pick_device, place_model
from transfer.errors import NonFiniteLossError, TrainingError
from transfer.source.objective import Objective, model_objective
from transfer.train import checkpoint as ckpt
from transfer.train import distributed as dist
from transfer.train.callbacks import TrainingCallback
from transfer.train.config import StageConfig, TrainingConfig
from transfer.train.curves import CurvePoint, LearningCurve, save_curve_files
from transfer.train.data import BlockOrder, PackedData
from transfer.train.freezing import set_trainable
from transfer.train.memory import available_memory, check_memory, estimate_training_memory
from transfer.train.objectives import loss_sum, make_batch
from transfer.train.schedule import lr_at

# evaluate(model) -> dev BPB, or a dict with "bpb" and/or "loss"
Evaluate = Callable[[PreTrainedModel], "float | dict[str, float | None]"]


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["curve"] = self.curve.to_dict()
        return data


# ---------------------------------------------------------------- identity of a run

def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:24]


def model_fingerprint(model: torch.nn.Module) -> str:
    """Class, config and the starting weights (names, shapes and bytes)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(json.dumps(config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase | None) -> str:
    if tokenizer is None:
        return "none"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return _sha(backend.to_str())
    return _sha(json.dumps(sorted(tokenizer.get_vocab().items())))


# ---------------------------------------------------------------- helpers

def _as_packed(data: PackedData | torch.Tensor) -> PackedData:
    if isinstance(data, PackedData):
        return data
    if not isinstance(data, torch.Tensor) or data.dim() != 2 or data.size(0) == 0:
        raise TrainingError("blocks must be a non-empty (n_blocks, block_size) tensor of token ids")
    # Without byte counts, bytes seen is unknown: count it as 0 bytes per token.
    return PackedData(blocks=data, n_documents=0, n_bytes=0, n_tokens=data.numel())


def _check_data(model: PreTrainedModel, data: PackedData) -> None:
    blocks = data.blocks
    if blocks.dtype != torch.long:
        raise TrainingError(f"blocks must hold token ids as torch.long, got {blocks.dtype}")
    if blocks.size(1) < 2:
        raise TrainingError(f"blocks must have block_size >= 2, got {blocks.size(1)}")
    rows = model.get_input_embeddings().num_embeddings if hasattr(model.get_input_embeddings(), "num_embeddings") \
        else model.config.vocab_size
    if int(blocks.max()) >= rows or int(blocks.min()) < 0:
        raise TrainingError(
            f"blocks hold ids outside 0..{rows - 1}, the model's embedding rows; "
            "were they packed with the model's tokenizer?"
        )


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "bf16":
        return True
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return False


def prefer_sdpa(model: PreTrainedModel) -> str | None:
    """Switch an eager-attention model to PyTorch's SDPA kernels when it supports them."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current == "eager" and hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("sdpa")
        except (ValueError, ImportError, NotImplementedError):
            return current
    return getattr(config, "_attn_implementation", None)


def _optimizer(params: list[torch.nn.Parameter], stage: StageConfig, config: TrainingConfig,
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
) -> TrainResult:
    """Train ``model`` on packed ``data`` through ``config.stages``; see the module doc.

    ``evaluate(model)`` (dev BPB, or ``{"bpb", "loss"}``) runs at step 0, every
    ``eval_every`` steps, at ``eval_at`` and at the end; the points form the learning curve,
    written to ``curve_dir`` after every evaluation when given. With ``checkpoint_dir``
    a checkpoint is written every ``checkpoint_every`` steps and an existing one of the same
    run is resumed (another run's is refused). The model is handed back in eval mode,
    every parameter trainable, no gradients kept.
    """
    config.validate()
    packed = _as_packed(data)
    _check_data(model, packed)
    if config.eval_at and evaluate is None:
        raise TrainingError("eval_at is given but evaluate is None")
    objective: Objective = model_objective(model) if config.objective == "auto" else config.objective
    if objective == "masked" and tokenizer is None:
        raise TrainingError("the masked-LM objective needs tokenizer=")

    want_cuda = (device is None and torch.cuda.is_available()) or str(device).startswith("cuda")
    ctx = dist.context_from_env("cuda" if want_cuda else "cpu")
    device_used = pick_device(f"cuda:{ctx.local_rank}" if ctx.enabled and want_cuda else device)
    use_bf16 = _use_bf16(config.precision, device_used)
    block_size = packed.block_size

    # Refuse a configuration that cannot fit before anything heavy happens.
    largest = max(
        sum(p.numel() for p in (set_trainable(model, s.name))) for s in config.stages
    )
    for param in model.parameters():
        param.requires_grad_(True)
    estimate = estimate_training_memory(
        model, batch_size=config.batch_size, block_size=block_size, trainable_parameters=largest,
        activation_bytes=2 if use_bf16 else 4,
        fused_attention=True if device_used.type == "cuda" else None,
    )
    available = available_memory(device_used, config.memory_limit)
    if device_used.type == "cuda" and model_device(model).type == "cuda":
        # the weights already sit there: free memory no longer counts them, the estimate does
        available += sum(p.numel() * p.element_size() for p in model.parameters())
    check_memory(estimate, available, device=device_used,
                 batch_size=config.batch_size, block_size=block_size,
                 grad_accumulation=config.grad_accumulation)

    identity = {
        "model": model_fingerprint(model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "data": packed.fingerprint(),
        "settings": _sha(json.dumps({**config.identity(), "world_size": ctx.world_size,
                                     "objective": objective}, sort_keys=True, default=str)),
    }
    result = TrainResult(curve=LearningCurve(label), objective=objective,
                         precision="bf16" if use_bf16 else "fp32", device=str(device_used),
                         world_size=ctx.world_size)
    position = {"stage": 0, "stage_step": 0, "samples": 0}
    resume_from = ckpt.latest_checkpoint(checkpoint_dir) if (resume and checkpoint_dir) else None
    if resume_from is not None:
        state = ckpt.check_identity(resume_from, identity)
        ckpt.load_weights(resume_from, model)
        position = state["position"]
        saved = state["result"]
        result.losses, result.lrs = saved["losses"], saved["lrs"]
        result.steps, result.tokens_seen, result.bytes_seen = saved["steps"], saved["tokens_seen"], saved["bytes_seen"]
        result.seconds = saved["seconds"]
        result.evaluations = {int(k): v for k, v in saved["evaluations"].items()}
        result.curve = LearningCurve.from_dict(saved["curve"])
        result.resumed_from = state["step"]
        result.last_checkpoint = str(resume_from)

    if ctx.enabled or device is not None:
        model.to(device_used)
    else:  # a model the caller already placed on a GPU (maybe sharded) stays there
        device_used = place_model(model, None)
    if device_used.type == "cuda":
        prefer_sdpa(model)
    order = BlockOrder(packed.blocks.size(0), config.seed)
    world, rank = ctx.world_size, ctx.rank
    per_step = config.batch_size * config.grad_accumulation * world
    total_steps = config.total_steps
    eval_steps = set(config.eval_at)
    if config.eval_at_start:
        eval_steps.add(0)
    if config.eval_at_end:
        eval_steps.add(total_steps)
    if config.eval_every:
        eval_steps.update(range(0, total_steps + 1, config.eval_every))
    if evaluate is None:
        eval_steps = set()
    fork_devices = [device_used.index if device_used.index is not None else torch.cuda.current_device()] \
        if device_used.type == "cuda" else []
    autocast = (torch.autocast(device_used.type, dtype=torch.bfloat16) if use_bf16 else nullcontext())

    def run_evaluation(step: int, stage_name: str) -> None:
        if step not in eval_steps or step in result.evaluations:
            return
        bpb = loss = None
        if ctx.is_main:
            model.eval()  # evaluations never see dropout; the next step switches back
            bpb, loss, metric = _eval_metrics(evaluate(model))
            result.curve.metric = metric
            previous = result.curve.points[-1].step if result.curve.points else 0
            since = result.losses[previous:step]
            mean_train = sum(since) / len(since) if since else None
            result.evaluations[step] = bpb if bpb is not None else loss
            result.curve.points.append(CurvePoint(
                step=step, stage=stage_name, tokens_seen=result.tokens_seen, bytes_seen=result.bytes_seen,
                dev_bpb=bpb, dev_loss=loss, train_loss=mean_train, seconds=round(result.seconds, 3)))
            if curve_dir is not None:
                save_curve_files(result.curve, Path(curve_dir))
            for callback in callbacks:
                callback.on_eval(step, {"dev_bpb": bpb, "dev_loss": loss, "metric": metric, "stage": stage_name,
                                        "tokens_seen": result.tokens_seen, "bytes_seen": result.bytes_seen})
        dist.barrier(ctx)

    if ctx.is_main:
        for callback in callbacks:
            callback.on_train_start(total_steps, {"start_step": result.steps, "objective": objective,
                                                  "device": str(device_used), "world_size": world,
                                                  "effective_batch_tokens": per_step * block_size,
                                                  "memory_estimate": estimate.to_dict()})
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(config.seed)
            if resume_from is not None:
                ckpt.restore_rng(resume_from)
            run_evaluation(0, config.stages[0].name)
            global_step = result.steps
            for stage_index, stage in enumerate(config.stages):
                if stage_index < position["stage"]:
                    continue
                start = position["stage_step"] if stage_index == position["stage"] else 0
                if start >= stage.steps:
                    continue
                params = set_trainable(model, stage.name)
                optimizer = _optimizer(params, stage, config, device_used)
                if resume_from is not None and stage_index == position["stage"] and start > 0:
                    ckpt.load_optimizer(resume_from, optimizer)
                wrapped = dist.wrap_model(model, ctx, device_used)
                if ctx.is_main:
                    for callback in callbacks:
                        callback.on_stage_start(stage.name, global_step)
                for stage_step in range(start + 1, stage.steps + 1):
                    started = time.perf_counter()
                    lr = lr_at(stage_step, peak=stage.lr, total_steps=stage.steps,
                               warmup_steps=stage.warmup_steps, schedule=stage.schedule,
                               min_lr_ratio=stage.min_lr_ratio)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    model.train()
                    samples = position["samples"]
                    indices = order.take(samples, per_step)
                    batches = []
                    for micro in range(config.grad_accumulation):
                        lo = (micro * world + rank) * config.batch_size
                        rows = packed.blocks[indices[lo : lo + config.batch_size]]
                        batches.append(make_batch(rows, torch.arange(samples + lo, samples + lo + rows.size(0)),
                                                  objective, tokenizer=tokenizer, seed=config.seed,
                                                  mlm_rate=config.mlm_rate))
                    n_targets = dist.all_reduce_sum(
                        torch.tensor(float(sum(b.n_targets for b in batches)), device=device_used), ctx)
                    total_loss = torch.zeros((), device=device_used)
                    for micro, batch in enumerate(batches):
                        last = micro == len(batches) - 1
                        with dist.no_sync(wrapped, skip=not last):
                            with autocast:
                                summed = loss_sum(wrapped, batch.to(device_used), objective)
                            # DDP averages gradients over processes: scale by world / all targets
                            # so the step's gradient is the mean over every scored token.
                            (summed * (world / n_targets.clamp(min=1))).backward()
                        total_loss += summed.detach()
                    value = float(dist.all_reduce_sum(total_loss, ctx) / n_targets.clamp(min=1))
                    if not math.isfinite(value):
                        optimizer.zero_grad(set_to_none=True)
                        kept = result.last_checkpoint
                        raise NonFiniteLossError(
                            f"training loss is {value} at step {global_step + 1} (stage {stage.name!r}, "
                            f"lr {lr:.3g}); training stopped without applying that update. "
                            + (f"The last good checkpoint is kept: {kept}" if kept else
                               "No checkpoint was written (checkpoint_every=0 or none reached yet)")
                            + "; try a lower learning rate, warmup, or clip_norm"
                        )
                    grad_norm = None
                    if config.clip_norm is not None:
                        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.clip_norm))
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    step_seconds = time.perf_counter() - started
                    global_step += 1
                    position = {"stage": stage_index, "stage_step": stage_step, "samples": samples + per_step}
                    step_tokens = per_step * block_size
                    result.steps = global_step
                    result.tokens_seen += step_tokens
                    result.bytes_seen = round(result.tokens_seen * packed.bytes_per_token)
                    result.seconds += step_seconds
                    result.losses.append(value)
                    result.lrs.append(lr)
                    if ctx.is_main:
                        metrics = {"loss": value, "lr": lr, "stage": stage.name, "grad_norm": grad_norm,
                                   "tokens_seen": result.tokens_seen, "bytes_seen": result.bytes_seen,
                                   "tokens_per_second": step_tokens / max(step_seconds, 1e-9),
                                   "total_steps": total_steps}
                        for callback in callbacks:
                            callback.on_step(global_step, metrics)
                    run_evaluation(global_step, stage.name)
                    if checkpoint_dir is not None and config.checkpoint_every and \
                            global_step % config.checkpoint_every == 0:
                        if ctx.is_main:
                            saved_result = result.to_dict()
                            path = ckpt.save_checkpoint(
                                Path(checkpoint_dir), global_step, model=model, optimizer=optimizer,
                                state={"identity": identity, "position": position, "result": saved_result},
                                keep=config.keep_checkpoints)
                            result.last_checkpoint = str(path)
                            for callback in callbacks:
                                callback.on_checkpoint(global_step, str(path))
                        dist.barrier(ctx)
                del wrapped, optimizer
        if ctx.is_main:
            for callback in callbacks:
                callback.on_train_end(result)
    finally:
        for param in model.parameters():
            param.grad = None  # free gradient memory before handing the model back
            param.requires_grad_(True)
        model.eval()
        dist.shutdown(ctx)
    return result
