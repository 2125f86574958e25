"""The small model of a progressive run, published as a model of its own.

A progressive run (``transfer.planning.progressive``) trains two models: the small helper
and the large target. The large one is published by ``transfer.pipeline`` as every run's
model is (its lineage holds the helper's stages, ``init.progressive``/``train.progressive``);
this module exports and registers the helper beside it, with its own lineage and scores
read back from the stages the run labelled ``.progressive``.
"""

from __future__ import annotations

from collections.abc import Mapping

from transfer.engine.cache import StageOutput
from transfer.engine.graph import EVALUATE, StageGraph
from transfer.engine.stages import read_json
from transfer.planning.plan import RunPlan
from transfer.planning.progressive import progressive_helper_config
from transfer.planning.walk import PROGRESSIVE
from transfer.publish.export import export_model
from transfer.publish.result import AdaptResult

#: the run's evaluation labels of the small model -> the labels of an ordinary run
_EVALUATIONS = {"progressive_step0": "adapted_step0", "progressive_trained": "adapted_trained"}


def helper_graph(graph: StageGraph) -> StageGraph:
    """The small model's stages under the labels an ordinary run of it would have."""
    stages: dict[str, StageOutput] = {}
    suffix = f".{PROGRESSIVE}"
    for label, out in graph.stages.items():
        if label in ("corpus", "tokenizer"):
            stages[label] = out  # shared by both models
        elif label == f"source{suffix}":
            stages["source"] = out
        elif label.endswith(suffix):
            stages[label.removesuffix(suffix)] = out
        elif label.startswith(EVALUATE):
            if label.removeprefix(EVALUATE) in _EVALUATIONS:
                stages[EVALUATE + _EVALUATIONS[label.removeprefix(EVALUATE)]] = out
        elif "." in label and label.split(".", 1)[1].startswith(f"{PROGRESSIVE}_"):
            stage, qualifier = label.split(".", 1)  # fasttext.progressive_source -> fasttext.source
            stages[f"{stage}.{qualifier.removeprefix(PROGRESSIVE + '_')}"] = out
    return StageGraph(stages)


def publish_progressive_helper(plan: RunPlan, graph: StageGraph, cached_before: Mapping[str, bool],
                               seconds: float) -> AdaptResult:
    """Export the small model, write its manifest, card and record, and register it when
    the run registers (the same registered name: its config names its own source)."""
    from transfer.publish.run import publish_run

    cfg = progressive_helper_config(plan.config)
    small = helper_graph(graph)
    scores = {label.removeprefix(EVALUATE): read_json(out.file("metrics.json"))["bpb"]
              for label, out in small.stages.items() if label.startswith(EVALUATE)}
    final = small.final
    model_dir = export_model(final, cfg.output_dir / cfg.model_name())
    result = AdaptResult(
        config=cfg,
        code_version=plan.code_version,
        model_dir=str(model_dir),
        stage_keys={label: getattr(small, label).key for label in ("corpus", "source", "tokenizer", "init", "final")},
        stages_cached={label: cached_before.get(label, False) for label in plan.labels if PROGRESSIVE in label},
        scores=scores,
        metric="bpb",
        fertility=read_json(small.tokenizer.file("fertility.json")).get(cfg.eval_split, {}),
        init_report=read_json(small.init.file("init_report.json")),
        train_log=read_json(final.file("train_log.json")) if final is not small.init else None,
        seconds=seconds,
    )
    publish_run(result, lineage=small.lineage(), corpus_hashes=plan.lineage_inputs())
    return result
