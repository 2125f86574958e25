"""Prefect state under two flow runs at once (issue 16, item 4): two runs of the adapt flow,
for two languages, for one language with two strategies, and for one configuration twice,
started together in two threads against one Prefect API and one stage cache, registering
into one registry.

Each must end Completed under its own name (the same name only for the same
configuration), with its own artifacts (progress at 100 %, the summary of its own model),
logs that name its own stages only, and its own registry version (``best`` on a real
version, no run registered twice). The runs' windows on the server overlap: both are
Running at once. In one process their stages take turns (``flows/adapt_flow.py``: two
runs' model loads interleaving crashed with a tied head left on the meta device);
``tests/test_concurrency.py`` covers the library under the same races in two processes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import flow_artifacts, flow_config, registry_uri
from transfer.publish.registry_records import BEST_ALIAS
from transfer.publish.registry_store import Registry
from transfer.publish.result import AdaptResult, qualified_stage_keys

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _at_once(configs: list[Any]) -> tuple[list[Any], dict[str, list[tuple[float, str]]]]:
    """Start one adapt flow per config, each in its own thread; the first run to reach its
    first stage waits there until every run is Running on the server, so the runs overlap
    whatever the scheduler does. Their final states (in the configs' order), and each
    run's progress updates as (time, description), by flow-run id."""
    from prefect.runtime import flow_run as current_run

    from flows import reports
    from flows.adapt_flow import adapt_flow
    from flows.parameters import as_parameters

    running = [threading.Event() for _ in configs]
    progress: dict[str, list[tuple[float, str]]] = {}
    lock = threading.Lock()

    def on_running(flow: Any, flow_run: Any, state: Any) -> None:
        with lock:
            next(event for event in running if not event.is_set()).set()

    def hold_at_start(artifact_id: Any, percent: float, description: str) -> None:
        with lock:
            progress.setdefault(current_run.get_id(), []).append((time.monotonic(), description))
        if description == "starting":
            for event in running:
                event.wait(timeout=120)

    gated = adapt_flow.with_options(on_running=[on_running])
    states: list[Any] = [None] * len(configs)

    def run(i: int) -> None:
        states[i] = gated(as_parameters(configs[i]), return_state=True)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(configs))]
    reports.progress_observers.append(hold_at_start)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        reports.progress_observers.remove(hold_at_start)
    assert not any(thread.is_alive() for thread in threads), "a flow run never finished"
    return states, progress


def _take_turns(progress: dict[str, list[tuple[float, str]]]) -> None:
    """In one process the runs' stages take turns (flows/adapt_flow.py: building a model
    changes process-wide state in transformers): one run's progress goes from 'starting'
    to 'finished' before the other's starts."""
    assert len(progress) == 2, progress
    spans = sorted((updates[0], updates[-1]) for updates in progress.values())
    assert all(start[1] == "starting" and end[1] == "finished" for start, end in spans), progress
    (_, first_end), (second_start, _) = spans
    assert first_end[0] <= second_start[0], progress


