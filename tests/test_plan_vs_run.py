"""The dry-run plan (``vocab-transfer adapt --dry-run``) against the run it describes: the
same stages with the same keys, the same cache state, and a training memory estimate close
to the trainer's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import flow_config
from transfer.engine.cache import StageCache
from transfer.train.callbacks import TrainingCallback

# The plan's training memory is the trainer's formula applied to the model the plan expects
# (the source's shapes with ``vocab_size`` rows); the trainer applies it to the model it
# really trains. They may differ by the target tokenizer's actual size: allow 10%.
MEMORY_FACTOR = 1.1


class _TrainStart(TrainingCallback):
    """Keeps what the trainer reports when it starts (its own memory estimate)."""

    def __init__(self) -> None:
        self.infos: list[dict[str, Any]] = []

    def on_train_start(self, total_steps: int, info: dict[str, Any]) -> None:
        self.infos.append(info)


def _complete(cache_dir: Path) -> set[tuple[str, str]]:
    """Every finished stage folder in a cache, as (stage, key)."""
    return {(marker.parent.parent.name, marker.parent.name) for marker in cache_dir.rglob(".complete")}


def test_plan_names_the_stages_the_run_builds_and_those_it_finds_cached(
        tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation

    # a first run fills the cache with the stages upstream of the strategy
    run_adaptation(flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1))
    before = _complete(Path(tmp_path / "cache"))

    cfg = flow_config(tmp_path, tiny_source, tiny_corpus, strategy="random", train_steps=2, full_steps=1)
    plan = plan_adaptation(cfg, measure=False)
    started = _TrainStart()
    result = run_adaptation(cfg, callbacks=[started])
    built = _complete(Path(cfg.cache_dir)) - before

    # same stages, same labels: nothing the plan named is missing from the run, nothing extra
    assert [s.label for s in plan.stages] == list(result.stages_cached)
    # the plan's cache state is what the run found, stage by stage; and this run is mixed
    assert {s.label: s.cached for s in plan.stages} == result.stages_cached
    assert {s.label for s in plan.stages if s.cached} == {
        "corpus", "source", "tokenizer", "evaluate.source_model_on_target",
        "evaluate.source_model_on_curve_texts"}
    # the stages the plan said were still to build are exactly the folders the run added
    assert {(s.stage, s.key) for s in plan.to_build} == built
    cache = StageCache(cfg.cache_dir)
    assert all(cache.is_complete(s.stage, s.key) and Path(s.path) == cache.path(s.stage, s.key)
               for s in plan.stages)
    # the keys the result reports are the planned ones
    planned = {s.label: s.key for s in plan.stages}
    assert {label: planned["train" if label == "final" else label] for label in result.stage_keys} == \
        result.stage_keys

    # the plan's peak memory is the trainer's own estimate for this run, within the factor
    assert len(started.infos) == 1
    trainer = started.infos[0]["memory_estimate"]["total"]
    assert plan.peak_memory_bytes is not None
    assert trainer / MEMORY_FACTOR <= plan.peak_memory_bytes <= trainer * MEMORY_FACTOR, (
        plan.peak_memory_bytes, trainer)
