"""Streamed corpus readers: formats, folders, errors, splits, content hashes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from transfer.corpus.readers import (
    corpus_content_hash,
    iter_documents,
    require_nonempty,
    split_documents,
)
from transfer.corpus.splits import SplitFractions, document_key, split_of
from transfer.errors import CorpusError

DOCS = ["Erster Satz.", "Zweiter Satz mit Umlauten: äöü ß.", "  eingerückt bleibt  "]


def _jsonl(docs: list[str], field: str = "text") -> str:
    return "".join(
        json.dumps({field: d, "id": i}, ensure_ascii=False) + "\n" for i, d in enumerate(docs)
    )


def test_plain_text_skips_blank_lines_and_strips_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_bytes(
        ("\ufeff" + DOCS[0] + "\r\n\n   \n" + DOCS[1] + "\n" + DOCS[2]).encode("utf-8")
    )
    assert list(iter_documents(path)) == DOCS


def test_any_suffix_single_file_is_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "corpus.de"
    path.write_text("a\nb\n", encoding="utf-8")
    assert list(iter_documents(str(path))) == ["a", "b"]


def test_gzip_text(tmp_path: Path) -> None:
    for name in ("c.txt.gz", "c.gz"):
        path = tmp_path / name
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write("\n".join(DOCS) + "\n")
        assert list(iter_documents(path)) == DOCS


def test_jsonl_and_json_lines(tmp_path: Path) -> None:
    for name in ("c.jsonl", "c.json"):
        path = tmp_path / name
        path.write_text(_jsonl(DOCS) + "\n" + json.dumps({"text": "   "}) + "\n", encoding="utf-8")
        assert list(iter_documents(path)) == DOCS  # blank texts are skipped like blank lines


def test_jsonl_gz_with_custom_field(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(_jsonl(DOCS, field="content"))
    assert list(iter_documents(path, text_field="content")) == DOCS


def test_folder_recursive_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("b/z\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(_jsonl(["a.jsonl"]), encoding="utf-8")
    with gzip.open(tmp_path / "c.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("c.txt.gz\n")
    (tmp_path / "a.text").write_text("a.text\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored\n", encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("ignored\n", encoding="utf-8")
    assert list(iter_documents(tmp_path)) == ["a.jsonl", "a.text", "b/z", "c.txt.gz"]


def test_folder_without_corpus_files(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("x", encoding="utf-8")
    with pytest.raises(CorpusError, match="no corpus files"):
        iter_documents(tmp_path)


def test_missing_path_fails_at_call(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"nope\.txt.*no such file"):
        iter_documents(tmp_path / "nope.txt")


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(_jsonl(["ok"]) + "{not json\n", encoding="utf-8")
    docs = iter_documents(path)
    assert next(docs) == "ok"  # streamed: earlier lines come out before the error
    with pytest.raises(CorpusError, match=r"bad\.jsonl.*line 2.*not valid JSON"):
        next(docs)


def test_non_object_json_line(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('["a", "b"]\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"line 1.*JSON object, got list"):
        list(iter_documents(path))


def test_missing_and_non_string_field(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(_jsonl(["ok"]) + json.dumps({"body": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"c\.jsonl.*line 2.*no field 'text'.*'body'"):
        list(iter_documents(path))
    path.write_text(json.dumps({"text": 3}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"line 1.*must be a string, got int"):
        list(iter_documents(path))


def test_lone_surrogate_in_json_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a\\ud800b"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="line 1.*not encodable"):
        list(iter_documents(path))


def test_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"gut\n" + "Größe\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1\.txt.*line 2.*not valid UTF-8"):
        list(iter_documents(path))


def test_non_utf8_in_gzip(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b'{"text": "\xff"}\n')
    with pytest.raises(CorpusError, match=r"c\.jsonl\.gz.*line 1.*not valid UTF-8"):
        list(iter_documents(path))


def test_broken_gzip(tmp_path: Path) -> None:
    path = tmp_path / "c.txt.gz"
    path.write_bytes(b"this is not gzip data\n")
    with pytest.raises(CorpusError, match=r"c\.txt\.gz.*gzip"):
        list(iter_documents(path))


def test_split_documents_partition(tmp_path: Path) -> None:
    docs = [f"Dokument Nummer {i}." for i in range(3000)]
    fractions = SplitFractions(dev=0.1, test=0.1)
    parts = {s: list(split_documents(docs, s, fractions)) for s in ("train", "dev", "test")}
    assert sorted(d for part in parts.values() for d in part) == sorted(docs)
    assert 200 < len(parts["test"]) < 400 and 200 < len(parts["dev"]) < 400
    assert all(split_of(document_key(d), fractions) == "test" for d in parts["test"])
    # The same through the file reader.
    path = tmp_path / "c.txt"
    path.write_text("\n".join(docs) + "\n", encoding="utf-8")
    assert list(split_documents(iter_documents(path), "dev", fractions)) == parts["dev"]
    with pytest.raises(CorpusError, match="split"):
        split_documents(docs, "validation")  # type: ignore[arg-type]


def test_content_hash_file(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    first = corpus_content_hash(path)
    assert corpus_content_hash(str(path)) == first and len(first) == 64
    path.write_text("a\nc\n", encoding="utf-8")
    assert corpus_content_hash(path) != first
    path.write_text("a\nb\n", encoding="utf-8")
    assert corpus_content_hash(path) == first
    # Same bytes in another format are a different corpus.
    other = tmp_path / "c.jsonl"
    other.write_bytes(path.read_bytes())
    assert corpus_content_hash(other) != first


def test_content_hash_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("a\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("b\n", encoding="utf-8")
    first = corpus_content_hash(tmp_path)
    assert corpus_content_hash(tmp_path) == first
    (tmp_path / "ignored.md").write_text("x", encoding="utf-8")
    assert corpus_content_hash(tmp_path) == first  # non-corpus files do not count
    (tmp_path / "b.txt").write_text("B\n", encoding="utf-8")
    edited = corpus_content_hash(tmp_path)
    assert edited != first
    (tmp_path / "b.txt").rename(tmp_path / "c.txt")
    assert corpus_content_hash(tmp_path) != edited
    with pytest.raises(CorpusError, match="no such file"):
        corpus_content_hash(tmp_path / "missing")


def test_require_nonempty() -> None:
    assert require_nonempty(iter(["a", ""]), "target corpus") == ["a", ""]
    with pytest.raises(CorpusError, match="target corpus: corpus is empty"):
        require_nonempty([], "target corpus")
    with pytest.raises(CorpusError, match="dev split: corpus has no decodable text"):
        require_nonempty(["", "  "], "dev split")
