"""The Prefect flow and the CLI on a tiny model: cached stages show as Cached in Prefect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from tests.helpers import config

runner = CliRunner()


def _task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.state.name for run in runs}


def test_flow_caches_stages_in_prefect(prefect_harness, tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from flows.adapt_flow import adapt_flow

    cfg = config(tmp_path, tiny_source, tiny_corpus)
    first = adapt_flow(cfg, return_state=True)
    assert first.is_completed()
    second = adapt_flow(cfg, return_state=True)
    states = _task_states(second.state_details.flow_run_id)
    assert states and set(states.values()) == {"Cached"}, states
    assert second.result().scores == first.result().scores

    # a deleted stage folder is rebuilt, not trusted from Prefect's record
    init_dir = Path(cfg.cache_dir) / "init"
    shutil.rmtree(init_dir)
    third = adapt_flow(cfg, return_state=True)
    assert third.is_completed()
    assert any(p.joinpath(".complete").exists() for p in init_dir.iterdir())


def test_cli_adapt_without_prefect_and_errors(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from flows.cli import app

    cfg = config(tmp_path, tiny_source, tiny_corpus)
    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    result = runner.invoke(app, ["adapt", "--config", str(config_file), "--no-prefect"])
    assert result.exit_code == 0, result.output
    assert "bits per byte" in result.output and "adapted" in result.output

    bad = runner.invoke(app, ["adapt", "--config", str(config_file), "--no-prefect", "--strategy", "nope"])
    assert bad.exit_code == 2
    assert "nope" in bad.output

    listing = runner.invoke(app, ["strategies"])
    assert listing.exit_code == 0
    for name in ("random", "mean", "overlap"):
        assert name in listing.output
    assert json.loads(config_file.read_text())["strategy"] == "mean"


def test_cli_target_file_replaces_the_demo_bible(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from flows.cli import app

    result = runner.invoke(app, ["adapt", "--source-model", str(tiny_source), "--target-file", str(tiny_corpus),
                                 "--target-language", "sw", "--dry-run", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    # without the demo's German Bible there are no verse-aligned English texts to score, so
    # the plan has 9 stages (the source model scored on test texts and on the curve's dev
    # texts), not the 10 of a Bible run
    assert "0/9 stages cached" in result.output, result.output
