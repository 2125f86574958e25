"""The adaptation pipeline: one walk over the stage graph, each stage cached by its key.

Each stage package (``transfer.corpus``, ``source``, ``tokenizer``, ``vectors``, ``init``,
``train``, ``evaluate``) holds its spec (what to compute) and its builder (how) in its
``stage`` module; this module only knows their order. ``run_adaptation`` is the whole path
as a plain library call; ``flows/`` runs the very same walk with each stage wrapped in a
Prefect task, by passing ``execute_stage``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from transfer.corpus.stage import corpus_spec
from transfer.engine.cache import StageCache, StageOutput
from transfer.engine.code_version import code_version
from transfer.engine.graph import EVALUATE, StageGraph
from transfer.engine.stages import BuildContext, StageSpec, execute, read_json
from transfer.evaluate.stage import evaluate_spec
from transfer.init.links import links_spec
from transfer.init.stage import init_spec
from transfer.publish.export import export_model
from transfer.publish.result import AdaptResult
from transfer.publish.run import publish_run
from transfer.settings.config import AdaptConfig
from transfer.settings.validate import validate_config
from transfer.source.stage import source_spec
from transfer.tokenizer.stage import tokenizer_spec
from transfer.train.stage import train_spec
from transfer.vectors.stage import align_stage_spec, vector_specs

if TYPE_CHECKING:
    from transfer.train.callbacks import TrainingCallback

ExecuteStage = Callable[[StageSpec, BuildContext], StageOutput]
StageListener = Callable[[str, str], None]  # (stage label, "cached" | "built" | "running")


def _local_execute(cache: StageCache, listener: StageListener | None) -> ExecuteStage:
    def run(spec: StageSpec, context: BuildContext) -> StageOutput:
        if listener:
            listener(spec.stage, "running")
        output, cached = execute(spec, cache, context)
        if listener:
            listener(spec.stage, "cached" if cached else "built")
        return output

    return run


StageRunner = Callable[[StageSpec, str], StageOutput]


def walk_stages(cfg: AdaptConfig, run: StageRunner) -> StageGraph:
    """Every stage of a run, in order, each handed to ``run``: the one place that knows
    the order. ``run_adaptation`` builds them; ``flows.plan`` only computes their keys."""
    from transfer.init.resources import needs

    stages: dict[str, StageOutput] = {}

    def stage(spec: StageSpec, label: str) -> StageOutput:
        stages[label] = run(spec, label)
        return stages[label]

    corpus = stage(corpus_spec(cfg), "corpus")
    source = stage(source_spec(cfg), "source")
    tokenizer = stage(tokenizer_spec(cfg, corpus, source), "tokenizer")
    vectors = None
    if "vectors" in needs(cfg.strategy):
        source_spec_v, target_spec_v = vector_specs(cfg, corpus)
        # "fasttext:<side>", or "pretrained_vectors:<side>" for the user's own file
        source_vectors = stage(source_spec_v, f"{source_spec_v.stage}:source")
        target_vectors = stage(target_spec_v, f"{target_spec_v.stage}:target")
        vectors = stage(align_stage_spec(cfg, source_vectors, target_vectors, corpus), "align")
    links = stage(links_spec(cfg, source, tokenizer, corpus), "links") if "parallel" in needs(cfg.strategy) else None
    init = stage(init_spec(cfg, source, tokenizer, corpus=corpus, vectors=vectors, links=links), "init")
    final = stage(train_spec(cfg, init, corpus, source, tokenizer), "train") if cfg.total_train_steps else init
    models = {"source_model_on_target": (source, "target"), "adapted_step0": (init, "target")}
    if cfg.source_bible and cfg.target_bible:
        models["source_model_on_source_language"] = (source, "source")
    if final is not init:
        models["adapted_trained"] = (final, "target")
    if cfg.vocab_mode == "extend" and cfg.source_bible and cfg.target_bible:
        # extension keeps the source's tokens: measure what the model still knows of its language
        models["adapted_step0_on_source_language"] = (init, "source")
        if final is not init:
            models["adapted_trained_on_source_language"] = (final, "source")
    for label, (model, texts) in models.items():
        stage(evaluate_spec(cfg, model, corpus, texts), EVALUATE + label)
    if final is not init and cfg.curve_texts and cfg.dev_fraction > 0:
        # the source model on the learning curve's own texts, so curves have a line to beat
        # measured on the same texts (the same stage as above when those are the eval texts)
        stage(evaluate_spec(cfg, source, corpus, "target", split="dev", n_texts=cfg.curve_texts),
              EVALUATE + "source_model_on_curve_texts")
    return StageGraph(stages)


def run_adaptation(
    cfg: AdaptConfig,
    *,
    execute_stage: ExecuteStage | None = None,
    listener: StageListener | None = None,
    callbacks: Sequence[TrainingCallback] = (),
) -> AdaptResult:
    """Adapt ``cfg.source_model`` to the target language; every stage is cached by its key.
    ``callbacks`` follow the training (progress bars); every builder gets them in its
    ``BuildContext``."""
    started = time.perf_counter()
    validate_config(cfg)
    cache = StageCache(cfg.cache_dir)
    run = execute_stage or _local_execute(cache, listener)
    context = BuildContext(callbacks=tuple(callbacks))
    cached_before = {}

    def stage(spec: StageSpec, label: str) -> StageOutput:
        cached_before[label] = cache.is_complete(spec.stage, spec.key)
        return run(spec, context)

    graph = walk_stages(cfg, stage)
    final = graph.final
    bpb = {}
    metric = "bpb"
    for label, out in graph.evaluations.items():
        metrics = read_json(out.file("metrics.json"))
        metric = metrics.get("metric", "bpb")
        # masked LMs report the masked-LM loss ("value"); causal models keep "bpb"
        bpb[label] = metrics["bpb"] if "bpb" in metrics else metrics["value"]

    model_dir = export_model(final, cfg.output_dir / cfg.model_name())
    result = AdaptResult(
        config=cfg,
        code_version=code_version(),
        model_dir=str(model_dir),
        stage_keys={label: getattr(graph, label).key for label in ("corpus", "source", "tokenizer", "init", "final")},
        stages_cached=cached_before,
        bpb=bpb,
        metric=metric,
        fertility=read_json(graph.tokenizer.file("fertility.json")).get(cfg.eval_split, {}),
        init_report=read_json(graph.init.file("init_report.json")),
        train_log=read_json(final.file("train_log.json")) if final is not graph.init else None,
        seconds=time.perf_counter() - started,
    )
    publish_run(result, lineage=graph.lineage(), corpus_hashes=corpus_spec(cfg).inputs)
    return result
