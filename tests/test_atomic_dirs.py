"""Every folder written whole goes through ``transfer.engine.cache.replacing_directory``: it gets
the mode a plain ``mkdir`` gives (not ``mkdtemp``'s 0700), replaces an old copy in one
rename, and a failure leaves the old copy and no temporary folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from transfer.engine.cache import StageCache, StageOutput, replacing_directory
from transfer.publish.export import export_model
from transfer.train.checkpoint import save_checkpoint
from transfer.vectors.compact_vectors import save_vectors
from transfer.vectors.static_vectors import StaticVectors


@pytest.fixture
def plain_mode(tmp_path: Path) -> Iterator[int]:
    """A umask that lets others read (so 0700 stands out); yields what ``mkdir`` gives."""
    old = os.umask(0o022)
    try:
        probe = tmp_path / "probe"
        probe.mkdir()
        yield stat.S_IMODE(probe.stat().st_mode)
        probe.rmdir()
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _only(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_helper_gives_plain_mode_and_replaces_the_old_copy(tmp_path: Path, plain_mode: int) -> None:
    final = tmp_path / "out" / "folder"
    final.mkdir(parents=True)
    (final / "old.txt").write_text("old")
    with replacing_directory(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        (tmp / "new.txt").write_text("new")
    assert _only(final) == ["new.txt"] and _mode(final) == plain_mode == 0o755
    assert _only(final.parent) == ["folder"]  # no temporary or old copy left


def test_helper_failure_keeps_the_old_copy_and_no_temp(tmp_path: Path) -> None:
    final = tmp_path / "folder"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), replacing_directory(final) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("crash in the middle")
    assert _only(final) == ["old.txt"] and (final / "old.txt").read_text() == "old"
    assert _only(tmp_path) == ["folder"]


def test_keep_existing_keeps_a_concurrent_writers_copy(tmp_path: Path) -> None:
    final = tmp_path / "stage" / "key"
    with replacing_directory(final, keep_existing=True) as tmp:
        (tmp / "ours.txt").write_text("ours")
        final.mkdir()  # another process finished the same stage meanwhile
        (final / "theirs.txt").write_text("theirs")
    assert _only(final) == ["theirs.txt"] and _only(final.parent) == ["key"]


def test_cache_stage_folder_has_plain_mode(tmp_path: Path, plain_mode: int) -> None:
    out, cached = StageCache(tmp_path / "cache").run("demo", "k1", lambda d: (d / "x").write_text("1"))
    assert not cached and _mode(out.path) == plain_mode


def test_saved_vectors_have_plain_mode(tmp_path: Path, plain_mode: int) -> None:
    vectors = StaticVectors(words=["a", "b"], matrix=np.eye(2, dtype=np.float32))
    folder = save_vectors(vectors, tmp_path / "vectors")
    assert _mode(folder) == plain_mode
    save_vectors(vectors, folder)  # again, over the old copy
    assert _mode(folder) == plain_mode and _only(tmp_path) == ["probe", "vectors"]


def test_checkpoint_folder_has_plain_mode(tmp_path: Path, plain_mode: int) -> None:
    model = torch.nn.Linear(2, 2)
    folder = save_checkpoint(tmp_path / "ckpt", 1, model=model, optimizer=None, state={})
    assert _mode(folder) == plain_mode and (folder / "model.safetensors").is_file()


def test_export_has_plain_mode_and_a_failed_export_keeps_the_old(tmp_path: Path, plain_mode: int) -> None:
    stage = tmp_path / "cache" / "train" / "k"
    (stage / "model").mkdir(parents=True)
    (stage / "model" / "config.json").write_text("{}")
    destination = tmp_path / "models" / "m"
    export_model(StageOutput("train", "k", stage), destination)
    assert _mode(destination) == plain_mode and _only(destination) == ["config.json"]

    with pytest.raises(FileNotFoundError):  # a stage without its model folder
        export_model(StageOutput("train", "gone", tmp_path / "cache" / "train" / "gone"), destination)
    assert _only(destination) == ["config.json"] and _only(destination.parent) == ["m"]


def test_atomic_write_gives_a_plain_files_mode(tmp_path: Path, plain_mode: int) -> None:
    """Files written whole (curves, results, resume state) get what ``open`` gives under the
    umask, not mkstemp's 0600, and replace the old file without a temporary left over."""
    from transfer.engine.cache import atomic_write

    probe = tmp_path / "probe.txt"  # (the fixture holds a folder "probe" meanwhile)
    probe.write_text("x")
    target = tmp_path / "curve.csv"
    target.write_text("old")
    atomic_write(target, "new")
    assert target.read_text() == "new" and _mode(target) == _mode(probe) == 0o644
    assert _only(tmp_path) == ["curve.csv", "probe", "probe.txt"]


def test_a_saved_model_is_readable_by_whoever_the_umask_allows(tmp_path: Path, plain_mode: int,
                                                              tiny_source: Path) -> None:
    """transformers writes model.safetensors 0600; a model folder written whole gets the
    read bits of its folder (the umask's), so a team sharing the models can load it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transfer.source.loading import save_model

    out = tmp_path / "model"
    save_model(AutoModelForCausalLM.from_pretrained(tiny_source), AutoTokenizer.from_pretrained(tiny_source), out)
    files = [p for p in out.iterdir() if p.is_file()]
    assert "model.safetensors" in {p.name for p in files}
    assert all(_mode(p) & 0o444 == plain_mode & 0o444 for p in files), {p.name: oct(_mode(p)) for p in files}
