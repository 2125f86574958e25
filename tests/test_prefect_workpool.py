"""The multi-machine path for real: a process work pool, a deployment from the local source
(no image), a worker started as its own process, and a tiny run that completes; then the
batch flow fans a language out to the same pool and gets its outcome back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.helpers import flow_config, languages_file

REPO = Path(__file__).resolve().parent.parent
POOL = "tiny-process-pool"


def _worker(api_url: str, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
           # poll the pool every second, not every 10 s: each run waits for the next poll
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process",
             "--prefetch-seconds", "5", *extra],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_worker_on_a_process_pool_runs_a_deployment(prefect_harness, tmp_path: Path,
                                                    tiny_source: Path, tiny_corpus: Path) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment

    from flows.batch_flow import batch_flow

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    source = flow.from_source(source=str(REPO), entrypoint="flows/adapt_flow.py:adapt_flow")
    source.deploy(name="pool-adapt", work_pool_name=POOL, build=False, push=False,
                  print_next_steps=False, ignore_warnings=True)
    cfg = flow_config(tmp_path, tiny_source, tiny_corpus)
    run = run_deployment("adapt-language/pool-adapt", parameters={"config": cfg.model_dump(mode="json")},
                         timeout=0)

    # one worker serves both runs (each worker start imports Prefect anew)
    log = tmp_path / "worker.log"
    worker = _worker(prefect_harness, log)
    try:
        deadline = time.monotonic() + 240
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run.id).state
            while not state.is_final() and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.5)
                state = client.read_flow_run(run.id).state
        assert state.is_completed(), f"{state.name}: {state.message}\n{log.read_text()[-3000:]}"
        assert (tmp_path / "models" / cfg.model_name()).is_dir()

        # the batch submits each language to the pool and collects the outcomes; its
        # language shares the first run's stage cache (corpus, source, tokenizer, init)
        (tmp_path / "batch").mkdir()
        languages = languages_file(tmp_path / "batch", tiny_corpus, tiny_source)
        data = yaml.safe_load(languages.read_text())
        data["defaults"]["cache_dir"] = str(cfg.cache_dir)
        languages.write_text(yaml.safe_dump(data))
        batch = batch_flow(str(languages), only=["de"], deployment="adapt-language/pool-adapt",
                           poll_seconds=1, wait_timeout=240, return_state=True)
    finally:
        _stop(worker)
    assert batch.is_completed(), f"{batch.message}\n{log.read_text()[-3000:]}"
    (row,) = batch.result()
    assert row["language"] == "de" and row["state"] == "Completed" and row["flow_run_id"]
