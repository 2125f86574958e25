"""Batch flow: one adaptation per language of the languages file, then a summary table.

Each language is its own sub-run of the single-pair flow (``adapt-language``), so it shows
in the UI with its own stages, artifacts and state; a failing language is recorded and the
others go on. With ``deployment`` set, the languages are submitted to that deployment
instead (``run_deployment``), so workers on several machines share them (work pools).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from flows.adapt_flow import adapt_flow
from flows.languages import DEFAULT_LANGUAGES_FILE, LanguagesConfigError, load_languages
from flows.parameters import AdaptParameters
from transfer.publish.labels import SOURCE_MODEL_TITLE
from transfer.publish.result import AdaptResult
from transfer.publish.summary import RunSummary, markdown_table


class LanguageOutcome(BaseModel):
    """One row of the batch summary."""

    language: str
    name: str
    strategy: str
    state: str
    metric: str = "bpb"  # what the three numbers are: "bpb", or "mlm_loss" for a masked LM
    bpb_source_model: float | None = None
    bpb_step0: float | None = None
    bpb_trained: float | None = None
    seconds: float | None = None
    model_dir: str | None = None
    flow_run_id: str | None = None
    message: str | None = None


def _outcome_from_result(code: str, name: str, params: AdaptParameters, state: State) -> LanguageOutcome:
    row = LanguageOutcome(language=code, name=name, strategy=params.strategy, state=state.name,
                          flow_run_id=str(state.state_details.flow_run_id or "") or None)
    if state.is_completed():
        try:
            result = state.result()
        except Exception as error:  # noqa: BLE001 - a run on another machine keeps its result there
            row.message = f"result not readable here ({type(error).__name__}); see the run's artifacts"
            return row
        from transfer.hydra.run import HydraResult

        if isinstance(result, dict):
            result = (HydraResult if "language_dirs" in result else AdaptResult).model_validate(result)
        if isinstance(result, HydraResult):  # one body, a head per language: each language's score
            row.metric = result.metric
            row.message = "hydra, trained: " + ", ".join(
                f"{lang} {scores.get('hydra_trained', float('nan')):.4f}" for lang, scores in result.scores.items())
            row.seconds = round(result.seconds, 1)
            row.model_dir = result.model_dir
            return row
        summary = RunSummary.from_result(result)
        row.metric = summary.metric
        row.bpb_source_model = summary.source_model
        row.bpb_step0 = summary.step0
        row.bpb_trained = summary.trained
        row.seconds = round(result.seconds, 1)
        row.model_dir = result.model_dir
    else:
        row.message = (state.message or "")[:300]
    return row


def _wait_for_runs(flow_run_ids: dict[str, Any], poll_seconds: float,
                   timeout: float | None = None) -> dict[str, State]:
    """Poll the submitted runs until every one is final (or ``timeout`` seconds passed:
    the runs still going are returned in their current state)."""
    from prefect.client.orchestration import get_client

    states: dict[str, State] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while len(states) < len(flow_run_ids):
            if deadline is not None and time.monotonic() > deadline:
                for code, run_id in flow_run_ids.items():
                    states.setdefault(code, client.read_flow_run(run_id).state)
                break
            for code, run_id in flow_run_ids.items():
                if code in states:
                    continue
                run = client.read_flow_run(run_id)
                if run.state is not None and run.state.is_final():
                    states[code] = run.state
            if len(states) < len(flow_run_ids):
                time.sleep(poll_seconds)
    return states


def summary_table(rows: list[LanguageOutcome]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the batch summary (the flow's markdown and the CLI's table)."""
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    header = ["language", "strategy", "state", "metric", SOURCE_MODEL_TITLE, "step 0", "trained"]
    cells = [[f"{r.name} ({r.language})", r.strategy, r.state, r.metric,
              fmt(r.bpb_source_model), fmt(r.bpb_step0), fmt(r.bpb_trained)] for r in rows]
    return header, cells


def summary_markdown(rows: list[LanguageOutcome]) -> str:
    return markdown_table(*summary_table(rows))


@flow(name="adapt-batch", log_prints=True)
def batch_flow(
    languages_file: str = str(DEFAULT_LANGUAGES_FILE),
    only: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    deployment: str | None = None,
    poll_seconds: float = 5.0,
    wait_timeout: float | None = None,
) -> State:
    """Adapt every language of ``languages_file`` (or those in ``only``); ``overrides`` are
    AdaptConfig fields applied to all (e.g. a smaller ``train_steps``). ``deployment``
    (``adapt-language/adapt``) sends each language to a work pool instead of running here;
    ``wait_timeout`` bounds the wait for those runs (seconds, default: no bound)."""
    logger = get_run_logger()
    languages = load_languages(Path(languages_file))
    selected = languages.select(only)
    rows: list[LanguageOutcome] = []
    submitted: dict[str, Any] = {}
    planned: dict[str, tuple[str, AdaptParameters]] = {}
    for code, entry in selected.items():
        try:
            params = entry.to_parameters(code, languages.defaults, **(overrides or {}))
        except LanguagesConfigError as error:
            rows.append(LanguageOutcome(language=code, name=entry.name, strategy=entry.strategy,
                                        state="Invalid", message=str(error)[:300]))
            continue
        planned[code] = (entry.name, params)
        if deployment:
            from prefect.deployments import run_deployment

            run = run_deployment(deployment, parameters={"config": params.model_dump(mode="json")},
                                 timeout=0, flow_run_name=f"{code}-{params.strategy}")
            submitted[code] = run.id
            continue
        logger.info("adapting %s (%s)", entry.name, code)
        state = adapt_flow.with_options(flow_run_name=f"{code}-{params.strategy}")(
            params, return_state=True
        )
        rows.append(_outcome_from_result(code, entry.name, params, state))
    if submitted:
        for code, state in _wait_for_runs(submitted, poll_seconds, wait_timeout).items():
            name, params = planned[code]
            rows.append(_outcome_from_result(code, name, params, state))
    rows.sort(key=lambda r: list(selected).index(r.language))
    create_table_artifact(table=[r.model_dump() for r in rows], key="batch-summary",
                          description=summary_markdown(rows))
    print(summary_markdown(rows))
    failed = [r.language for r in rows if r.state != "Completed"]
    data = [r.model_dump() for r in rows]
    if failed:
        return Failed(message=f"{len(failed)} of {len(rows)} languages failed: {failed}", data=data)
    return Completed(message=f"{len(rows)} languages adapted", data=data)
