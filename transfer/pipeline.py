"""The adaptation pipeline: one walk over the stage graph, each stage cached by its key.

Each stage package (``transfer.corpus``, ``source``, ``tokenizer``, ``vectors``, ``init``,
``train``, ``evaluate``) holds its spec (what to compute) and its builder (how) in its
``stage`` module; this module only knows their order. ``run_adaptation`` is the whole path
as a plain library call; ``flows/`` runs the very same walk with each stage wrapped in a
Prefect task, by passing ``execute_stage``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transfer.cache import StageCache, StageOutput, code_version
from transfer.config import AdaptConfig
from transfer.corpus.stage import corpus_spec
from transfer.errors import CorpusError
from transfer.evaluate.stage import evaluate_spec
from transfer.init.stage import init_spec
from transfer.publish.export import export_model
from transfer.publish.result import AdaptResult
from transfer.source.stage import source_spec
from transfer.stages import StageSpec, execute, read_json, write_json
from transfer.tokenizer.stage import tokenizer_spec
from transfer.train.stage import train_spec
from transfer.vectors.stage import align_stage_spec, vector_specs

ExecuteStage = Callable[[StageSpec], StageOutput]
StageListener = Callable[[str, str], None]  # (stage label, "cached" | "built" | "running")


def validate_config(cfg: AdaptConfig) -> None:
    """Refuse bad input before any expensive work starts."""
    from transfer.corpus.bible import translation_codes
    from transfer.init import check_strategy_params
    from transfer.source.loading import source_fingerprint

    check_strategy_params(cfg.strategy, cfg.strategy_params)  # also refuses an unknown strategy
    for path in cfg.target_files:
        if not Path(path).exists():
            raise CorpusError(f"target_files: {path} does not exist")
    codes = cfg.target_bible + cfg.source_bible + cfg.source_train_bible
    if codes:
        available = translation_codes()
        unknown = [c for c in codes if c not in available]
        if unknown:
            raise CorpusError(f"Bible translation codes {unknown} are unknown; available: {available}")
    if not cfg.target_bible and not cfg.target_files:
        raise CorpusError("no target corpus: give target_bible codes or target_files")
    from transfer.init.resources import needs

    kinds = needs(cfg.strategy)
    if "parallel" in kinds and not (cfg.target_bible and cfg.source_train_bible):
        raise CorpusError(
            f"strategy {cfg.strategy!r} needs a parallel corpus: give target_bible and source_train_bible codes"
        )
    if "vectors" in kinds:
        if not cfg.source_train_bible:
            raise CorpusError(f"strategy {cfg.strategy!r} needs source_train_bible to train source vectors")
        if cfg.dictionary not in ("auto", "ding", "induced") and not Path(cfg.dictionary).is_file():
            raise CorpusError(f"dictionary: {cfg.dictionary} does not exist")
        induced = cfg.dictionary == "induced" or (cfg.dictionary == "auto" and cfg.target_language != "de")
        if induced and not cfg.target_bible:
            raise CorpusError("an induced dictionary needs target_bible codes (verse-aligned text)")
    source_fingerprint(cfg.source_model)  # raises for a missing file or folder


def _local_execute(cache: StageCache, listener: StageListener | None) -> ExecuteStage:
    def run(spec: StageSpec) -> StageOutput:
        if listener:
            listener(spec.stage, "running")
        output, cached = execute(spec, cache)
        if listener:
            listener(spec.stage, "cached" if cached else "built")
        return output

    return run


StageRunner = Callable[[StageSpec, str], StageOutput]


@dataclass(frozen=True)
class StageGraph:
    """The stages of one run, as ``walk_stages`` visited them."""

    corpus: StageOutput
    source: StageOutput
    tokenizer: StageOutput
    init: StageOutput
    final: StageOutput  # the trained model, or ``init`` when there is no training
    evaluations: dict[str, StageOutput]  # label -> evaluate stage


def walk_stages(cfg: AdaptConfig, stage: StageRunner) -> StageGraph:
    """Every stage of a run, in order, each handed to ``stage``: the one place that knows
    the order. ``run_adaptation`` builds them; ``flows.plan`` only computes their keys."""
    from transfer.init.resources import needs

    corpus = stage(corpus_spec(cfg), "corpus")
    source = stage(source_spec(cfg), "source")
    tokenizer = stage(tokenizer_spec(cfg, corpus, source), "tokenizer")
    vectors = None
    if "vectors" in needs(cfg.strategy):
        source_spec_v, target_spec_v = vector_specs(cfg)
        source_vectors = stage(source_spec_v, "fasttext:source")
        target_vectors = stage(target_spec_v, "fasttext:target")
        vectors = stage(align_stage_spec(cfg, source_vectors, target_vectors), "align")
    init = stage(init_spec(cfg, source, tokenizer, corpus=corpus, vectors=vectors), "init")
    final = init
    if cfg.total_train_steps:
        final = stage(train_spec(cfg, init, corpus), "train")
    models = {
        "source_model_on_target": (source, "target"),
        "adapted_step0": (init, "target"),
    }
    if cfg.source_bible and cfg.target_bible:
        models["source_model_on_source_language"] = (source, "source")
    if final is not init:
        models["adapted_trained"] = (final, "target")
    evaluations = {label: stage(evaluate_spec(cfg, model, corpus, texts), f"evaluate:{label}")
                   for label, (model, texts) in models.items()}
    if final is not init and cfg.curve_texts and cfg.dev_fraction > 0:
        # the source model on the learning curve's own texts, so curves have a line to beat
        # measured on the same texts (the same stage as above when those are the eval texts)
        evaluations["source_model_on_curve_texts"] = stage(
            evaluate_spec(cfg, source, corpus, "target", split="dev", n_texts=cfg.curve_texts),
            "evaluate:source_model_on_curve_texts")
    return StageGraph(corpus, source, tokenizer, init, final, evaluations)


def run_adaptation(
    cfg: AdaptConfig,
    *,
    execute_stage: ExecuteStage | None = None,
    listener: StageListener | None = None,
) -> AdaptResult:
    """Adapt ``cfg.source_model`` to the target language; every stage is cached by its key."""
    started = time.perf_counter()
    validate_config(cfg)
    cache = StageCache(cfg.cache_dir)
    run = execute_stage or _local_execute(cache, listener)
    cached_before = {}

    def stage(spec: StageSpec, label: str) -> StageOutput:
        cached_before[label] = cache.is_complete(spec.stage, spec.key)
        return run(spec)

    graph = walk_stages(cfg, stage)
    corpus, source, tokenizer, init, final = graph.corpus, graph.source, graph.tokenizer, graph.init, graph.final
    train_log = read_json(final.file("train_log.json")) if final is not init else None
    bpb = {}
    metric = "bpb"
    for label, out in graph.evaluations.items():
        metrics = read_json(out.file("metrics.json"))
        metric = metrics.get("metric", "bpb")
        # masked LMs report the masked-LM loss ("value"); causal models keep "bpb"
        bpb[label] = metrics["bpb"] if "bpb" in metrics else metrics["value"]

    model_dir = export_model(final, cfg.output_dir / cfg.model_name())
    fertility = read_json(tokenizer.file("fertility.json"))
    stage_keys = {"corpus": corpus.key, "source": source.key, "tokenizer": tokenizer.key,
                  "init": init.key, "final": final.key}
    result = AdaptResult(
        config=cfg,
        code_version=code_version(),
        model_dir=str(model_dir),
        stage_keys=stage_keys,
        stages_cached=cached_before,
        bpb=bpb,
        metric=metric,
        fertility=fertility,
        init_report=read_json(init.file("init_report.json")),
        train_log=train_log,
        seconds=time.perf_counter() - started,
    )
    # stage 7: run manifest, model card and registration, beside the exported model
    from transfer.publish.manifest import build_manifest, write_manifest
    from transfer.publish.model_card import write_model_card

    run_keys = {label: f"{out.stage}:{out.key}" for label, out in (
        ("corpus", corpus), ("source", source), ("tokenizer", tokenizer), ("init", init), ("final", final))}
    run_keys.update({f"evaluate.{label}": f"evaluate:{out.key}" for label, out in graph.evaluations.items()})
    write_manifest(build_manifest(cfg, stage_keys=run_keys), model_dir)
    write_model_card(result, model_dir)
    write_json(model_dir / "adaptation.json", result.model_dump(mode="json"))
    if cfg.register_model:
        from transfer.publish.registry import register_result

        result.registration = register_result(
            result, corpus_hashes=corpus_spec(cfg).inputs, stage_keys=run_keys)
        write_json(model_dir / "adaptation.json", result.model_dump(mode="json"))
    return result
