"""Deployments: the single-pair form, one scheduled deployment per configured language,
the batch; and a local Prefect server to serve them (SQLite, offline, analytics off).

``vocab-transfer serve`` = ``start_local_server`` (unless a server is configured) +
``build_deployments`` + ``prefect.serve``. Each language's deployment runs the single-pair
flow with that language's parameters on that language's cron; the same parameters are
what a user gets by starting ``adapt-language/adapt-<code>`` from the UI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.adapt_flow import adapt_flow
from flows.batch_flow import batch_flow
from flows.compare_flow import compare_flow
from flows.languages import DEFAULT_LANGUAGES_FILE, LanguagesFile, load_languages
from transfer.errors import VocabTransferError

SINGLE_PAIR_DEPLOYMENT = "adapt"
BATCH_DEPLOYMENT = "batch"
COMPARE_DEPLOYMENT = "compare"
TAGS = ["vocab-transfer"]
#: Environment of every Prefect process we start: offline, no analytics.
OFFLINE_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class ServerError(VocabTransferError):
    """The local Prefect server did not start (port taken, bad home folder)."""


def language_deployment_name(code: str) -> str:
    return f"{SINGLE_PAIR_DEPLOYMENT}-{code}"


def build_deployments(languages: LanguagesFile, languages_file: Path | str = DEFAULT_LANGUAGES_FILE,
                      *, paused_schedules: bool = False) -> list[RunnerDeployment]:
    """The single-pair deployment (typed form, no schedule), one per language with its
    parameters and cron, the batch over the languages file, and the strategy comparison."""
    deployments = [
        adapt_flow.to_deployment(
            name=SINGLE_PAIR_DEPLOYMENT, tags=TAGS,
            description="Adapt a source model to one target language (fill in the form).",
        )
    ]
    for code, entry in languages.languages.items():
        params = entry.to_parameters(code, languages.defaults)
        schedules = [Cron(entry.cron, timezone=entry.timezone, active=not paused_schedules)] if entry.cron else None
        deployments.append(
            adapt_flow.to_deployment(
                name=language_deployment_name(code),
                parameters={"config": params.model_dump(mode="json")},
                schedules=schedules,
                tags=[*TAGS, f"language-{code}"],
                description=(f"{entry.name} ({code}): {params.strategy}, vocabulary "
                             f"{params.vocab_size}, {params.train_steps} steps; dictionary "
                             f"{entry.dictionary.kind if entry.dictionary else 'none'}; cron {entry.cron}"),
            )
        )
    deployments.append(
        batch_flow.to_deployment(
            name=BATCH_DEPLOYMENT, tags=TAGS,
            parameters={"languages_file": str(Path(languages_file).resolve())},
            description="Every language of the languages file, then a summary table.",
        )
    )
    deployments.append(
        compare_flow.to_deployment(
            name=COMPARE_DEPLOYMENT, tags=TAGS,
            description="Several strategies on one language pair: one table and one curve plot.",
        )
    )
    return deployments


@dataclass
class LocalServer:
    """A ``prefect server start`` subprocess on 127.0.0.1 (API and UI on one port)."""

    process: subprocess.Popen
    api_url: str
    ui_url: str
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_local_server(port: int = 4200, *, home: Path | None = None, host: str = "127.0.0.1",
                       timeout: float = 120.0) -> LocalServer:
    """Start ``prefect server start`` (SQLite under ``home``, default ~/.prefect) and wait
    until its API answers. The caller stops it (``LocalServer.stop``)."""
    api_url = f"http://{host}:{port}/api"
    if _healthy(api_url):
        raise ServerError(f"port {port} on {host} already serves a Prefect API; use --no-server "
                          f"with PREFECT_API_URL={api_url}, or another --port")
    env = {**os.environ, **OFFLINE_ENV, "PREFECT_UI_ENABLED": "true",
           "PREFECT_SERVER_API_HOST": host, "PREFECT_SERVER_API_PORT": str(port)}
    env.pop("PREFECT_API_URL", None)  # the server must not think it is a client of another one
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        env["PREFECT_HOME"] = str(home)
    log_dir = home or Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = LocalServer(process, api_url, f"http://{host}:{port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"prefect server exited with code {process.returncode}; see {log_path}")
        if _healthy(api_url):
            return server
        time.sleep(0.5)
    server.stop()
    raise ServerError(f"prefect server on {host}:{port} did not answer within {timeout:.0f} s; see {log_path}")


def serve_languages(languages_file: Path | str = DEFAULT_LANGUAGES_FILE, *,
                    paused_schedules: bool = False, limit: int | None = None) -> None:
    """Serve the deployments against the configured API (blocks until interrupted)."""
    from prefect import serve

    languages = load_languages(languages_file)
    serve(*build_deployments(languages, languages_file, paused_schedules=paused_schedules), limit=limit)
