"""Stage ``hydra``: the Hydra model of a run (trans-tokenization, Remy et al. 2024), trained.

It reads the source stage (the body, and the source language's own table and head) and, for
every target language, that language's ``init`` stage (its tokenizer and the rows its strategy
gave it: a run of that language alone, so its folders are shared with one) and its ``corpus``
stage (its train text and held-out texts). It trains the one body with each language's table
and head (``transfer.hydra.train``), writes the Hydra folder (``model/``: the body once, a table
per language, ``transfer.hydra.store``) and scores each language's trained model on its
held-out texts with the metric every evaluate stage uses (``metrics.json``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer.corpus.stage import eval_file, iter_lines, read_lines
from transfer.engine.cache import StageOutput
from transfer.engine.stages import BuildContext, StageSpec, builder, upstream_of, write_json

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig


def hydra_spec(cfg: AdaptConfig, source: StageOutput, languages: dict[str, tuple[StageOutput, StageOutput]]) -> StageSpec:
    """The hydra stage of ``cfg``; ``languages``: language -> (its init stage, its corpus stage)."""
    from transfer.train.stage import train_params

    outputs = {"source": source}
    for lang, (init, corpus) in languages.items():
        outputs[f"init.{lang}"] = init
        outputs[f"corpus.{lang}"] = corpus
    inputs, upstream = upstream_of(**outputs)
    params = {**train_params(cfg), "languages": list(languages), "source_language": cfg.parallel_source_language,
              "alpha": cfg.language_sampling_alpha, "eval_texts": cfg.eval_texts, "eval_split": cfg.eval_split}
    return StageSpec(stage="hydra", params=params, inputs=inputs, upstream=upstream,
                     runtime={"device": cfg.device, "eval_batch_size": cfg.eval_batch_size,
                              "loss_kernel": cfg.loss_kernel, "checkpoint_every": cfg.checkpoint_every,
                              "checkpoint_dir": str(cfg.cache_dir / "_checkpoints" / "hydra"),
                              # several processes: speed only, as for the train stage
                              "nproc_per_node": cfg.nproc_per_node, "nnodes": cfg.nnodes,
                              "rdzv_endpoint": cfg.rdzv_endpoint, "rdzv_id": cfg.rdzv_id})


def _language_parts(folder: Path) -> tuple[Any, Any, Any]:
    """(table, untied head or None, config) of one language's init model."""
    from transfer.source.heads import is_tied
    from transfer.source.loading import load_source

    model, tokenizer = load_source(str(folder))
    head = None if is_tied(model) else model.get_output_embeddings()
    return (model.get_input_embeddings(), head, copy.deepcopy(model.config)), tokenizer


@builder("hydra")
def build_hydra(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Train the Hydra model, write its folder (``model/``), its log and each language's score."""
    from transfer.engine.devices import pick_device
    from transfer.errors import TrainingError
    from transfer.evaluate.score import score_model
    from transfer.hydra.model import HydraModel
    from transfer.hydra.store import LoadedHydra, save_hydra
    from transfer.hydra.train import HydraTraining, train_hydra
    from transfer.source.loading import load_source
    from transfer.source.objective import model_objective
    from transfer.train import pack_train_split
    from transfer.train.distributed import context_from_env, shutdown
    from transfer.train.launch import (
        Processes,
        inside_launcher,
        launch_train_stage,
        per_process_batch,
    )
    from transfer.train.stage import training_config

    p, runtime = spec.params, spec.runtime
    processes = Processes.from_runtime(runtime)
    if processes.world_size > 1 and not inside_launcher():
        # torchrun runs this builder in every process; each machine's first writes ``out``
        launch_train_stage(spec.model_dump_json(), out, processes)
        return
    device = pick_device(runtime.get("device"))
    ctx = context_from_env(device.type)
    lm, source_tokenizer = load_source(str(spec.upstream_path("source") / "model"))
    if model_objective(lm) != "causal":
        raise TrainingError(f"hydra: the source is a masked LM ({type(lm).__name__}); Hydra heads write text, "
                            "so the source must be a causal (decoder) model")
    source_language = p["source_language"]
    hydra = HydraModel(lm, source_language)
    tokenizers = {source_language: source_tokenizer}
    configs = {source_language: copy.deepcopy(lm.config)}
    data = {}
    for lang in p["languages"]:
        (table, head, config), tokenizer = _language_parts(spec.upstream_path(f"init.{lang}") / "model")
        hydra.add_language(lang, table, head)
        tokenizers[lang], configs[lang] = tokenizer, config
        corpus = spec.upstream_path(f"corpus.{lang}")
        data[lang] = pack_train_split(tokenizer, iter_lines(corpus / "train.txt"), p["block_size"])
    recipe = training_config(p)
    # each process's share of an optimizer step (one process: the whole step)
    batch_size, accumulation = per_process_batch(p["batch_size"], p.get("grad_accumulation", 1), ctx.world_size)
    training = HydraTraining(phases=recipe.phases, batch_size=batch_size,
                             grad_accumulation=accumulation, clip_norm=p.get("clip_norm", 1.0),
                             alpha=p["alpha"], seed=p["seed"], loss_kernel=runtime.get("loss_kernel", "auto"),
                             precision=p.get("precision", "auto"), checkpoint_every=runtime.get("checkpoint_every", 0))
    checkpoints = Path(runtime["checkpoint_dir"]) / spec.key if training.checkpoint_every else None
    log = train_hydra(hydra, data, training, device=device, checkpoint_dir=checkpoints, ctx=ctx)
    hydra.to("cpu")
    if not ctx.writes_node_files:  # the first process of each machine scores and writes; no
        shutdown(ctx)               # barrier after the training: scoring may outlast its timeout
        return
    scores = {}
    for lang in p["languages"]:
        path = spec.upstream_path(f"corpus.{lang}") / eval_file(p["eval_split"], "target")
        texts = read_lines(path, p["eval_texts"])
        score = score_model(hydra.use(lang), tokenizers[lang], texts, batch_size=runtime.get("eval_batch_size", 16),
                            device=runtime.get("device"))
        scores[lang] = {"texts": "target", "split": p["eval_split"], "metric": score.metric, "value": score.value,
                        **score.details}
    hydra.use(source_language)
    save_hydra(LoadedHydra(hydra, tokenizers, configs), out / "model")
    write_json(out / "train_log.json", {**log.to_dict(), "world_size": ctx.world_size})
    write_json(out / "metrics.json", scores)
    shutdown(ctx)
