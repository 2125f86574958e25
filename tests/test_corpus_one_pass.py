"""The corpus stage reads each target file once, routing every document to its split (a
compressed corpus of gigabytes is decompressed once, not once per split), and writes what
the per-split rule (``split_documents``) defines, in the file's order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import zstandard

from tests.helpers import config
from transfer.corpus import readers
from transfer.corpus.readers import iter_documents, split_documents
from transfer.corpus.splits import SplitFractions
from transfer.corpus.stage import corpus_record, corpus_spec, read_lines
from transfer.engine.cache import StageCache
from transfer.engine.stages import execute


def test_each_file_is_read_once_and_split_as_the_rule_says(tmp_path: Path, monkeypatch) -> None:
    docs = [f"Satz Nummer {i}: und es ward Licht, und es war gut." for i in range(400)]
    zst = tmp_path / "a.txt.zst"
    with open(zst, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as writer:
        writer.write(("\n".join(docs[:250]) + "\n").encode())
    plain = tmp_path / "b.txt"
    plain.write_text("\n".join(docs[250:]) + "\n")
    folder = tmp_path / "corpus"
    folder.mkdir()
    zst.rename(folder / zst.name)
    plain.rename(folder / plain.name)

    reads: Counter[str] = Counter()
    original = readers.iter_documents

    def counting(path, *args, **kwargs):
        reads[str(path)] += 1
        return original(path, *args, **kwargs)

    cfg = config(tmp_path, tmp_path, folder, dev_fraction=0.1, test_fraction=0.1)
    monkeypatch.setattr(readers, "iter_documents", counting)
    corpus, _ = execute(corpus_spec(cfg), StageCache(tmp_path / "cache"))
    monkeypatch.undo()
    assert reads == {str(folder): 1}  # three splits, one read (it was three before)

    fractions = SplitFractions(dev=0.1, test=0.1)
    for split in ("train", "dev", "test"):
        expected = list(split_documents(iter_documents(folder), split, fractions))
        assert expected, split
        assert read_lines(corpus.path / f"{split}.txt") == expected
    record = corpus_record(corpus.path)
    assert {s: record["stats"][s]["documents"] for s in ("train", "dev", "test")} == {
        s: len(list(split_documents(iter_documents(folder), s, fractions))) for s in ("train", "dev", "test")}
    assert record["sections"]["train.txt"] == [["file:0", record["stats"]["train"]["documents"]]]