def _flow_run(run_id) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def _log_lines(run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs travel in batches: send what is queued
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return [log.message for log in logs]


def _check_own_state(states: list[Any], results: list[AdaptResult]) -> None:
    """Completed, distinct names, overlapping windows, own artifacts and own logs."""
    runs = [_flow_run(state.state_details.flow_run_id) for state in states]
    names = [run.name for run in runs]
    # each named for what it runs: distinct unless the two runs are the same configuration
    assert names == [f"{r.config.target_language}-{r.config.strategy}" for r in results], names
    assert len(set(names)) == len({r.config.model_name() for r in results}) and runs[0].id != runs[1].id
    # both ran at the same time: each started before the other ended
    first, second = runs
    assert first.start_time < second.end_time and second.start_time < first.end_time, \
        [(r.start_time, r.end_time) for r in runs]

    for run, result, other in zip(runs, results, reversed(results), strict=True):
        model = result.config.model_name()
        artifacts = flow_artifacts(run.id)
        assert artifacts and all(a.flow_run_id == run.id for a in artifacts)
        # every artifact of the run is keyed by its own model, none by the other's
        assert {a.key for a in artifacts} == {f"{model}-progress", f"{model}-summary",
                                              f"{model}-metrics", f"{model}-learning-curve"}
        progress = next(a for a in artifacts if a.type == "progress")
        assert float(progress.data) == 100.0 and progress.description == "finished"
        summary = next(a for a in artifacts if a.key == f"{model}-summary")
        assert summary.data.startswith(f"# {model}\n") and str(result.model_dir) in summary.data

        # the stage lines in this run's log name its own stage folders, never the other's
        # (a stage the Prefect cache answers logs no line: compare the stages not shared)
        logged = " ".join(_log_lines(run.id))
        mine, theirs = _stage_folders(result), _stage_folders(other)
        assert all(folder in logged for folder in mine - theirs), (mine - theirs, logged[:3000])
        assert not any(folder in logged for folder in theirs - mine), (theirs - mine, logged[:3000])


def _stage_folders(result: AdaptResult) -> set[str]:
    """``stage/key`` of the run's cache folders, as its stage log lines name them."""
    return {value.replace(":", "/") for value in qualified_stage_keys(result).values()}


def _english_corpus(tmp_path: Path) -> Path:
    from tests.tiny import ENGLISH_SENTENCES

    path = tmp_path / "en.txt"
    path.write_text("\n".join(f"{s} ({i})" for i in range(12) for s in ENGLISH_SENTENCES) + "\n")
    return path


def test_two_languages_at_once(prefect_harness, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                               tiny_source: Path, tiny_corpus: Path) -> None:
    uri = registry_uri(tmp_path, tmp_path_factory)
    configs = [flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1, register_model=True,
                           tracking_uri=uri),
               flow_config(tmp_path, tiny_source, _english_corpus(tmp_path), target_language="en",
                           train_steps=1, register_model=True, tracking_uri=uri)]
    states, progress = _at_once(configs)
    assert all(state.is_completed() for state in states), [state.message for state in states]
    results = [state.result() for state in states]
    _check_own_state(states, results)
    _take_turns(progress)

    # one registered model per language, each with its run as version 1 and its best
    registry = Registry(uri)
    versions = registry.versions()
    assert sorted((v.name, v.version) for v in versions) == [("vocab-transfer-de", 1), ("vocab-transfer-en", 1)]
    for result in results:
        reg = result.registration
        assert reg is not None and reg.created
        best = registry.resolve(f"{reg.name}@{BEST_ALIAS}")
        assert (best.version, best.tag("fingerprint")) == (reg.version, reg.fingerprint)


def test_two_strategies_of_one_language_at_once(prefect_harness, tmp_path: Path,
                                                tmp_path_factory: pytest.TempPathFactory,
                                                tiny_source: Path, tiny_corpus: Path) -> None:
    uri = registry_uri(tmp_path, tmp_path_factory)
    configs = [flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1, strategy=strategy,
                           register_model=True, tracking_uri=uri) for strategy in ("mean", "random")]
    states, progress = _at_once(configs)
    assert all(state.is_completed() for state in states), [state.message for state in states]
    results = [state.result() for state in states]
    _check_own_state(states, results)
    _take_turns(progress)

    # two versions of one registered model, one per run, and `best` on the lower BPB
    registry = Registry(uri)
    versions = registry.versions("de")
    assert sorted(v.version for v in versions) == [1, 2]
    regs = [result.registration for result in results]
    assert all(reg is not None and reg.created for reg in regs)
    assert sorted(reg.version for reg in regs) == [1, 2]
    assert sorted(v.tag("fingerprint") for v in versions) == sorted(reg.fingerprint for reg in regs)
    best = registry.resolve(f"vocab-transfer-de@{BEST_ALIAS}")
    lower = min(results, key=lambda r: r.scores["adapted_trained"])
    assert best.version == lower.registration.version and best.tag("strategy") == lower.config.strategy


def test_same_config_twice_at_once(prefect_harness, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                   tiny_source: Path, tiny_corpus: Path) -> None:
    uri = registry_uri(tmp_path, tmp_path_factory)
    config = flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1, register_model=True, tracking_uri=uri)
    states, progress = _at_once([config, config])
    assert all(state.is_completed() for state in states), [state.message for state in states]
    results = [state.result() for state in states]
    _check_own_state(states, results)
    _take_turns(progress)

    # each stage built once, by one of the runs (the other found it cached): its log alone
    # has the stage lines, naming every stage folder
    logs = [" ".join(_log_lines(state.state_details.flow_run_id)) for state in states]
    builders = [log for log in logs if " built (" in log]
    assert len(builders) == 1, logs
    assert all(folder in builders[0] for folder in _stage_folders(results[0]))
    # one version: the second registration found the same run
    regs = [result.registration for result in results]
    assert sorted(reg.created for reg in regs) == [False, True]
    assert [(v.version, v.tag("fingerprint")) for v in Registry(uri).versions()] == [(1, regs[0].fingerprint)]
    assert regs[0].version == regs[1].version == Registry(uri).resolve(f"vocab-transfer-de@{BEST_ALIAS}").version
