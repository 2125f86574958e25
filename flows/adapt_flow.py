"""Prefect flow for one language pair: a thin wrapper over ``transfer.pipeline``.

Every stage runs as a Prefect task whose cache key is the stage's content-addressed key
(``transfer.engine.cache``), so the UI shows cached stages and plain library calls share the
same folders. Stages reach the flow through ``run_adaptation``'s ``execute_stage`` hook,
so a stage added to the pipeline (vectors, alignment, surgery, the full trainer,
registration) becomes a task here without a change to this file.

Around each stage the flow adds what only an orchestrator can: retries for failures
that can be transient (I/O, a busy or failing GPU; never bad input), a concurrency limit
so that one worker machine trains one model at a time, and a progress artifact.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.concurrency.sync import concurrency

from flows.parameters import AdaptParameters
from flows.reports import (
    RunProgress,
    artifact_key,
    publish_reports,
    result_markdown,
    training_callbacks,
)
from transfer.engine.cache import StageCache, StageOutput
from transfer.engine.stage_table import is_training_stage
from transfer.engine.stages import BuildContext, StageSpec, execute
from transfer.errors import VocabTransferError
from transfer.pipeline import run_adaptation
from transfer.planning.plan import RunPlan, plan_adaptation
from transfer.publish.result import AdaptResult

__all__ = [
    "adapt_flow",
    "execute_as_task",
    "execute_task",
    "is_transient",
    "result_markdown",
    "stage_cache_key",
    "training_limit_name",
]

#: Retries of a stage whose failure may be transient, and the waits before them (seconds).
STAGE_RETRIES = 2
RETRY_DELAYS = [10, 60]


def _cache_root(cache_dir: str) -> str:
    return str(Path(cache_dir).resolve())


def stage_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """The library's stage key (plus the cache root, since the result is a folder path)."""
    spec: StageSpec = parameters["spec"]
    root = _cache_root(parameters["cache_dir"])
    return f"{spec.stage}-{spec.key}-{hashlib.sha256(root.encode()).hexdigest()[:8]}"


