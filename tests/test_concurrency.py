"""Runs at the same time (issue 16, item 4), each in its own forked process, one cache.

Two runs of the same configuration: each stage is built once (the other run waits for the
stage key's lock and then finds the entry), both end with the weights of a run alone, and
each stage has one cache entry. Two runs for different languages: neither disturbs the
other (the shared source stage is built once, German ends as it does alone). Two writers
replacing the same folder at once (the export of two runs of the same model) both succeed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import Child, events_of, temp_leftovers, three_step_config, weights_sha256
from transfer.pipeline import run_adaptation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory, tiny_source: Path, tiny_corpus: Path,
          one_torch_thread: None):
    """German run alone (the result both concurrent tests must reproduce)."""
    tmp = tmp_path_factory.mktemp("alone")
    result = run_adaptation(three_step_config(tmp, tiny_source, tiny_corpus))
    return result, weights_sha256(result.model_dir)


def _finish(*children: Child) -> list[list[tuple[str, str]]]:
    codes = [child.finish() for child in children]
    seen = [events_of(child.events) for child in children]
    assert codes == [0] * len(children), seen
    return seen


def _entries(cache: Path) -> dict[str, list[str]]:
    return {stage.name: sorted(p.name for p in stage.iterdir() if not p.name.startswith("."))
            for stage in cache.iterdir() if stage.is_dir() and stage.name[0] not in "._"}


def test_same_config_twice_at_once(tmp_path: Path, tiny_source: Path, tiny_corpus: Path, alone) -> None:
    ref, ref_sha = alone
    # checkpoints too: only the run that holds the train stage's lock trains
    cfg = three_step_config(tmp_path, tiny_source, tiny_corpus, checkpoint_every=1)
    seen = _finish(Child(cfg, tmp_path, "a"), Child(cfg, tmp_path, "b"))
    built = Counter(label for events in seen for label, status in events if status == "built")
    cached = Counter(label for events in seen for label, status in events if status == "cached")
    # every stage once: corpus, source, tokenizer, init, train, and the 3 evaluations
    assert built == {"corpus": 1, "source": 1, "tokenizer": 1, "init": 1, "train": 1, "evaluate": 3}
    assert built + cached == {stage: 2 * n for stage, n in built.items()}
    entries = _entries(Path(cfg.cache_dir))
    assert {stage: len(keys) for stage, keys in entries.items()} == dict(built)
    for events in seen:
        assert events[-1] == ("done", str(Path(cfg.output_dir) / cfg.model_name()))
    assert weights_sha256(Path(cfg.output_dir) / cfg.model_name()) == ref_sha
    assert temp_leftovers(Path(cfg.cache_dir), Path(cfg.output_dir)) == []
    assert run_adaptation(cfg).scores == ref.scores


def test_two_languages_at_once(tmp_path: Path, tiny_source: Path, tiny_corpus: Path, alone) -> None:
    from tests.tiny import ENGLISH_SENTENCES

    _, ref_sha = alone
    english = tmp_path / "en.txt"
    english.write_text("\n".join(f"{s} ({i})" for i in range(12) for s in ENGLISH_SENTENCES) + "\n")
    german = three_step_config(tmp_path, tiny_source, tiny_corpus)
    other = three_step_config(tmp_path, tiny_source, english, target_language="en")
    seen = _finish(Child(german, tmp_path, "de"), Child(other, tmp_path, "en"))
    built = Counter(label for events in seen for label, status in events if status == "built")
    assert built["source"] == 1 and built["corpus"] == 2 and built["train"] == 2
    assert weights_sha256(Path(german.output_dir) / german.model_name()) == ref_sha
    assert german.model_name() != other.model_name()
    assert (Path(other.output_dir) / other.model_name() / "model.safetensors").is_file()
    assert temp_leftovers(Path(german.cache_dir), Path(german.output_dir)) == []


def _replace_many(final: Path, tag: str, times: int) -> None:
    from transfer.engine.cache import replacing_directory

    for i in range(times):
        with replacing_directory(final) as tmp:
            (tmp / "who.txt").write_text(f"{tag} {i}")


def test_two_writers_replace_one_folder_at_once(tmp_path: Path) -> None:
    """Each swap moves the old copy aside and renames the new one in; a rename that lands
    between another writer's two steps finds the folder taken, and tries again."""
    final = tmp_path / "models" / "m"
    pids = []
    for tag in ("a", "b"):
        pid = os.fork()
        if pid == 0:
            try:
                _replace_many(final, tag, 300)
            except BaseException:  # noqa: BLE001 - any failure is the child's exit status
                os._exit(1)
            os._exit(0)
        pids.append(pid)
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    assert all(os.WIFEXITED(c) and os.WEXITSTATUS(c) == 0 for c in codes), codes
    assert sorted(p.name for p in final.parent.iterdir()) == ["m"]
    # one whole copy: the last swap of one of the writers
    assert sorted(p.name for p in final.iterdir()) == ["who.txt"]
    assert (final / "who.txt").read_text() in ("a 299", "b 299")
