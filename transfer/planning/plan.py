"""One plan per run: a config turned, once, into everything a run needs to know before
it starts.

``plan_adaptation`` validates the config (the one call of ``validate_config`` in a run),
walks the stage graph once with a visitor that only computes keys and folders (stage keys
are content addresses of parameters and upstream keys, so the whole chain is known before
anything is built), and records the training memory estimate that validation checked and
the run notes (the strategy ``auto`` chose, warnings about suspicious input). The CLI, the
Prefect flows, ``--dry-run`` and ``run_adaptation`` all take this plan; none of them
validates or walks again. ``measure=True`` adds the rough time estimates the dry run prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from transfer.engine.cache import StageCache, StageOutput
from transfer.engine.code_version import code_version
from transfer.engine.stages import StageSpec
from transfer.planning.estimates import (
    SourceSize,
    corpus_bytes,
    measure_flops_per_second,
    source_size,
    stage_seconds,
)
from transfer.planning.walk import walk_stages
from transfer.settings.config import AdaptConfig


class PlannedStage(BaseModel):
    """One stage of the plan: its label, spec (hence key) and folder, cached or not when
    planned, and a rough build time (0 when cached or not measured)."""

    label: str
    spec: StageSpec
    path: str
    cached: bool
    seconds: float = 0.0

    @property
    def stage(self) -> str:
        return self.spec.stage

    @property
    def key(self) -> str:
        return self.spec.key


class RunPlan(BaseModel):
    """A validated run: the resolved config, its stages in order with keys and folders, the
    memory estimate, the notes to show before it starts, and the rough estimates."""

    config: AdaptConfig
    code_version: str
    stages: list[PlannedStage] = Field(default_factory=list)
    #: every label of the walk, in order; a label whose stage another label already builds
    #: (the source model's score on texts that are also the curve's) maps to that label
    labels: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    memory_estimate: dict[str, int] | None = None  # MemoryEstimate.to_dict(): parts and total
    source: SourceSize = Field(default_factory=SourceSize)
    flops_per_second: float = 0.0

    @property
    def peak_memory_bytes(self) -> int | None:
        return self.memory_estimate["total"] if self.memory_estimate else None

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def to_build(self) -> list[PlannedStage]:
        return [s for s in self.stages if not s.cached]

    def stage(self, label: str) -> PlannedStage:
        """The planned stage behind a label of the walk."""
        target = self.labels[label]
        return next(s for s in self.stages if s.label == target)

    def record(self) -> dict[str, Any]:
        """What the run manifest records of the plan: the stages in order (label, stage, key,
        whether it was cached when planned), the memory estimate and the notes."""
        return {
            "stages": [{"label": s.label, "stage": s.stage, "key": s.key, "cached": s.cached} for s in self.stages],
            "memory_estimate": self.memory_estimate,
            "notes": list(self.notes),
        }

    def lineage_inputs(self) -> dict[str, Any]:
        """The corpus stage's input hashes (the files the run reads), for the manifest."""
        return dict(self.stage("corpus").spec.inputs)


def plan_adaptation(cfg: AdaptConfig, *, measure: bool = False) -> RunPlan:
    """Validate ``cfg`` and plan every stage ``run_adaptation`` will run, in order, with keys
    and cache state; bad input raises here, before anything is built."""
    from transfer.settings.input_warnings import run_notes
    from transfer.settings.validate import validate_config

    estimate = validate_config(cfg, planning_only=measure)  # a dry run may plan for other hardware
    cache = StageCache(cfg.cache_dir)
    planned: list[PlannedStage] = []
    labels: dict[str, str] = {}

    def visit(spec: StageSpec, label: str) -> StageOutput:
        path = cache.path(spec.stage, spec.key)
        # two labels can name one stage: it runs once, so it is planned once
        same = next((p for p in planned if p.stage == spec.stage and p.key == spec.key), None)
        if same is None:
            same = PlannedStage(label=label, spec=spec, path=str(path),
                                cached=cache.is_complete(spec.stage, spec.key))
            planned.append(same)
        labels[label] = same.label
        return StageOutput(spec.stage, spec.key, path)

    walk_stages(cfg, visit)
    plan = RunPlan(config=cfg, code_version=code_version(), stages=planned, labels=labels,
                   notes=run_notes(cfg), memory_estimate=estimate.to_dict() if estimate else None)
    if measure:
        _measure(plan, cache)
    return plan


def _device_here(device: str | None) -> bool:
    from transfer.engine.devices import pick_device
    from transfer.errors import VocabTransferError

    try:
        pick_device(device)
    except VocabTransferError:
        return False
    return True


def _measure(plan: RunPlan, cache: StageCache) -> None:
    """Fill in the source size and each stage's rough build time (a ~0.2 s device probe)."""
    cfg = plan.config
    source = plan.stage("source")
    source_folder = Path(source.path) if cache.is_complete(source.stage, source.key) else None
    plan.source = source_size(cfg, source_folder)
    if not plan.to_build:
        return
    if cfg.device_memory is not None and not _device_here(cfg.device):
        plan.notes.append(f"planned for device {cfg.device!r} with {cfg.device_memory} each, which this machine "
                          "lacks: memory per device only, no time estimates")
        return
    plan.flops_per_second = measure_flops_per_second(cfg.device)
    size = corpus_bytes(cfg)
    for stage in plan.to_build:
        stage.seconds = stage_seconds(stage.stage, cfg, plan.source, plan.flops_per_second, size, stage.label,
                                      stage.spec.params)