def is_transient(error: BaseException) -> bool:
    """Whether retrying may help: I/O and network errors, timeouts, CUDA runtime failures.
    Bad input (``VocabTransferError``, validation errors) fails at once: a retry would fail
    the same way."""
    if isinstance(error, (VocabTransferError, ValueError, TypeError, KeyError,
                          FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(error, (OSError, TimeoutError, ConnectionError)):
        return True
    return isinstance(error, RuntimeError) and bool(re.search(r"CUDA|NCCL|cuDNN|out of memory", str(error)))


def _retry_if_transient(task_: Any, task_run: Any, state: Any) -> bool:
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)


@task(cache_key_fn=stage_cache_key, persist_result=True, task_run_name="{spec.stage}",
      retries=STAGE_RETRIES, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=_retry_if_transient)
def execute_task(spec: StageSpec, cache_dir: str, context: BuildContext = BuildContext()) -> StageOutput:
    # ``context`` (progress callbacks) never changes the result: stage_cache_key leaves it out
    output, cached = execute(spec, StageCache(_cache_root(cache_dir)), context)
    get_run_logger().info("%s %s (%s)", spec.stage, "reused" if cached else "built", output.path)
    return output


def training_limit_name() -> str:
    """The global concurrency limit that lets one training run at a time on this worker.

    One per machine by default (its host name plus the GPUs it sees); a worker started per
    GPU sets ``VOCAB_TRANSFER_TRAINING_LIMIT`` to a name of its own."""
    name = os.environ.get("VOCAB_TRANSFER_TRAINING_LIMIT")
    if not name:
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        name = f"training-{socket.gethostname()}" + (f"-gpu{gpus}" if gpus else "")
    return artifact_key(name)


def ensure_training_limit(name: str, limit: int = 1) -> None:
    """Create the limit (one slot) if this Prefect server does not have it yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
        except ObjectAlreadyExists:
            pass  # another run created it first


def execute_as_task(spec: StageSpec, cache_dir: str, progress: RunProgress | None = None,
                    context: BuildContext = BuildContext()) -> StageOutput:
    """Run a stage as a Prefect task, its builder getting ``context``; a cached Prefect
    result whose folder was deleted (``make clean-cache``) is refreshed instead of trusted.
    An uncached training stage first takes this worker's training slot."""
    cache = StageCache(_cache_root(cache_dir))
    built = cache.is_complete(spec.stage, spec.key)
    if progress is not None:
        progress.update(f"{spec.stage}: {'cached' if built else 'running'}")
    slot = nullcontext()
    if is_training_stage(spec.stage) and not built:
        name = training_limit_name()
        ensure_training_limit(name)
        slot = concurrency(name, occupy=1)
    with slot:
        output = execute_task(spec, cache_dir, context)
        if not cache.is_complete(spec.stage, spec.key):
            output = execute_task.with_options(refresh_cache=True)(spec, cache_dir, context)
    if progress is not None:
        progress.update(f"{spec.stage}: done", finished_stage=True)
    return output


#: Flow runs in one process (threads of a parent flow or a test) take turns; a worker's
#: runs are separate processes and still run side by side. Building a model changes
#: process-wide state: transformers swaps ``PreTrainedModel.tie_weights`` for a no-op while
#: it loads (two loads interleaving can leave it a no-op for good, then a tied head stays on
#: the meta device), and torch's default dtype. Re-entrant: a run may start a sub-run.
_ONE_RUN_PER_PROCESS = threading.RLock()


@contextmanager
def _process_turn(waiting_note: str) -> Iterator[None]:
    if not _ONE_RUN_PER_PROCESS.acquire(blocking=False):
        get_run_logger().info(waiting_note)
        _ONE_RUN_PER_PROCESS.acquire()
    try:
        yield
    finally:
        _ONE_RUN_PER_PROCESS.release()


@flow(name="adapt-language", log_prints=True, flow_run_name="{config.target_language}-{config.strategy}")
def adapt_flow(config: AdaptParameters = AdaptParameters(), plan: RunPlan | None = None) -> AdaptResult:
    """Adapt a source model to one target language: tokenizer, initialization, training,
    evaluation (every stage cached by its content key), with a summary, a metrics table,
    a learning-curve link and a progress bar as artifacts. ``plan``: the run's plan when the
    caller has made it already (the CLI, the batch and compare flows); from the UI it is
    left empty and the flow plans ``config`` itself, once."""
    with _process_turn("waiting for another flow run in this process to finish"):
        if plan is None and config.hydra:
            return _hydra_run(config)  # type: ignore[return-value]
        if plan is None:
            plan = plan_adaptation(config)
        for note in plan.notes:
            print(note)  # log_prints: the flow run's log shows the strategy choice and the warnings
        cache_dir = str(plan.config.cache_dir)
        name = plan.config.model_name()
        progress = RunProgress(len(plan.stages), key=artifact_key(name, "progress"))
        result = run_adaptation(plan, callbacks=training_callbacks(progress),
                                execute_stage=lambda spec, context: execute_as_task(spec, cache_dir, progress, context))
        progress.update("finished")
        publish_reports(result, Path(plan.config.output_dir).parent / "reports")
    return result


def _hydra_run(config: AdaptParameters):
    """A Hydra run from the form (``hydra: true``): each language's stages and the one
    ``hydra`` stage as tasks, a progress bar, and a summary of every language's scores."""
    from prefect.artifacts import create_markdown_artifact

    from transfer.hydra.run import SCORE_LABELS, hydra_model_name, plan_hydra, run_hydra
    from transfer.publish.summary import markdown_table

    plan = plan_hydra(config)
    for note in plan.notes:
        print(note)
    name = hydra_model_name(plan.config)
    cache_dir = str(plan.config.cache_dir)
    progress = RunProgress(len(plan.stages), key=artifact_key(name, "progress"))
    result = run_hydra(plan, execute_stage=lambda spec, context: execute_as_task(spec, cache_dir, progress, context))
    progress.update("finished")
    labels = SCORE_LABELS
    rows = [[lang, *(f"{result.scores[lang].get(label, float('nan')):.4f}" for label in labels),
             f"`{result.language_dirs[lang]}`"] for lang in result.scores]
    table = markdown_table(["language", "source model", "step 0", "trained", "plain folder"], rows)
    registered = "".join(f"\n- {lang}: registered `{reg.name}` version {reg.version}"
                         for lang, reg in result.registrations.items())
    create_markdown_artifact(
        markdown=f"# Hydra {name}\n\nOne body: `{result.model_dir}`\n\n{result.metric} on held-out texts:\n\n"
                 f"{table}\n{registered}\n",
        key=artifact_key(name, "summary"), description="Hydra: each language's scores and plain folder")
    return result
