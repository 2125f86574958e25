"""Prefect flow for one language pair: a thin wrapper over ``transfer.pipeline``.

Every stage runs as a Prefect task whose cache key is the stage's content-addressed key
(``transfer.cache``), so the UI shows cached stages and plain library calls share the
same folders.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from transfer.cache import StageCache, StageOutput
from transfer.config import AdaptConfig
from transfer.pipeline import AdaptResult, run_adaptation
from transfer.stages import StageSpec, execute


def _cache_root(cache_dir: str) -> str:
    return str(Path(cache_dir).resolve())


def stage_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """The library's stage key (plus the cache root, since the result is a folder path)."""
    spec: StageSpec = parameters["spec"]
    root = _cache_root(parameters["cache_dir"])
    return f"{spec.stage}-{spec.key}-{hashlib.sha256(root.encode()).hexdigest()[:8]}"


@task(cache_key_fn=stage_cache_key, persist_result=True, task_run_name="{spec.stage}")
def run_stage(spec: StageSpec, cache_dir: str) -> StageOutput:
    output, cached = execute(spec, StageCache(_cache_root(cache_dir)))
    get_run_logger().info("%s %s (%s)", spec.stage, "reused" if cached else "built", output.path)
    return output


def result_markdown(result: AdaptResult) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in result.bpb.items())
    fert = result.fertility
    return (
        f"# {result.config.model_name()}\n\n"
        f"Model: `{result.model_dir}`\n\n| evaluation | bits per byte |\n|---|---|\n{rows}\n\n"
        f"Fertility (tokens/word): source {fert['source']['tokens_per_word']:.2f}, "
        f"target {fert['target']['tokens_per_word']:.2f}\n"
    )


def execute_as_task(spec: StageSpec, cache_dir: str) -> StageOutput:
    """Run a stage as a Prefect task; a cached Prefect result whose folder was deleted
    (``make clean-cache``) is refreshed instead of trusted."""
    output = run_stage(spec, cache_dir)
    if not StageCache(_cache_root(cache_dir)).is_complete(spec.stage, spec.key):
        output = run_stage.with_options(refresh_cache=True)(spec, cache_dir)
    return output


@flow(name="adapt-language", log_prints=True)
def adapt_flow(config: AdaptConfig = AdaptConfig()) -> AdaptResult:
    """Adapt a source model to one target language (all stages cached)."""
    cache_dir = str(config.cache_dir)
    result = run_adaptation(config, execute_stage=lambda spec: execute_as_task(spec, cache_dir))
    create_markdown_artifact(markdown=result_markdown(result), key="adaptation-summary",
                             description="Bits per byte before and after adaptation")
    return result
