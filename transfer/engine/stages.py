"""The pipeline's stages as cacheable units: a spec (what to compute) and a builder.

A ``StageSpec`` names the stage, its parameters, the hashes of its inputs (upstream stage
keys are content addresses, so they serve as input hashes) and where the upstream folders
are. Its ``key`` is the cache key used both by ``transfer.pipeline`` and by the Prefect
tasks in ``flows/``. Builders are plain functions ``build(spec, out_dir, context)`` that
read upstream folders and write their own folder; ``context`` carries what only the caller
has and what does not change the result (progress callbacks), so it is not in the key.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from transfer.engine.cache import StageCache, StageOutput, stage_key
from transfer.engine.stage_table import STAGE_TABLE

if TYPE_CHECKING:
    from transfer.train.callbacks import TrainingCallback


@dataclass(frozen=True)
class BuildContext:
    """What a run hands every builder besides its spec: objects that cannot travel in a
    serializable spec and never change what is built. ``callbacks`` report the train
    stage's progress (the CLI's progress bar, the Prefect flow's progress artifact)."""

    callbacks: tuple[TrainingCallback, ...] = ()


Builder = Callable[["StageSpec", Path, BuildContext], None]
_BUILDERS: dict[str, Builder] = {}

class StageSpec(BaseModel):
    """What one stage computes; JSON-serializable so Prefect can show it as a parameter."""

    stage: str
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)
    upstream: dict[str, str] = Field(default_factory=dict, description="name -> folder path")
    # settings that change how, not what, is computed (device, batch size of scoring): not in the key
    runtime: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return stage_key(self.stage, self.params, self.inputs)

    def upstream_path(self, name: str) -> Path:
        return Path(self.upstream[name])


def builder(stage: str) -> Callable[[Builder], Builder]:
    """Register the function that builds a stage's folder."""

    def register(fn: Builder) -> Builder:
        _BUILDERS[stage] = fn
        return fn

    return register


def builder_of(stage: str) -> Builder:
    """The registered builder of ``stage`` (importing its stage module on first use)."""
    if stage not in _BUILDERS and stage in STAGE_TABLE:
        importlib.import_module(STAGE_TABLE[stage].module)
    return _BUILDERS[stage]


def execute(spec: StageSpec, cache: StageCache,
            context: BuildContext = BuildContext()) -> tuple[StageOutput, bool]:
    """Return the stage's cached folder or build it (handing the builder ``context``); the
    bool tells whether it was cached."""
    build = builder_of(spec.stage)
    return cache.run(spec.stage, spec.key, lambda out: build(spec, out, context))


def upstream_of(**outputs: StageOutput) -> tuple[dict[str, str], dict[str, str]]:
    """Inputs (keys) and upstream (paths) entries for a spec from finished stages."""
    return (
        {name: f"{out.stage}:{out.key}" for name, out in outputs.items()},
        {name: str(out.path) for name, out in outputs.items()},
    )


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
