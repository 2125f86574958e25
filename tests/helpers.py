"""Helpers shared by several test modules (not a test module): tiny-run configs, the Prefect
artifacts and languages file of a flow test, the forked pipeline child of the kill/resume
tests, registry fixtures, a hand-made ``AdaptResult`` and the Bible vector stages.

Test modules import helpers from here, never from one another; tiny models and tokenizers
are in ``tests/tiny.py``, the bad-input checks in ``tests/refusals.py``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from transfer.corpus.stage import corpus_spec
from transfer.engine.cache import StageCache, StageOutput
from transfer.engine.stages import StageSpec, execute
from transfer.publish.result import AdaptResult
from transfer.settings.config import AdaptConfig
from transfer.vectors.stage import align_stage_spec, vector_specs

if TYPE_CHECKING:
    from transfer.publish.registry_records import ModelRecord

# --- tiny-run configs


def config(tmp_path: Path, source: Path, corpus: Path, **overrides) -> AdaptConfig:
    """The tiny run: ``source`` adapted to German on ``corpus`` with the ``mean`` strategy,
    two training steps, cache and models under ``tmp_path``; ``overrides`` replace fields."""
    values = {
        "source_model": str(source), "target_language": "de", "target_bible": [],
        "source_bible": [], "target_files": [str(corpus)], "vocab_size": 350, "train_steps": 2,
        # the cheap baseline unless a test names another ('auto': tests/test_strategy_default.py)
        "strategy": "mean",
        "batch_size": 2, "block_size": 16, "eval_texts": 8, "dev_fraction": 0.1,
        "test_fraction": 0.1, "device": "cpu", "cache_dir": tmp_path / "cache",
        "output_dir": tmp_path / "models",
        # registration is tested where a test names its registry (migrating a new MLflow
        # database costs ~4 s a run); every other tiny run skips it
        "register_model": "tracking_uri" in overrides,
    }
    values.update(overrides)
    return AdaptConfig(**values)


def flow_config(tmp_path: Path, source: Path, corpus: Path, **overrides) -> AdaptConfig:
    """``config`` for the flow tests: no registration, even with a ``tracking_uri``, unless
    the test sets ``register_model``."""
    overrides.setdefault("register_model", False)  # the registry has its own tests
    return config(tmp_path, source, corpus, **overrides)


def three_step_config(tmp: Path, source: Path, corpus: Path, **overrides: object) -> AdaptConfig:
    """The tiny run of the kill/resume tests: three training steps (room for a checkpoint
    before the last), no curve texts, no registration."""
    values: dict[str, object] = {
        "source_model": str(source), "target_language": "de", "target_bible": [],
        "source_bible": [], "target_files": [str(corpus)], "vocab_size": 350, "train_steps": 3,
        "batch_size": 2, "block_size": 16, "eval_texts": 8, "dev_fraction": 0.1,
        "test_fraction": 0.1, "device": "cpu", "curve_texts": 0, "cache_dir": tmp / "cache", "strategy": "mean",
        "output_dir": tmp / "models", "register_model": False,
    }
    values.update(overrides)
    return AdaptConfig(**values)


# --- Prefect flows


def flow_artifacts(flow_run_id) -> list:
    """The Prefect artifacts of one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def languages_file(tmp_path: Path, corpus: Path, source: Path) -> Path:
    """A languages file of two tiny runs: ``de`` on ``corpus`` and ``xx``, whose corpus
    file is missing (it fails)."""
    data = {
        "defaults": {"source_model": str(source), "source_bible": [], "batch_size": 2,
                     "block_size": 16, "eval_texts": 8, "dev_fraction": 0.1, "test_fraction": 0.1,
                     "device": "cpu", "cache_dir": str(tmp_path / "cache"),
                     "output_dir": str(tmp_path / "models"),
                     "register_model": False},
        "languages": {
            "de": {"name": "German", "corpus": {"files": [str(corpus)]}, "strategy": "mean",
                   "vocab_size": 350, "train_steps": 1, "cron": "0 1 * * 6"},
            "xx": {"name": "Broken", "corpus": {"files": [str(tmp_path / "missing.txt")]},
                   "strategy": "mean", "vocab_size": 350, "train_steps": 1, "cron": "0 2 * * 6"},
        },
    }
    path = tmp_path / "languages.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- the pipeline in a child process (kill/resume, concurrency)


def weights_sha256(model_dir: str | Path) -> str:
    """The sha256 of the exported ``model.safetensors`` in ``model_dir``."""
    return hashlib.sha256((Path(model_dir) / "model.safetensors").read_bytes()).hexdigest()


class Child:
    """The pipeline in a forked child process (torch is already imported: starting one costs
    milliseconds, not the seconds a fresh interpreter takes)."""

    def __init__(self, cfg: AdaptConfig, work: Path, name: str, pause: str | None = None,
                 step: int = 2) -> None:
        from tests.crash_child import run_child

        self.name, self.work = name, work
        self.events, self.signal_file = work / f"{name}.events", work / f"{name}.paused"
        config_file = work / f"{name}.json"
        config_file.write_text(cfg.model_dump_json())
        self.process = multiprocessing.get_context("fork").Process(
            target=run_child, args=(config_file, self.events, pause, self.signal_file, step))
        self.process.start()

    def wait_paused(self) -> dict:
        deadline = time.monotonic() + 120
        while not self.signal_file.exists():
            if not self.process.is_alive():
                pytest.fail(f"child {self.name} ended ({self.process.exitcode}) before pausing: "
                            f"{events_of(self.events)}")
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"child {self.name} never paused")
            time.sleep(0.02)
        time.sleep(0.05)  # the payload is written in one call; let it land
        return json.loads(self.signal_file.read_text())

    def stop(self, signum: int) -> int | None:
        os.kill(self.process.pid, signum)
        self.process.join(timeout=60)
        return self.process.exitcode

    def finish(self) -> int | None:
        self.process.join(timeout=300)
        return self.process.exitcode


