"""The product as a user sees it: `vocab-transfer serve` starts a local Prefect server
(SQLite, 127.0.0.1) and serves the deployments; a run is triggered through the API and
finishes; headless Chromium renders the UI (after JavaScript ran) with the deployment's
name and the run in state Completed. A screenshot is saved under artifacts/."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import flow_config

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make system)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chromium(url: str, *extra: str, timeout: float = 90) -> str:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
             f"--user-data-dir={profile}", "--window-size=1400,1000", "--virtual-time-budget=30000",
             *extra, url],
            check=False, capture_output=True, text=True, timeout=timeout,
        )
        return result.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _visible_text(html: str) -> str:
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.DOTALL)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_ui_shows_deployment_and_completed_run(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    cfg = flow_config(tmp_path, tiny_source, tiny_corpus)
    languages = tmp_path / "languages.yaml"
    languages.write_text(yaml.safe_dump({
        "defaults": {"source_model": str(tiny_source), "source_bible": [], "device": "cpu",
                     "register_model": False},
        "languages": {"de": {"name": "German", "corpus": {"files": [str(tiny_corpus)]},
                             "vocab_size": 350, "train_steps": 1, "cron": "0 1 29 2 *"}},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"})
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "serve", "--languages", str(languages), "--port", str(port),
             "--home", str(tmp_path / "prefect-home"), "--pause-schedules"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api}):
            deadline = time.monotonic() + 180
            # `serve` registers the deployments one after another: wait until both exist
            deployment = german = None
            while (deployment is None or german is None) and time.monotonic() < deadline:
                assert serve.poll() is None, log.read_text()[-3000:]
                try:
                    with get_client(sync_client=True) as client:
                        deployment = client.read_deployment_by_name("adapt-language/adapt")
                        german = client.read_deployment_by_name("adapt-language/adapt-de")
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.5)
            assert deployment is not None and german is not None, log.read_text()[-3000:]
            assert [s.schedule.cron for s in german.schedules] == ["0 1 29 2 *"]

            from prefect.deployments import run_deployment

            run = run_deployment("adapt-language/adapt", parameters={"config": cfg.model_dump(mode="json")},
                                 timeout=0)
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(run.id).state
                while not state.is_final() and time.monotonic() < deadline + 120:
                    time.sleep(0.5)
                    state = client.read_flow_run(run.id).state
            assert state.is_completed(), f"{state.name}: {state.message}\n{log.read_text()[-3000:]}"
            with get_client(sync_client=True) as client:
                run_name = client.read_flow_run(run.id).name  # "<language>-<strategy>"

        ui = f"http://127.0.0.1:{port}"
        deployments_dom = _chromium(f"{ui}/deployments", "--dump-dom")
        assert "adapt-de" in deployments_dom and ">adapt<" in deployments_dom.replace(" ", "")
        # the run's page as rendered: its name, its state, the deployment it came from; one
        # browser run both dumps the page and saves the screenshot
        shots = REPO / "artifacts" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        shot = shots / "prefect-ui-flow-run.png"
        shot.unlink(missing_ok=True)
        text = _visible_text(_chromium(f"{ui}/runs/flow-run/{run.id}", "--dump-dom", f"--screenshot={shot}"))
        assert run_name == "de-mean" and f"Flow Run: {run_name}" in text, text[:2000]
        # the state badge, followed by the run's start date (not a log line's "Completed()")
        assert re.search(r" Completed \d{4}/\d\d/\d\d ", text), text[:2000]
        assert "Deployment adapt " in text, text[:2000]
        assert shot.read_bytes()[:4] == b"\x89PNG"
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
