"""The stage cache: deterministic keys, atomic folders, reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer.engine.cache import StageCache, stage_key
from transfer.engine.code_version import code_version


def test_key_is_deterministic_and_sensitive() -> None:
    base = stage_key("tokenizer", {"vocab_size": 100, "a": [1, 2]}, {"corpus": "corpus:abc"})
    assert base == stage_key("tokenizer", {"a": [1, 2], "vocab_size": 100}, {"corpus": "corpus:abc"})
    assert base != stage_key("tokenizer", {"vocab_size": 101, "a": [1, 2]}, {"corpus": "corpus:abc"})
    assert base != stage_key("tokenizer", {"vocab_size": 100, "a": [1, 2]}, {"corpus": "corpus:abd"})
    assert base != stage_key("init", {"vocab_size": 100, "a": [1, 2]}, {"corpus": "corpus:abc"})


def test_code_version_names_package_and_source_hash() -> None:
    version = code_version()
    assert version.startswith("0.") and "+" in version and len(version.split("+")[1]) == 12


def test_run_builds_once_then_reuses(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "value.txt").write_text("42")

    first, cached_first = cache.run("demo", "k1", build)
    second, cached_second = cache.run("demo", "k1", build)
    assert (cached_first, cached_second) == (False, True)
    assert len(calls) == 1
    assert first.path == second.path == tmp_path / "demo" / "k1"
    assert (second.path / "value.txt").read_text() == "42"


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)

    def build(out: Path) -> None:
        (out / "half.txt").write_text("half")
        raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        cache.run("demo", "k2", build)
    assert not cache.is_complete("demo", "k2")
    assert list((tmp_path / "demo").iterdir()) == []