def events_of(path: Path) -> list[tuple[str, str]]:
    """The ``(label, status)`` stage events a child wrote to ``path`` (none if it wrote none)."""
    if not path.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()]  # type: ignore[misc]


def temp_leftovers(*roots: Path) -> list[Path]:
    """Half-written things: temporary or set-aside copies, or a stage folder without its
    completion marker (the lock files under ``.locks`` are empty and expected)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if ".tmp-" in path.name or ".old-" in path.name:
                found.append(path)
        if root.name == "cache":
            for stage_dir in (p for p in root.iterdir() if p.is_dir() and p.name[0] not in "._"):
                found += [p for p in stage_dir.iterdir() if not (p / ".complete").exists()]
    return found


# --- the MLflow registry


def registry_uri(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh registry database for one test. MLflow migrates a new SQLite database in
    ~5 s; the empty migrated schema is made once per session and copied."""
    from transfer.publish.registry_store import Registry

    template = tmp_path_factory.getbasetemp() / "mlflow-template" / "mlflow.db"
    if not template.exists():
        Registry(f"sqlite:///{template}").initialize()
    db = tmp_path / "registry" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"


def model_folder(tmp_path: Path, tiny_source: Path, name: str) -> Path:
    """A copy of the tiny source model at ``tmp_path/models/name``."""
    folder = tmp_path / "models" / name
    shutil.copytree(tiny_source, folder)
    return folder


def make_record(model_dir: Path, *, strategy: str, final_bpb: float, split: str = "test",
                language: str = "de", salt: str = "") -> ModelRecord:
    """A record as the pipeline builds it; stage keys are distinct per strategy/salt."""
    from transfer.publish.registry_records import ModelRecord

    keys = {label: f"{stage}:{strategy}{salt}{label}" for label, stage in
            (("corpus", "corpus"), ("tokenizer", "tokenizer"), ("init", "init"), ("final", "train"))}
    keys["evaluate.adapted_trained"] = f"evaluate:{strategy}{salt}eval"
    return ModelRecord(
        model_name=f"tiny-{language}-{strategy}", target_language=language, source_model="tiny",
        source_fingerprint="abc123", strategy=strategy, strategy_params={"k": 10},
        tokenizer_family="byte_level_bpe", tokenizer_vocab_size=350,
        corpus_hashes={"file0": "deadbeef"}, code_version="0.1.0+test", stage_keys=keys,
        eval_split=split, eval_texts=8,
        metrics={"bpb.source_model_on_target": 7.0, "bpb.adapted_step0": final_bpb + 0.5,
                 "bpb.adapted_trained": final_bpb, "fertility.target.tokens_per_word": 1.5},
        config={"strategy": strategy, "target_language": language},
        model_dir=str(model_dir),
    )


# --- a finished run's result


def adapt_result(model_dir: Path, **fields) -> AdaptResult:
    """A hand-made ``AdaptResult`` of a SmolLM2-to-German WECHSEL run (nothing is run);
    ``fields`` replace its config's fields."""
    values = {"source_model": "smollm2", "target_language": "de", "target_bible": ["e", "s"],
              "source_bible": ["k"], "strategy": "wechsel", "vocab_size": 32000, "train_steps": 20}
    values.update(fields)
    return AdaptResult(
        config=AdaptConfig(**values),
        code_version="0.1.0+abcdef",
        model_dir=str(model_dir),
        stage_keys={"corpus": "c1", "source": "s1", "tokenizer": "t1", "init": "i1", "final": "f1"},
        stages_cached={},
        scores={"source_model_on_source_language": 0.95, "source_model_on_target": 2.69,
             "adapted_step0": 3.7421, "adapted_trained": 2.58126},
        fertility={"source": {"tokens_per_word": 2.17, "bytes_per_token": 2.9},
                   "target": {"tokens_per_word": 1.21, "bytes_per_token": 5.2}},
        init_report={"counts": {"special": 3, "byte": 256, "computed": 31000, "fallback": 741}},
        train_log={"losses": [5.0, 4.0], "steps": 20},
        seconds=12.0,
    )


# --- parallel data and the vector stages

#: Config fields of a Bible-only run with induced dictionaries and tiny fastText vectors.
BIBLE = {"target_language": "gsw", "target_bible": ["e"], "source_bible": ["k"], "source_train_bible": ["k", "4"],
         "dictionary": "induced", "vector_dim": 8, "vector_epochs": 1}


def write_tsv(folder: Path, pairs: list[tuple[str, str]]) -> str:
    """``pairs`` as a tab-separated parallel file ``folder/bible.tsv``; returns its path."""
    path = folder / "bible.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return str(path)


def _corpus(cfg: AdaptConfig) -> StageOutput:
    return execute(corpus_spec(cfg), StageCache(cfg.cache_dir))[0]


def _unbuilt(spec: StageSpec, cache_dir: Path) -> StageOutput:
    """A stage's output as a downstream spec names it (key and folder), without building it."""
    return StageOutput(spec.stage, spec.key, StageCache(cache_dir).path(spec.stage, spec.key))


def vector_stages(cfg: AdaptConfig):
    """(corpus, source fastText spec, target fastText spec, align spec) of ``cfg``; the
    corpus stage is built, the others only specified."""
    corpus = _corpus(cfg)
    source, target = vector_specs(cfg, corpus)
    align = align_stage_spec(cfg, _unbuilt(source, cfg.cache_dir), _unbuilt(target, cfg.cache_dir), corpus)
    return corpus, source, target, align
