"""The adaptation pipeline: a run's plan executed stage by stage, each cached by its key.

Each stage package (``transfer.corpus``, ``source``, ``tokenizer``, ``vectors``, ``init``,
``train``, ``evaluate``) holds its spec (what to compute) and its builder (how) in its
``stage`` module; ``transfer.planning.walk`` knows their order and
``transfer.planning.plan`` turns a config into a validated ``RunPlan`` once.
``run_adaptation`` executes a plan as a plain library call; ``flows/`` runs the very same
plan with each stage wrapped in a Prefect task, by passing ``execute_stage``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from transfer.engine.cache import StageCache, StageOutput
from transfer.engine.graph import StageGraph
from transfer.engine.stages import BuildContext, StageSpec, execute, read_json
from transfer.planning.plan import RunPlan, plan_adaptation
from transfer.publish.export import export_model
from transfer.publish.result import AdaptResult
from transfer.publish.run import publish_run
from transfer.settings.config import AdaptConfig

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


def run_adaptation(
    plan: RunPlan | AdaptConfig,
    *,
    execute_stage: ExecuteStage | None = None,
    listener: StageListener | None = None,
    callbacks: Sequence[TrainingCallback] = (),
) -> AdaptResult:
    """Run a plan (a config is planned first, which validates it): every stage in the plan's
    order, each from the cache when its key is there. ``callbacks`` follow the training
    (progress bars); every builder gets them in its ``BuildContext``."""
    started = time.perf_counter()
    if isinstance(plan, AdaptConfig):
        plan = plan_adaptation(plan)
    cfg = plan.config
    cache = StageCache(cfg.cache_dir)
    run = execute_stage or _local_execute(cache, listener)
    context = BuildContext(callbacks=tuple(callbacks))
    cached_before: dict[str, bool] = {}
    built: dict[str, StageOutput] = {}
    for planned in plan.stages:
        cached_before[planned.label] = cache.is_complete(planned.stage, planned.key)
        built[planned.label] = run(planned.spec, context)
    graph = StageGraph({label: built[target] for label, target in plan.labels.items()})
    final = graph.final
    scores = {}
    weights = {}
    metric = "bpb"
    for label, out in graph.evaluations.items():
        metrics = read_json(out.file("metrics.json"))
        metric = metrics.get("metric", "bpb")
        # masked LMs report the masked-LM loss ("value"); causal models keep "bpb"
        scores[label] = metrics["bpb"] if "bpb" in metrics else metrics["value"]
        weights[label] = float(metrics.get("n_bytes", 1))
    if cfg.several_languages:  # each language's scores, and their byte-weighted mean under the plain label
        from transfer.publish.labels import language_means

        scores.update(language_means(scores, weights, cfg.target_languages))

    model_dir = export_model(final, cfg.output_dir / cfg.model_name())
    result = AdaptResult(
        config=cfg,
        code_version=plan.code_version,
        model_dir=str(model_dir),
        stage_keys={label: getattr(graph, label).key for label in ("corpus", "source", "tokenizer", "init", "final")},
        stages_cached={label: cached_before[target] for label, target in plan.labels.items()},
        scores=scores,
        metric=metric,
        fertility=read_json(graph.tokenizer.file("fertility.json")).get(cfg.eval_split, {}),
        init_report=read_json(graph.init.file("init_report.json")),
        train_log=read_json(final.file("train_log.json")) if final is not graph.init else None,
        seconds=time.perf_counter() - started,
    )
    publish_run(result, lineage=graph.lineage(), corpus_hashes=plan.lineage_inputs(), plan=plan.record())
    if cfg.progressive:  # the small helper model is a model of its own: exported and registered too
        from transfer.publish.progressive import publish_progressive_helper

        publish_progressive_helper(plan, graph, cached_before, result.seconds)
    return result
