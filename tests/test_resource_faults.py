"""Resource faults (issue 16, item 5): a disk that fills up while a stage writes, and a run
whose training would not fit in memory.

The full disk is a real one: a small tmpfs mounted for the test (root only; skipped with
the reason otherwise), nearly filled with a filler file, so the stage's own writes (Python
files, safetensors' Rust writer) hit ENOSPC. The run fails with ``DiskFullError`` naming
the folder, no partial copy or cache entry is left, finished stages stay, and once space is
freed a re-run completes from them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import temp_leftovers, three_step_config
from transfer.engine.cache import DiskFullError, free_bytes
from transfer.errors import MemoryBudgetError
from transfer.pipeline import run_adaptation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full disk) needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up to ``leave`` free bytes with one file."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free_bytes(disk) - leave, 0))
    return filler


def entries(cache: Path, stage: str) -> list[str]:
    folder = cache / stage
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_disk_full_in_the_first_stage(small_disk: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = three_step_config(small_disk, tiny_source, tiny_corpus)
    fill(small_disk, 64 << 10)
    with pytest.raises(DiskFullError, match=r"disk filled up while writing .*/cache/corpus/") as error:
        run_adaptation(cfg)
    assert "No space left on device" in str(error.value)
    cache = Path(cfg.cache_dir)
    assert entries(cache, "corpus") == [] and temp_leftovers(cache) == []


def test_disk_full_in_a_model_stage_then_rerun(small_disk: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = three_step_config(small_disk, tiny_source, tiny_corpus)
    filler: list[Path] = []

    def full_after_corpus(stage: str, status: str) -> None:
        if (stage, status) == ("corpus", "built"):  # the next stage writes model weights
            filler.append(fill(small_disk, 48 << 10))

    with pytest.raises(DiskFullError, match=r"disk filled up while writing .*/cache/source/"):
        run_adaptation(cfg, listener=full_after_corpus)
    cache = Path(cfg.cache_dir)
    (corpus_key,) = entries(cache, "corpus")
    assert (cache / "corpus" / corpus_key / ".complete").exists()
    assert entries(cache, "source") == [] and temp_leftovers(cache) == []

    filler[0].unlink()  # space freed: the re-run reuses the finished stage and completes
    result = run_adaptation(cfg)
    assert result.stages_cached["corpus"] and not result.stages_cached["source"]
    assert temp_leftovers(cache, Path(cfg.output_dir)) == []


def test_training_that_cannot_fit_is_refused_before_the_first_stage(
        tmp_path: Path, tiny_source: Path, tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transfer.settings.memory_budget import (
        source_model_config,
        training_memory_estimate,
    )

    cfg = three_step_config(tmp_path, tiny_source, tiny_corpus)
    estimate = training_memory_estimate(cfg, source_model_config(cfg))
    assert estimate is not None and estimate.total > 100 << 10
    # the trainer's own cap on the memory it may use (as on a shared machine)
    monkeypatch.setenv("VOCAB_TRANSFER_MEMORY_LIMIT", "100KiB")
    with pytest.raises(MemoryBudgetError, match="refused before the first stage") as error:
        run_adaptation(cfg)
    message = str(error.value)
    from transfer.train.memory import human_bytes

    # the estimate and what is free, each said once, in readable units
    assert message.count(human_bytes(estimate.total)) == 1 and message.count("available") == 1
    assert f"only {human_bytes(100 << 10)} is available" in message
    assert "batch_size=" in message
    assert not Path(cfg.cache_dir).exists()  # nothing was built
    # without training there is nothing to estimate: the same limit refuses nothing
    from transfer.settings.memory_budget import check_training_memory

    assert check_training_memory(cfg.model_copy(update={"train_steps": 0})) is None
