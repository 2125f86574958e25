"""`vocab-transfer models list|show` and `cache clean` against a real registry."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import make_record, model_folder, registry_uri
from transfer.publish.cache_clean import apply_gc, plan_gc
from transfer.publish.registry_store import Registry

runner = CliRunner()


@pytest.fixture()
def registered(tmp_path: Path, tmp_path_factory, tiny_source: Path) -> str:
    uri = registry_uri(tmp_path, tmp_path_factory)
    registry = Registry(uri)
    registry.register(make_record(model_folder(tmp_path, tiny_source, "mean"), strategy="mean", final_bpb=3.0))
    registry.register(make_record(model_folder(tmp_path, tiny_source, "overlap"), strategy="overlap", final_bpb=2.5))
    return uri


def _invoke(*args: str):
    from flows.cli import app

    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_models_list_and_show(registered: str) -> None:
    table = _invoke("models", "list", "--tracking-uri", registered)
    assert table.exit_code == 0, table.output
    assert "vocab-transfer-de" in table.output and "overlap" in table.output and "best" in table.output
    assert "2.5000" in table.output and "3.5000" in table.output

    listed = json.loads(_invoke("models", "list", "--json", "--tracking-uri", registered).output)
    assert [(v["version"], v["aliases"], v["metrics"]["bpb.adapted_trained"]) for v in listed] == [
        (1, [], 3.0), (2, ["best"], 2.5)]
    assert _invoke("models", "list", "--language", "fr", "--tracking-uri", registered).output.strip() == \
        "no registered models"

    shown = _invoke("models", "show", "vocab-transfer-de@best", "--tracking-uri", registered)
    assert shown.exit_code == 0, shown.output
    assert "version 2" in shown.output and "strategy" in shown.output and "overlap" in shown.output
    assert "bpb.adapted_trained" in shown.output
    first = json.loads(_invoke("models", "show", "vocab-transfer-de:1", "--json", "--tracking-uri", registered).output)
    assert first["version"] == 1 and first["tags"]["vt.strategy"] == "mean"

    missing = _invoke("models", "show", "vocab-transfer-de:9", "--tracking-uri", registered)
    assert missing.exit_code == 2 and "error" in missing.output


def _stage_folder(root: Path, stage: str, key: str, age_s: float) -> Path:
    folder = root / stage / key
    folder.mkdir(parents=True)
    (folder / ".complete").write_text("v")
    (folder / "data.bin").write_bytes(b"x" * 1000)
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_cache_clean_keeps_what_registered_models_need(registered: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    needed = _stage_folder(cache, "train", "overlapfinal", age_s=10 * 3600)  # named by version 2
    needed_eval = _stage_folder(cache, "evaluate", "meaneval", age_s=10 * 3600)  # version 1
    stale = _stage_folder(cache, "train", "oldrun", age_s=10 * 3600)
    young = _stage_folder(cache, "init", "running", age_s=60)  # a run in progress
    writing = cache / "init" / ".abc.tmp-123"  # a writer's temporary folder
    writing.mkdir()

    dry = _invoke("cache", "clean", "--cache-dir", str(cache), "--tracking-uri", registered)
    assert dry.exit_code == 0, dry.output
    assert "would remove train/oldrun" in dry.output and stale.exists()

    done = _invoke("cache", "clean", "--cache-dir", str(cache), "--tracking-uri", registered, "--yes")
    assert done.exit_code == 0, done.output
    assert not stale.exists()
    assert needed.exists() and needed_eval.exists() and young.exists() and writing.exists()
    assert not list((cache / "train").glob(".trash-*"))

    _invoke("cache", "clean", "--cache-dir", str(cache), "--tracking-uri", registered, "--yes",
            "--min-age-hours", "0")
    assert not young.exists() and needed.exists() and needed_eval.exists()


def test_cache_clean_refuses_an_empty_registry(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = _stage_folder(cache, "init", "k", age_s=10 * 3600)
    empty = f"sqlite:///{tmp_path / 'nothing' / 'mlflow.db'}"
    refused = _invoke("cache", "clean", "--cache-dir", str(cache), "--tracking-uri", empty, "--yes")
    assert refused.exit_code == 2 and "no registered models" in refused.output
    assert old.exists()


def test_gc_plan_directly(tmp_path: Path) -> None:
    keep = _stage_folder(tmp_path, "source", "k1", age_s=7200)
    drop = _stage_folder(tmp_path, "source", "k2", age_s=7200)
    plan = plan_gc(tmp_path, {("source", "k1")}, min_age_s=3600)
    assert [e.path for e in plan.keep] == [keep] and [e.path for e in plan.remove] == [drop]
    assert plan.bytes_freed >= 1000
    assert apply_gc(plan) == 1 and keep.exists() and not drop.exists()
    assert apply_gc(plan) == 0  # already gone: nothing to do, no error
    assert plan_gc(tmp_path / "missing", set()).remove == []
