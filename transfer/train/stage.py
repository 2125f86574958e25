"""Stage ``train``: continued pretraining of the initialized model on the train split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer.corpus.stage import eval_file, iter_lines, read_lines
from transfer.engine.cache import StageOutput
from transfer.engine.stages import BuildContext, StageSpec, builder, upstream_of, write_json

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig
    from transfer.train.config import TrainingConfig


def train_params(cfg: AdaptConfig) -> dict[str, Any]:
    """The run's training settings as the train stage's parameters (its cache key)."""
    return {"steps": cfg.train_steps, "batch_size": cfg.batch_size,
            "block_size": cfg.block_size, "learning_rate": cfg.learning_rate, "seed": cfg.seed,
            "full_steps": cfg.full_steps, "full_learning_rate": cfg.full_learning_rate,
            "warmup_steps": cfg.warmup_steps, "lr_schedule": cfg.lr_schedule,
            "weight_decay": cfg.weight_decay, "grad_accumulation": cfg.grad_accumulation,
            "clip_norm": cfg.clip_norm, "precision": cfg.precision,
            "eval_every": cfg.eval_every, "curve_texts": cfg.curve_texts,
            # only when not the default, so next-token runs keep their keys
            **({"objective": cfg.objective, "distill_weight": cfg.distill_weight}
               if cfg.objective != "next_token" else {}),
            **({"freeze_source_rows": True} if cfg.freeze_source_rows else {})}


def distills(params: dict[str, Any]) -> bool:
    """Whether the train stage's objective uses the source model as teacher."""
    return params.get("objective", "next_token") != "next_token"


def freezes_source_rows(params: dict[str, Any]) -> bool:
    """Whether the train stage keeps an extended vocabulary's source rows exactly (it then
    reads how many from the tokenizer stage's extension record)."""
    return bool(params.get("freeze_source_rows", False))


def training_config(params: dict[str, Any], *, checkpoint_every: int = 0,
                    frozen_rows: int = 0, compile_model: bool | str = False) -> TrainingConfig:
    """The trainer's configuration for the train stage's parameters: the one place that
    turns the product's settings into a training recipe (benchmarks use it too, so their
    numbers are the product's). ``frozen_rows``: the source's ids of an extended
    vocabulary, when the parameters freeze them. ``compile_model``: torch.compile (a
    how-setting, not in the parameters)."""
    from transfer.train import PhaseConfig, TrainingConfig

    p = params
    schedule = {"warmup_steps": p.get("warmup_steps", 0), "schedule": p.get("lr_schedule", "constant")}
    phases = [PhaseConfig("embeddings", steps=p["steps"], lr=p["learning_rate"], **schedule)]
    if p.get("full_steps", 0):
        phases.append(PhaseConfig("full", steps=p["full_steps"], lr=p["full_learning_rate"],
                                  weight_decay=p.get("weight_decay", 0.0), **schedule))
    return TrainingConfig(
        phases=phases, batch_size=p["batch_size"], grad_accumulation=p.get("grad_accumulation", 1),
        clip_norm=p.get("clip_norm", 1.0), seed=p["seed"], precision=p.get("precision", "auto"),
        eval_every=p.get("eval_every", 0), checkpoint_every=checkpoint_every, frozen_rows=frozen_rows,
        compile=compile_model,
    )


def train_spec(cfg: AdaptConfig, init: StageOutput, corpus: StageOutput,
               source: StageOutput | None = None, tokenizer: StageOutput | None = None) -> StageSpec:
    """The train stage; with a distilling objective the source stage is its teacher, and
    with ``freeze_source_rows`` the tokenizer stage says which rows are the source's (each an
    upstream only then, so other runs keep their keys)."""
    from transfer.errors import TrainingError

    params = train_params(cfg)
    extra: dict[str, StageOutput] = {}
    if freezes_source_rows(params):
        if tokenizer is None:
            raise TrainingError("freeze_source_rows needs the tokenizer stage (its extension record): "
                                "pass tokenizer= to train_spec")
        extra["tokenizer"] = tokenizer
    if distills(params):
        if source is None:
            raise TrainingError(f"objective={cfg.objective!r} needs the source stage as teacher: "
                                "pass source= to train_spec")
        extra["teacher"] = source
    inputs, upstream = upstream_of(model=init, corpus=corpus, **extra)
    return StageSpec(
        stage="train",
        params=params,
        inputs=inputs,
        upstream=upstream,
        runtime={"device": cfg.device, "checkpoint_every": cfg.checkpoint_every,
                 "checkpoint_dir": str(cfg.cache_dir / "_checkpoints" / "train"),
                 "eval_batch_size": cfg.eval_batch_size, "compile": cfg.compile,
                 # how many processes and how they share the model (transfer/train/launch.py,
                 # transfer/train/sharding.py): speed only, the stage computes the same
                 "nproc_per_node": cfg.nproc_per_node, "nnodes": cfg.nnodes,
                 "rdzv_endpoint": cfg.rdzv_endpoint, "rdzv_id": cfg.rdzv_id, "sharding": cfg.sharding,
                 "activation_checkpointing": cfg.activation_checkpointing, "loss_kernel": cfg.loss_kernel},
    )


