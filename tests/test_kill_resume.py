"""Kill anywhere and resume (issue 16, item 2).

For each stage in turn a child process (``tests/crash_child.py``) runs the pipeline and is
stopped inside that stage with SIGKILL, at the worst moment: the stage's real builder has
written its whole temporary folder, which is not yet renamed into the cache (the train
stage: mid-training, after a checkpoint). The next child resumes: the stages before are
cache hits, the killed one is built again and its leftover temporary folder is gone. The
last run ends with the same weights (sha256 of the exported ``model.safetensors``) as an
uninterrupted run, registers one version, and a re-run adds none; nothing half-written is
left under the cache or the models folder. SIGINT (Ctrl-C) during training leaves a state
that a re-run completes, resuming from the checkpoint.

The children (forked: torch is imported once) share one cache folder, one after the other,
so the whole module costs little more than two tiny runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.helpers import (
    Child,
    events_of,
    registry_uri,
    temp_leftovers,
    three_step_config,
    weights_sha256,
)
from transfer.pipeline import run_adaptation
from transfer.settings.config import AdaptConfig

# the stages of the tiny run in the order the pipeline walks them
KILL_POINTS = ("corpus", "source", "tokenizer", "init", "train", "evaluate")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def statuses(events: list[tuple[str, str]], stage: str) -> list[str]:
    return [status for label, status in events if label == stage and status != "running"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_source: Path, tiny_corpus: Path,
              one_torch_thread: None):
    """One uninterrupted run, shared by the module: (config maker, its result, weights sha)."""
    tmp = tmp_path_factory.mktemp("reference")
    result = run_adaptation(three_step_config(tmp, tiny_source, tiny_corpus))
    return result, weights_sha256(result.model_dir)


def test_sigkill_in_each_stage_then_resume(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                           tiny_source: Path, tiny_corpus: Path, reference) -> None:

    ref_result, ref_sha = reference
    registry = registry_uri(tmp_path, tmp_path_factory)  # a copy of a migrated empty store
    cfg = three_step_config(tmp_path, tiny_source, tiny_corpus, checkpoint_every=1)
    cache = Path(cfg.cache_dir)
    killed_tmp: Path | None = None
    for index, stage in enumerate(KILL_POINTS):
        child = Child(cfg, tmp_path, f"kill-{stage}", stage)
        paused = child.wait_paused()
        assert child.stop(signal.SIGKILL) == -signal.SIGKILL
        seen = events_of(child.events)
        # the stages before were finished by the children killed before: never rebuilt
        for earlier in KILL_POINTS[:index]:
            assert statuses(seen, earlier)[:1] == ["cached" if earlier != KILL_POINTS[index - 1]
                                                   else "built"], (stage, earlier, seen)
        for earlier in KILL_POINTS[:index - 1]:
            assert statuses(seen, earlier) == ["cached"] * len(statuses(seen, earlier)), (earlier, seen)
        if killed_tmp is not None:
            assert not killed_tmp.exists(), f"{killed_tmp} (left by the killed writer) was not removed"
        if stage == "train":
            checkpoints = cache / "_checkpoints" / "train"
            assert list(checkpoints.rglob("latest.json")), "no checkpoint before the kill"
            # the stage's temporary folder, half-trained; no entry
            (killed_tmp,) = [p for p in (cache / "train").iterdir() if ".tmp-" in p.name]
            assert not [p for p in (cache / "train").iterdir() if not p.name.startswith(".")]
        else:
            # the killed stage left a whole folder that is not a cache entry
            killed_tmp = Path(paused["tmp"])
            assert killed_tmp.is_dir() and any(killed_tmp.iterdir())
            assert not (cache / stage / paused["key"]).exists()

    final = run_adaptation(cfg.model_copy(update={"register_model": True, "tracking_uri": registry}))
    assert final.stages_cached["train"] and not final.stages_cached["evaluate.adapted_trained"]
    assert killed_tmp is not None and not killed_tmp.exists()
    train_log = json.loads((cache / "train" / final.stage_keys["final"] / "train_log.json").read_text())
    assert train_log["resumed_from"] == 1  # the killed training went on from its checkpoint
    assert final.stage_keys == ref_result.stage_keys
    assert weights_sha256(final.model_dir) == ref_sha
    assert final.scores == ref_result.scores
    assert temp_leftovers(cache, Path(cfg.output_dir)) == []

    again = run_adaptation(cfg.model_copy(update={"register_model": True, "tracking_uri": registry}))
    assert all(again.stages_cached.values())
    from transfer.publish.registry_store import Registry

    versions = Registry(registry).versions("de")
    assert [v.version for v in versions] == [1], versions  # the re-run registered nothing new
    assert versions[0].aliases == ["best"]


def test_sigint_during_training_then_rerun_resumes(tmp_path: Path, reference) -> None:
    ref_result, ref_sha = reference
    ref_cfg = ref_result.config
    cfg = ref_cfg.model_copy(update={"cache_dir": tmp_path / "cache", "output_dir": tmp_path / "models",
                                     "checkpoint_every": 1})
    # the stages before training come from the reference run's cache (a copy)
    shutil.copytree(ref_cfg.cache_dir, cfg.cache_dir,
                    ignore=lambda folder, names: [n for n in names if n in ("train", "evaluate")])
    child = Child(cfg, tmp_path, "sigint", "train", step=2)
    child.wait_paused()
    assert child.stop(signal.SIGINT) == 1
    seen = events_of(child.events)
    assert seen[-1][0] == "failed" and "KeyboardInterrupt" in seen[-1][1]
    assert statuses(seen, "init") == ["cached"]
    # Ctrl-C unwinds: the train stage's temporary folder is removed on the way out
    assert temp_leftovers(Path(cfg.cache_dir)) == []

    result = run_adaptation(cfg)
    assert result.stages_cached["init"] and not result.stages_cached["train"]
    assert result.train_log["resumed_from"] == 1
    assert weights_sha256(result.model_dir) == ref_sha
    assert result.scores == ref_result.scores


def _killed_inside(write) -> None:
    """Fork a child that calls ``write`` and is SIGKILLed from inside it (no clean-up runs)."""
    pid = os.fork()
    if pid == 0:  # the child
        try:
            write()
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_folders_and_files_left_by_a_killed_writer_are_removed_by_the_next(tmp_path: Path) -> None:
    from transfer.engine.cache import atomic_write, replacing_directory

    final, table = tmp_path / "models" / "m", tmp_path / "cache" / "file_identity.json"

    def write_folder() -> None:
        with replacing_directory(final) as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)

    def write_file() -> None:
        import tempfile

        # what atomic_write does up to the rename, then the kill
        name = f".{table.name}.tmp-"
        from transfer.engine import cache

        table.parent.mkdir(parents=True, exist_ok=True)
        tempfile.mkstemp(prefix=f"{name}{cache._HOST}-{os.getpid()}-", dir=table.parent)
        os.kill(os.getpid(), signal.SIGKILL)

    _killed_inside(write_folder)
    _killed_inside(write_file)
    assert [p.name for p in final.parent.iterdir() if ".tmp-" in p.name]
    assert [p.name for p in table.parent.iterdir() if ".tmp-" in p.name]
    with replacing_directory(final) as tmp:
        (tmp / "model.safetensors").write_bytes(b"whole")
    atomic_write(table, "{}\n")
    assert sorted(p.name for p in final.parent.iterdir()) == ["m"]
    assert sorted(p.name for p in table.parent.iterdir()) == ["file_identity.json"]


def test_a_live_writers_temporary_folder_is_left_alone(tmp_path: Path) -> None:
    """A temporary sibling of a writer still running (here: this process) is not an orphan."""
    from transfer.engine.cache import replacing_directory

    final = tmp_path / "m"
    with replacing_directory(final) as outer:
        (outer / "a").write_text("a")
        with replacing_directory(final) as inner:  # a second writer of the same folder
            (inner / "b").write_text("b")
        assert outer.is_dir() and (outer / "a").exists()
    assert sorted(p.name for p in final.iterdir()) == ["a"]  # the last writer wins
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_sigkill_in_the_vector_stages_then_resume(tmp_path: Path, tiny_source: Path) -> None:
    """WECHSEL's stages (fastText per language, then the alignment on an eflomal-induced
    dictionary): a killed alignment is built again on the next run (eflomal cannot be seeded,
    so its result is not bit-identical to an uninterrupted run's, and this test does not ask
    for that), the fastText vectors before it are not; a finished alignment is never redone."""
    cfg = AdaptConfig(
        source_model=str(tiny_source), target_language="de", target_bible=["e"], source_bible=[],
        source_train_bible=["k"], strategy="wechsel", dictionary="induced", vocab_size=350,
        vector_dim=8, vector_epochs=1, vector_max_verses=300, parallel_max_pairs=300, train_steps=0,
        eval_texts=4, curve_texts=0, device="cpu", cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "models", register_model=False, card_samples=0)
    cache = Path(cfg.cache_dir)

    first = Child(cfg, tmp_path, "kill-align", "align")
    paused = first.wait_paused()
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert statuses(events_of(first.events), "fasttext") == ["built", "built"]
    killed_align = Path(paused["tmp"])
    assert killed_align.is_dir() and not (cache / "align" / paused["key"]).exists()

    second = Child(cfg, tmp_path, "kill-init", "init")
    second.wait_paused()
    assert second.stop(signal.SIGKILL) == -signal.SIGKILL
    seen = events_of(second.events)
    assert statuses(seen, "fasttext") == ["cached", "cached"]
    assert statuses(seen, "align") == ["built"]  # the killed alignment, redone
    assert not killed_align.exists()

    final = run_adaptation(cfg)
    assert final.stages_cached["tokenizer"] and not final.stages_cached["init"]
    assert final.stages_cached["align"] and final.stages_cached["fasttext.target"]  # never redone
    assert temp_leftovers(cache, Path(cfg.output_dir)) == []
