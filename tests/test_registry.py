"""The MLflow registry against a real SQLite store: register, re-register, list, aliases,
lineage from a real pipeline run, and two processes registering at the same time."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from tests.helpers import config, make_record, model_folder, registry_uri
from transfer.publish.registry_records import (
    BEST_ALIAS,
    ModelRecord,
    RegistryError,
    parse_reference,
)
from transfer.publish.registry_store import Registry, sqlite_path


def test_parse_reference() -> None:
    assert parse_reference("vt-de") == ("vt-de", None, None)
    assert parse_reference("vt-de:3") == ("vt-de", 3, None)
    assert parse_reference("vt-de:best") == ("vt-de", None, "best")
    assert parse_reference("vt-de@best") == ("vt-de", None, "best")
    for bad in ("vt-de:", ":3", "@best"):
        with pytest.raises(RegistryError, match="model reference"):
            parse_reference(bad)


def test_register_reregister_list_and_best_alias(tmp_path: Path, tmp_path_factory, tiny_source: Path) -> None:
    registry = Registry(registry_uri(tmp_path, tmp_path_factory))
    mean = make_record(model_folder(tmp_path, tiny_source, "mean"), strategy="mean", final_bpb=3.0)

    first = registry.register(mean)
    assert first.created and first.name == "vocab-transfer-de" and first.version == 1
    assert first.aliases == [BEST_ALIAS]
    # the version points at a copy of the model folder in the run's artifacts
    assert first.source.startswith("file://") and "/registry/artifacts/" in first.source
    copied = Path(first.source.removeprefix("file://")) / "config.json"
    assert copied.read_bytes() == (tiny_source / "config.json").read_bytes()

    again = registry.register(mean)
    assert not again.created and again.version == 1 and again.run_id == first.run_id
    assert len(registry.versions()) == 1

    overlap = make_record(model_folder(tmp_path, tiny_source, "overlap"), strategy="overlap", final_bpb=2.5)
    assert registry.register(overlap).version == 2
    # a lower BPB measured on the dev split does not compete for "best" (test BPB only)
    dev = make_record(model_folder(tmp_path, tiny_source, "dev"), strategy="random", final_bpb=1.0, split="dev")
    assert registry.register(dev).version == 3
    worse = make_record(model_folder(tmp_path, tiny_source, "worse"), strategy="random", final_bpb=4.0, salt="x")
    assert registry.register(worse).version == 4

    versions = registry.versions()
    assert [v.version for v in versions] == [1, 2, 3, 4]
    assert {v.version: v.aliases for v in versions} == {1: [], 2: [BEST_ALIAS], 3: [], 4: []}
    assert registry.resolve("vocab-transfer-de@best").version == 2
    assert registry.resolve("vocab-transfer-de:best").tag("strategy") == "overlap"
    assert registry.resolve("vocab-transfer-de:1").tag("strategy") == "mean"
    assert registry.resolve("vocab-transfer-de").version == 4  # latest

    # lineage and metrics come back from the store
    shown = registry.resolve("vocab-transfer-de:2")
    assert shown.tag("source_model") == "tiny" and shown.tag("source_fingerprint") == "abc123"
    assert shown.tag("code_version") == "0.1.0+test"
    assert shown.tags["vt.corpus.file0"] == "deadbeef"
    assert shown.tag("strategy_params") == '{"k": 10}'
    assert shown.stage_keys["final"] == "train:overlapfinal"
    assert shown.metrics["bpb.adapted_trained"] == 2.5 and shown.final_bpb == 2.5
    assert registry.needed_stage_keys() >= {("train", "overlapfinal"), ("evaluate", "meaneval")}

    # another language is another registered model with its own alias
    fr = make_record(model_folder(tmp_path, tiny_source, "fr"), strategy="mean", final_bpb=5.0, language="fr")
    assert registry.register(fr).name == "vocab-transfer-fr"
    assert [v.version for v in registry.versions("fr")] == [1]
    assert registry.resolve("vocab-transfer-fr@best").version == 1
    assert len(registry.versions("de")) == 4


def test_reads_and_errors(tmp_path: Path, tmp_path_factory, tiny_source: Path) -> None:
    empty = Registry(f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    assert empty.versions() == []
    assert not (tmp_path / "none" / "mlflow.db").exists()  # reading creates nothing
    with pytest.raises(RegistryError, match="empty"):
        empty.resolve("vocab-transfer-de")

    registry = Registry(registry_uri(tmp_path, tmp_path_factory))
    with pytest.raises(RegistryError, match="not a saved model folder"):
        registry.register(make_record(tmp_path, strategy="mean", final_bpb=1.0))
    registry.register(make_record(model_folder(tmp_path, tiny_source, "m"), strategy="mean", final_bpb=3.0))
    with pytest.raises(RegistryError, match="no registered model named 'vocab-transfer-xx'"):
        registry.resolve("vocab-transfer-xx")
    with pytest.raises(RegistryError, match="vocab-transfer-de:7"):
        registry.resolve("vocab-transfer-de:7")
    with pytest.raises(RegistryError, match="nope"):
        registry.resolve("vocab-transfer-de@nope")


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = Registry(artifacts_root=tmp_path).tracking_uri
    assert sqlite_path(default) == (tmp_path / "registry" / "mlflow.db").resolve()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////srv/shared.db")
    assert Registry(artifacts_root=tmp_path).tracking_uri == "sqlite:////srv/shared.db"
    assert Registry("http://mlflow:5000").tracking_uri == "http://mlflow:5000"


def _register_in_process(uri: str, records: list[dict], barrier, queue) -> None:
    try:
        registry = Registry(uri)
        barrier.wait(timeout=120)  # both processes start registering at the same moment
        out = [registry.register(ModelRecord(**r)).model_dump() for r in records]
        queue.put(("ok", out))
    except BaseException as error:  # noqa: BLE001 - report any failure to the parent, not die silently
        queue.put(("error", repr(error)))


def test_two_processes_register_at_once(tmp_path: Path, tiny_source: Path) -> None:
    # a brand-new database: the processes also race to create and migrate it
    uri = f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}"
    a = make_record(model_folder(tmp_path, tiny_source, "a"), strategy="mean", final_bpb=3.0)
    b = make_record(model_folder(tmp_path, tiny_source, "b"), strategy="overlap", final_bpb=2.0)
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    jobs = [ctx.Process(target=_register_in_process, args=(uri, order, barrier, queue))
            for order in ([a.model_dump(), b.model_dump()], [b.model_dump(), a.model_dump()])]
    for job in jobs:
        job.start()
    results = [queue.get(timeout=300) for _ in jobs]
    for job in jobs:
        job.join(timeout=60)
    assert all(status == "ok" for status, _ in results), results

    registrations = [r for _, out in results for r in out]
    # each run registered exactly once, and both processes agree on its version
    by_fingerprint = {}
    for reg in registrations:
        by_fingerprint.setdefault(reg["fingerprint"], set()).add(reg["version"])
    assert set(by_fingerprint) == {a.fingerprint, b.fingerprint}
    assert all(len(numbers) == 1 for numbers in by_fingerprint.values()), by_fingerprint
    assert sum(r["created"] for r in registrations) == 2
    versions = Registry(uri).versions()
    assert sorted(v.tag("fingerprint") for v in versions) == sorted([a.fingerprint, b.fingerprint])
    assert Registry(uri).resolve("vocab-transfer-de@best").tag("strategy") == "overlap"


def test_pipeline_registers_its_lineage(tmp_path: Path, tmp_path_factory, tiny_source: Path,
                                        tiny_corpus: Path) -> None:
    from transfer.corpus.stage import corpus_spec
    from transfer.pipeline import run_adaptation

    uri = registry_uri(tmp_path, tmp_path_factory)
    cfg = config(tmp_path, tiny_source, tiny_corpus, tracking_uri=uri)
    first = run_adaptation(cfg)
    reg = first.registration
    assert reg is not None and reg.created and reg.tracking_uri == uri
    version = Registry(uri).resolve(f"{reg.name}:{reg.version}")
    assert version.tags["vt.corpus.file0"] == corpus_spec(cfg).inputs["file0"]
    assert version.tag("code_version") == first.code_version
    assert version.tag("strategy") == "mean" and version.tag("tokenizer.vocab_size") == "350"
    assert version.tag("tokenizer.family") and version.tag("source_fingerprint")
    assert version.stage_keys["final"] == f"train:{first.stage_keys['final']}"
    assert version.stage_keys["evaluate.adapted_trained"].startswith("evaluate:")
    assert version.metrics["bpb.adapted_trained"] == pytest.approx(first.scores["adapted_trained"])
    assert version.metrics["bpb.gain_vs_source"] == pytest.approx(
        first.scores["source_model_on_target"] - first.scores["adapted_trained"])
    # the registered artifacts carry the card and the manifest
    files = Path(version.source.removeprefix("file://"))
    assert (files / "README.md").exists() and (files / "run_manifest.json").exists()
    # every stage a version names exists in the cache
    for value in version.stage_keys.values():
        stage, _, key = value.partition(":")
        assert (Path(cfg.cache_dir) / stage / key / ".complete").exists(), value

    second = run_adaptation(cfg)
    assert second.registration is not None and not second.registration.created
    assert second.registration.version == reg.version
    assert len(Registry(uri).versions()) == 1