@builder("train")
def build_train(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Continued pretraining on the target train split: embeddings only (body frozen), then
    optionally the whole model; learning curves (CSV/JSON/PNG) go into the folder, scored
    like the evaluate stage scores the model (dev BPB, or the masked-LM loss of a masked
    LM), and the trainer reports to ``context.callbacks``. An OFA init trains its
    coordinates and primitives (V*r + r*d), not a full V x d matrix. With objective
    'distill' or 'both' the source model is the frozen teacher (transfer/train/distill.py)
    and the log counts its forward passes. With ``freeze_source_rows`` an extended
    vocabulary's source rows stay exactly the init's (transfer/train/row_freeze.py).

    With several processes (``nproc_per_node``, ``nnodes``) the builder runs under torchrun
    in each of them (``transfer/train/launch.py``), as DDP or sharded (``sharding``), and
    the first process of each machine writes that machine's folder."""
    from transfer.init.factorized import has_factors, load_factorized, save_factorized
    from transfer.source.loading import load_source, save_model
    from transfer.source.objective import model_objective
    from transfer.train import dev_evaluator, pack_train_split, train
    from transfer.train.data import TOKEN_FILE
    from transfer.train.data_file import info_path
    from transfer.train.freezing import embedding_parameters
    from transfer.train.launch import (
        Processes,
        inside_launcher,
        launch_train_stage,
        per_process_batch,
    )

    p, runtime = spec.params, spec.runtime
    processes = Processes.from_runtime(runtime)
    if processes.world_size > 1 and not inside_launcher():
        # several processes: torchrun runs this builder in each, each machine's first writes ``out``
        launch_train_stage(spec.model_dump_json(), out, processes)
        return
    rank = int(os.environ.get("RANK", "0"))
    writes = int(os.environ.get("LOCAL_RANK", "0")) == 0  # this machine's copy of the folder
    init_model = spec.upstream_path("model") / "model"
    factorized = has_factors(init_model)
    model, tokenizer = load_factorized(init_model) if factorized else load_source(str(init_model))
    objective = model_objective(model)  # the trainer's own choice too (objective="auto")
    embedding_trainable = sum(param.numel() for param in embedding_parameters(model))
    corpus = spec.upstream_path("corpus")
    # The train split streams into a memory-mapped token file (bounded memory at any corpus
    # size); it is scratch, removed once trained: packing is deterministic, a resume repacks.
    tokens = out / (TOKEN_FILE if rank == 0 else f"rank{rank}.{TOKEN_FILE}")  # one per process
    data = pack_train_split(tokenizer, iter_lines(corpus / "train.txt"), p["block_size"], objective=objective,
                            path=tokens)
    checkpoint_every = runtime.get("checkpoint_every", 0)
    config = training_config(p, checkpoint_every=checkpoint_every, frozen_rows=_frozen_rows(spec),
                             compile_model=runtime.get("compile", False))
    # each process's share of an optimizer step (one process: the whole step)
    config.batch_size, config.grad_accumulation = per_process_batch(
        config.batch_size, config.grad_accumulation, int(os.environ.get("WORLD_SIZE", "1")))
    distill = None
    if distills(p):
        from transfer.train.distill import Distillation

        teacher, teacher_tokenizer = load_source(str(spec.upstream_path("teacher") / "model"))
        distill = Distillation(teacher, teacher_tokenizer, mode=p["objective"], weight=p["distill_weight"])
    dev_file = corpus / eval_file("dev", "target")
    evaluate = None
    if p.get("curve_texts", 0) and dev_file.exists():
        # dev verses only: the test split stays for the final report
        evaluate = dev_evaluator(tokenizer, read_lines(dev_file, p["curve_texts"]), objective=objective,
                                 batch_size=runtime.get("eval_batch_size", 16), device=runtime.get("device"))
    checkpoints = Path(runtime["checkpoint_dir"]) / spec.key if checkpoint_every and runtime.get("checkpoint_dir") else None
    result = train(model, data, config, tokenizer=tokenizer, evaluate=evaluate, device=runtime.get("device"),
                   checkpoint_dir=checkpoints, curve_dir=out if evaluate else None, label="train",
                   callbacks=context.callbacks, distill=distill, sharding=runtime.get("sharding", "auto"),
                   activation_checkpointing=bool(runtime.get("activation_checkpointing", False)),
                   loss_kernel=runtime.get("loss_kernel", "auto"))
    del data
    tokens.unlink()
    info_path(tokens).unlink()
    if not writes:
        return  # the folder is each machine's first process's
    if rank != 0 and result.curve.points:  # rank 0 wrote the curve on its machine as it went
        from transfer.train.curves import save_curve_files

        save_curve_files(result.curve, out)
    (save_factorized if factorized else save_model)(model, tokenizer, out / "model")
    write_json(out / "train_log.json", {**result.to_dict(), "factorized": factorized,
                                        "embedding_trainable_parameters": embedding_trainable})


def _frozen_rows(spec: StageSpec) -> int:
    """The rows to keep: the extension's first appended id (0 when nothing is frozen)."""
    if not freezes_source_rows(spec.params):
        return 0
    from transfer.errors import TrainingError
    from transfer.tokenizer.extension_record import read_first_new_id

    first_new_id = read_first_new_id(spec.upstream_path("tokenizer"))
    if first_new_id is None:
        raise TrainingError("freeze_source_rows: the tokenizer stage did not extend the source vocabulary "
                            "(no extension record); it needs vocab_mode='extend'")
    return first_new_id
