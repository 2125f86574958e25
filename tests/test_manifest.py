"""Run manifests: written with every run, and `adapt --config <manifest>` reproduces it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import config
from transfer.engine.code_version import code_version
from transfer.publish.manifest import (
    MANIFEST_FILE,
    ConfigFileError,
    build_manifest,
    collect_environment,
    environment_differences,
    load_config_file,
    read_manifest,
    write_manifest,
)
from transfer.settings.config import AdaptConfig


def test_manifest_round_trips_and_reproduces_the_run(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from flows.cli import app
    from transfer.pipeline import run_adaptation

    cfg = config(tmp_path, tiny_source, tiny_corpus, register_model=False, strategy_params={})
    first = run_adaptation(cfg)
    path = Path(first.model_dir) / MANIFEST_FILE
    manifest = read_manifest(path)
    assert AdaptConfig(**manifest.config) == cfg
    assert AdaptConfig(**load_config_file(path)) == cfg
    assert manifest.environment.code_version == first.code_version
    assert manifest.stage_keys["final"] == f"train:{first.stage_keys['final']}"
    assert set(manifest.stage_keys) >= {"corpus", "source", "tokenizer", "init", "final",
                                         "evaluate.adapted_step0", "evaluate.adapted_trained"}
    assert environment_differences(manifest) == []

    # the CLI reads the manifest as its config and lands on the very same stages
    runner = CliRunner()
    result = runner.invoke(app, ["adapt", "--config", str(path), "--no-prefect"])
    assert result.exit_code == 0, result.output
    again = json.loads((Path(first.model_dir) / "adaptation.json").read_text())
    assert again["stage_keys"] == first.stage_keys
    assert all(again["stages_cached"].values()), again["stages_cached"]
    assert again["scores"] == first.scores
    assert AdaptConfig(**read_manifest(path).config) == cfg  # the re-run wrote an equal manifest


def test_environment_lists_packages_device_and_code() -> None:
    env = collect_environment("cpu")
    assert env.device.requested == "cpu" and env.device.resolved == "cpu"
    assert env.code_version == code_version()
    for package in ("torch", "transformers", "tokenizers", "mlflow", "pydantic"):
        assert env.packages.get(package), package
    assert env.python.count(".") == 2 and env.cpu_count and env.memory_gb


def test_differences_are_reported(tmp_path: Path) -> None:
    manifest = build_manifest(AdaptConfig(device="cpu"))
    manifest.environment.code_version = "0.0.1+old"
    manifest.environment.packages["torch"] = "1.0.0"
    path = write_manifest(manifest, tmp_path)
    notes: list[str] = []
    values = load_config_file(path, warn=notes.append)
    assert values == AdaptConfig(device="cpu").model_dump(mode="json")
    assert any("code version" in n and "0.0.1+old" in n for n in notes), notes
    assert any(n.startswith("torch ") and "1.0.0" in n for n in notes), notes


def test_plain_config_files(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"strategy": "random", "vocab_size": 100}')
    assert load_config_file(tmp_path / "c.json") == {"strategy": "random", "vocab_size": 100}
    (tmp_path / "c.yaml").write_text("strategy: random\ntarget_bible: [e]\n")
    assert load_config_file(tmp_path / "c.yaml") == {"strategy": "random", "target_bible": ["e"]}
    (tmp_path / "bad.json").write_text("{strategy: ")
    with pytest.raises(ConfigFileError, match="bad.json: not valid JSON"):
        load_config_file(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigFileError, match="bad.yaml: not valid YAML"):
        load_config_file(tmp_path / "bad.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigFileError, match="expected a mapping"):
        load_config_file(tmp_path / "list.json")
    with pytest.raises(ConfigFileError, match="missing.json"):
        load_config_file(tmp_path / "missing.json")
    broken = {"kind": "vocab-transfer/run-manifest", "config": {}}
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ConfigFileError, match="not a readable run manifest"):
        load_config_file(tmp_path / "broken.json")
