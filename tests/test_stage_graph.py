"""One complete stage graph: a WECHSEL run's lineage (manifest, registry) names its
fastText and align stages too, so ``cache clean`` keeps them for registered models."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import config
from transfer.engine.cache import StageCache, StageOutput
from transfer.engine.stages import StageSpec
from transfer.pipeline import run_adaptation
from transfer.planning.walk import walk_stages
from transfer.publish.cache_clean import clean_cache
from transfer.publish.manifest import MANIFEST_FILE, read_manifest
from transfer.publish.registry_store import Registry

VECTOR_LABELS = {"fasttext.source", "fasttext.target", "align"}


def _wechsel_config(tmp_path: Path, source: Path, **overrides):
    return config(tmp_path, source, source, target_files=[], target_bible=["e"], source_train_bible=["k"],
                   vector_max_verses=400, vector_dim=8, vector_epochs=1, dictionary="ding",
                   strategy="wechsel", train_steps=0, eval_texts=4, **overrides)


def test_walk_visits_the_vector_stages(tmp_path: Path, tiny_source: Path) -> None:
    cfg = _wechsel_config(tmp_path, tiny_source)
    cache = StageCache(cfg.cache_dir)

    def plan(spec: StageSpec, label: str) -> StageOutput:  # keys only, nothing built
        return StageOutput(spec.stage, spec.key, cache.path(spec.stage, spec.key))

    graph = walk_stages(cfg, plan)
    assert list(graph.stages)[:6] == ["corpus", "source", "tokenizer", "fasttext.source",
                                      "fasttext.target", "align"]
    lineage = graph.lineage()
    assert VECTOR_LABELS <= set(lineage)
    assert lineage["align"] == f"align:{graph.stages['align'].key}"
    assert lineage["final"] == lineage["init"]  # no train stage: the model is the init's


def test_wechsel_lineage_and_cache_clean_keep_the_vector_stages(tmp_path: Path, tiny_source: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}"
    (tmp_path / "registry").mkdir()
    cfg = _wechsel_config(tmp_path, tiny_source, tracking_uri=uri)
    result = run_adaptation(cfg)

    manifest = read_manifest(Path(result.model_dir) / MANIFEST_FILE)
    assert VECTOR_LABELS <= set(manifest.stage_keys)
    assert manifest.stage_keys["fasttext.source"].startswith("fasttext:")
    assert manifest.stage_keys["align"].startswith("align:")
    assert (result.registration.name, result.registration.version) == (f"vocab-transfer-{cfg.target_language}", 1)
    version = Registry(uri).resolve(f"{result.registration.name}:{result.registration.version}")
    assert {k: version.stage_keys[k] for k in VECTOR_LABELS} == {k: manifest.stage_keys[k] for k in VECTOR_LABELS}

    # a vector folder no registered model names: the clean must remove it, not everything
    stray = Path(cfg.cache_dir) / "fasttext" / "0123456789abcdef01234567"
    stray.mkdir()
    (stray / ".complete").write_text("old")
    plan = clean_cache(Path(cfg.cache_dir), tracking_uri=uri, min_age_s=0, dry_run=True)
    kept = {(e.stage, e.key) for e in plan.keep}
    removed = {(e.stage, e.key) for e in plan.remove}
    for label in VECTOR_LABELS:
        stage, _, key = manifest.stage_keys[label].partition(":")
        assert (Path(cfg.cache_dir) / stage / key / ".complete").is_file(), label
        assert (stage, key) in kept and (stage, key) not in removed, label
    assert removed == {("fasttext", stray.name)}


def test_a_run_without_vectors_names_none(tmp_path: Path, tiny_source: Path) -> None:
    cfg = config(tmp_path, tiny_source, tiny_source, target_files=[], target_bible=["e"], strategy="mean")
    cache = StageCache(cfg.cache_dir)
    graph = walk_stages(cfg, lambda spec, label: StageOutput(spec.stage, spec.key, cache.path(spec.stage, spec.key)))
    assert not VECTOR_LABELS & set(graph.lineage())
    assert graph.final is graph.stages["train"] and graph.lineage()["final"].startswith("train:")
