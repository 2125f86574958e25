"""Target corpora in every form issue 13 names: .bz2, .xz and .zst (plain text or JSON lines
inside), .parquet, folders of any mix, and blank-line-separated documents (CC100), each
written here by the real compressor or pyarrow; and their bad variants, refused before the
first stage where a file's head shows the damage, else by the corpus stage with no cache
entry left."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.helpers import config
from tests.refusals import make_artifacts, refused
from transfer.corpus.readers import corpus_content_hash, corpus_files, iter_documents
from transfer.corpus.stage import corpus_record, corpus_spec, read_lines
from transfer.engine.cache import StageCache
from transfer.engine.stages import execute
from transfer.errors import CorpusError
from transfer.pipeline import run_adaptation
from transfer.settings.validate import HEAD_BYTES, _check_target_files

DOCS = ["Erster Satz.", "Zweiter Satz mit Umlauten: äöü ß.", "  eingerückt bleibt  "]


def _zstd_bytes(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".bz2": bz2.compress, ".xz": lzma.compress, ".zst": _zstd_bytes, ".gz": gzip.compress,
}


def _jsonl(docs: list[str], field: str = "text") -> str:
    return "".join(json.dumps({field: d, "id": i}, ensure_ascii=False) + "\n" for i, d in enumerate(docs))


def _write_compressed(path: Path, text: str) -> Path:
    """Write ``text`` through the real library's streaming writer (as a user's tool would)."""
    data = text.encode("utf-8")
    suffix = path.suffix
    if suffix == ".zst":
        with open(path, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as writer:
            writer.write(data)
    else:
        opener = {".bz2": bz2.open, ".xz": lzma.open, ".gz": gzip.open}[suffix]
        with opener(path, "wb") as handle:
            handle.write(data)
    return path


def _parquet(path: Path, columns: dict[str, list], row_group_size: int = 2) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


# ------------------------------------------------------------------ good files, read back


@pytest.mark.parametrize("suffix", [".bz2", ".xz", ".zst"])
def test_compressed_plain_text_and_jsonl(suffix: str, tmp_path: Path) -> None:
    text = _write_compressed(tmp_path / f"c.txt{suffix}", "\n".join(DOCS) + "\n\n")
    lone = _write_compressed(tmp_path / f"c{suffix}", "\n".join(DOCS) + "\n")  # a lone suffix: text
    jsonl = _write_compressed(tmp_path / f"c.jsonl{suffix}", _jsonl(DOCS, "content"))
    assert list(iter_documents(text)) == DOCS
    assert list(iter_documents(lone)) == DOCS
    assert list(iter_documents(jsonl, text_field="content")) == DOCS


def test_zstd_of_several_frames_is_read_whole(tmp_path: Path) -> None:
    # pzstd and appended files give several frames: every one is read, not only the first
    path = tmp_path / "c.txt.zst"
    path.write_bytes(_zstd_bytes(b"eins\nzwei\n") + _zstd_bytes(b"drei\n"))
    assert list(iter_documents(path)) == ["eins", "zwei", "drei"]


def test_parquet_rows_are_documents(tmp_path: Path) -> None:
    texts = [*DOCS, None, "   ", "Mehrzeilig\nzweite Zeile"]
    path = _parquet(tmp_path / "c.parquet", {"id": list(range(len(texts))), "text": texts})
    assert pq.ParquetFile(path).num_row_groups == 3
    # null and blank texts are skipped, as blank lines are
    assert list(iter_documents(path)) == [*DOCS, "Mehrzeilig\nzweite Zeile"]
    large = _parquet(tmp_path / "large.parquet", {"body": pa.array(DOCS, pa.large_string())})
    assert list(iter_documents(large, text_field="body")) == DOCS


def test_parquet_is_read_a_row_group_at_a_time(tmp_path: Path) -> None:
    # 16 row groups of ~256 KB of text: while reading, Arrow holds one group, not the file
    rows = [f"Dokument {i}: " + "Wörter " * 100 for i in range(16 * 350)]
    path = _parquet(tmp_path / "big.parquet", {"text": rows}, row_group_size=350)
    total = sum(len(r.encode()) for r in rows)
    start = pa.total_allocated_bytes()
    peak = 0
    count = 0
    for _ in iter_documents(path):
        count += 1
        peak = max(peak, pa.total_allocated_bytes() - start)
    assert count == len(rows)
    assert peak < total / 4, (peak, total)


def test_folder_of_every_format_in_sorted_order(tmp_path: Path) -> None:
    folder = tmp_path / "mix"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    _write_compressed(folder / "a.txt.bz2", "a-bz2\n")
    _write_compressed(folder / "b.jsonl.zst", _jsonl(["b-zst"]))
    _parquet(folder / "c.parquet", {"text": ["c-parquet"]})
    _write_compressed(folder / "sub" / "d.txt.xz", "d-xz\n")
    (folder / "e.txt").write_text("e-txt\n")
    (folder / ".hidden" / "x.txt").write_text("versteckt\n")
    (folder / ".f.txt.zst").write_bytes(_zstd_bytes(b"versteckt\n"))
    (folder / "notes.md").write_text("not a corpus file\n")
    assert [p.relative_to(folder).as_posix() for p in corpus_files(folder)] == [
        "a.txt.bz2", "b.jsonl.zst", "c.parquet", "e.txt", "sub/d.txt.xz"]
    assert list(iter_documents(folder)) == ["a-bz2", "b-zst", "c-parquet", "e-txt", "d-xz"]


def test_file_identity_is_remembered_for_every_format(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    files = [_write_compressed(tmp_path / f"c.txt{s}", "eins\n") for s in (".bz2", ".xz", ".zst")]
    files.append(_parquet(tmp_path / "c.parquet", {"text": ["eins"]}))
    digests = {corpus_content_hash(f, cache) for f in files}
    assert len(digests) == 4
    table = json.loads((cache / "file_identity.json").read_text())
    assert {str(f.resolve()) for f in files} <= set(table)
    # the same bytes as text and as JSONL are different corpora (format in the hash)
    renamed = tmp_path / "c.jsonl.zst"
    renamed.write_bytes(files[2].read_bytes())
    assert corpus_content_hash(renamed, cache) != corpus_content_hash(files[2], cache)


# ------------------------------------------------------------------ blank-line documents

CC100_LIKE = [
    ["Die Stadt liegt am Fluss.", "Sie hat einen Hafen."],
    ["Ein einzelner Absatz."],
    ["Erste Zeile.", "Zweite Zeile.", "Dritte Zeile."],
]


def test_blank_line_documents_join_their_lines_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "cc100.txt.xz"
    _write_compressed(path, "\n\n".join("\n".join(doc) for doc in CC100_LIKE) + "\n\n\n")
    assert list(iter_documents(path, boundary="blank_line")) == ["\n".join(doc) for doc in CC100_LIKE]
    assert list(iter_documents(path)) == [line for doc in CC100_LIKE for line in doc]  # default: lines


def test_the_split_keeps_a_blank_line_document_whole(tmp_path: Path) -> None:
    # 120 documents of 3 lines: by lines they would scatter over the splits
    docs = [[f"Dokument {d} Zeile {z} mit etwas Text." for z in range(3)] for d in range(120)]
    path = tmp_path / "cc100.txt"
    path.write_text("\n\n".join("\n".join(doc) for doc in docs) + "\n")
    cfg = config(tmp_path, tmp_path, path, document_boundary="blank_line", dev_fraction=0.2, test_fraction=0.2)
    _check_target_files(cfg)  # validation reads the documents whole, as the stage does
    cache = StageCache(tmp_path / "cache")
    corpus, _ = execute(corpus_spec(cfg), cache)
    where: dict[str, str] = {}
    for split in ("train", "dev", "test"):
        lines = read_lines(corpus.path / f"{split}.txt")
        for line in lines:
            where[line] = split
        assert lines, split
    for doc in docs:
        assert len({where[line] for line in doc}) == 1, doc  # one split per document
    record = corpus_record(corpus.path)
    assert record["params"]["document_boundary"] == "blank_line"
    assert sum(record["stats"][s]["documents"] for s in ("train", "dev", "test")) == len(docs)
    # the same file read a document per line is another corpus stage
    assert corpus_spec(cfg.model_copy(update={"document_boundary": "line"})).key != corpus_spec(cfg).key


def test_the_corpus_record_names_the_files_a_folder_gave(tmp_path: Path) -> None:
    folder = tmp_path / "mix"
    folder.mkdir()
    lines = [f"Satz Nummer {i} im Korpus." for i in range(200)]
    _write_compressed(folder / "a.txt.zst", "\n".join(lines[:100]) + "\n")
    _parquet(folder / "b.parquet", {"text": lines[100:]}, row_group_size=50)
    cfg = config(tmp_path, tmp_path, folder)
    corpus, _ = execute(corpus_spec(cfg), StageCache(tmp_path / "cache"))
    record = corpus_record(corpus.path)
    assert record["files"] == {"file:0": [{"path": str(folder / "a.txt.zst"), "format": "text+zstd"},
                                          {"path": str(folder / "b.parquet"), "format": "parquet"}]}
    assert sum(record["stats"][s]["documents"] for s in ("train", "dev", "test")) == 200


def test_the_option_reaches_the_config_from_cli_form_and_languages_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.languages import LanguageEntry
    from flows.parameters import AdaptParameters

    schema = AdaptParameters.model_json_schema()["properties"]["document_boundary"]
    assert schema["enum"] == ["line", "blank_line"] and schema["default"] == "line"
    entry = LanguageEntry(name="Swahili", corpus={"files": ["sw.txt"]}, options={"document_boundary": "blank_line"})
    assert entry.to_parameters("sw").document_boundary == "blank_line"
    # a wrong value is refused by the config naming the field (the option is wired through)
    result = CliRunner().invoke(app, ["adapt", "--target-file", str(tmp_path / "x.txt"),
                                      "--document-boundary", "paragraph", "--dry-run"])
    assert result.exit_code != 0
    assert "document_boundary" in result.output and "blank_line" in result.output, result.output


# ------------------------------------------------------------------ bad variants, before any stage


def _bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    text = "Im Anfang war das Wort.\n" * 50
    data = text.encode()
    parquet_ok = folder / "ok.parquet"
    _parquet(parquet_ok, {"text": ["Im Anfang war das Wort."] * 20})
    files: dict[str, bytes] = {
        "truncated.txt.bz2": bz2.compress(data)[:-20],
        "truncated.txt.xz": lzma.compress(data)[:-20],
        "truncated.jsonl.zst": _zstd_bytes(_jsonl(["Im Anfang war das Wort."] * 50).encode())[:-5],
        "corrupt.txt.xz": lzma.compress(data)[:20] + b"\x00garbage" * 8,
        "gzip-named.txt.zst": gzip.compress(data),
        "text-named.txt.bz2": data,
        "zstd-named.txt": _zstd_bytes(data),
        "xz-named.jsonl": lzma.compress(data),
        "binary-inside.txt.zst": _zstd_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4),
        "empty.txt.zst": b"",
        "empty-stream.txt.bz2": bz2.compress(b""),
        "no-text-column.parquet": b"",
        "int-text-column.parquet": b"",
        "empty-rows.parquet": b"",
        "zero-bytes.parquet": b"",
        "text-named.parquet": data,
        "truncated.parquet": parquet_ok.read_bytes()[:-30],
        "parquet-named.txt": parquet_ok.read_bytes(),
        "wrapped.parquet.gz": gzip.compress(parquet_ok.read_bytes()),
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(content)
    _parquet(paths["no-text-column.parquet"], {"id": [1, 2], "content": ["a", "b"]})
    _parquet(paths["int-text-column.parquet"], {"text": [1, 2]})
    _parquet(paths["empty-rows.parquet"], {"text": pa.array([], pa.string())})
    return paths


BAD_CASES = [
    ("truncated.txt.bz2", r"broken bz2 data \(Compressed file ended"),
    ("truncated.txt.xz", r"broken xz data \(Compressed file ended"),
    ("truncated.jsonl.zst", r"broken zstd data \(the file ends inside a zstd frame"),
    ("corrupt.txt.xz", r"broken xz data"),
    ("gzip-named.txt.zst", r"named \.zst but is gzip data; give it a \.gz name"),
    ("text-named.txt.bz2", r"named \.bz2 but is not bz2 data \(it starts with b'Im A'\)"),
    ("zstd-named.txt", r"is zstd-compressed data; give it a \.zst name"),
    ("xz-named.jsonl", r"is xz-compressed data; give it a \.xz name"),
    ("binary-inside.txt.zst", r"binary data \(a NUL byte at offset 7\)"),
    ("empty.txt.zst", r"no text \(every file is empty or blank\)"),
    ("empty-stream.txt.bz2", r"no text \(every file is empty or blank\)"),
    ("no-text-column.parquet", r"no column 'text' \(columns: 'id' \(int64\), 'content' \(string\)\)"),
    ("int-text-column.parquet", r"column 'text' is int64, not a string column"),
    ("empty-rows.parquet", r"no text \(every file is empty or blank\)"),
    ("zero-bytes.parquet", r"no text \(every file is empty or blank\)"),
    ("text-named.parquet", r"not a readable Parquet file"),
    ("truncated.parquet", r"not a readable Parquet file"),
    ("parquet-named.txt", r"is Parquet data; give it a \.parquet name"),
    ("wrapped.parquet.gz", r"Parquet compresses inside the file"),
]


@pytest.mark.parametrize(("name", "pattern"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_corpus_files_are_refused_before_any_stage(name: str, pattern: str, tmp_path: Path,
                                                      tiny_source: Path) -> None:
    artifacts = make_artifacts(tmp_path)
    path = _bad_files(tmp_path / "input")[name]
    cfg = config(tmp_path, tiny_source, path, cache_dir=artifacts / "cache", output_dir=artifacts / "models")
    message = refused(f"target file {name}", "validate_config (run_adaptation) -> _check_target_files",
                      lambda: run_adaptation(cfg), pattern, artifacts, CorpusError)
    assert name in message  # the file is named


def test_an_empty_compressed_or_parquet_file_beside_text_is_fine(tmp_path: Path, tiny_corpus: Path) -> None:
    files = _bad_files(tmp_path / "input")
    for name in ("empty.txt.zst", "empty-stream.txt.bz2", "empty-rows.parquet"):
        cfg = config(tmp_path, tmp_path, tiny_corpus, target_files=[str(tiny_corpus), str(files[name])])
        _check_target_files(cfg)


def test_a_file_without_blank_lines_is_refused_as_blank_line_documents(tmp_path: Path, tiny_source: Path) -> None:
    artifacts = make_artifacts(tmp_path)
    path = tmp_path / "lines.txt.zst"
    path.write_bytes(_zstd_bytes("".join(f"Zeile {i} ohne Leerzeile.\n" for i in range(5000)).encode()))
    cfg = config(tmp_path, tiny_source, path, document_boundary="blank_line", cache_dir=artifacts / "cache",
                  output_dir=artifacts / "models")
    refused("target file lines.txt.zst as blank_line documents", "validate_config -> _check_target_files",
            lambda: run_adaptation(cfg), r"lines\.txt\.zst.*hold no blank line.*document_boundary='line'",
            artifacts, CorpusError)


def test_an_endless_blank_line_document_is_refused_naming_file_and_line(tmp_path: Path, monkeypatch) -> None:
    from transfer.corpus import readers

    monkeypatch.setattr(readers, "MAX_DOCUMENT_CHARS", 100)  # the limit, not the reader, made small
    path = _write_compressed(tmp_path / "c.txt.zst", "kurz\n\n" + "".join(f"Zeile {i}\n" for i in range(40)))
    documents = iter_documents(path, boundary="blank_line")
    assert next(documents) == "kurz"
    # lines 3-12 hold 8 characters with their line end, lines 13-15 nine: 107 > 100 at line 15
    with pytest.raises(CorpusError, match=r"c\.txt\.zst', line 15: a document of over 100 characters"):
        next(documents)


# ------------------------------------------------------------------ damage past the head


@pytest.mark.parametrize("suffix", [".bz2", ".xz", ".zst"])
def test_damage_past_the_head_fails_the_corpus_stage_and_leaves_no_entry(suffix: str, tmp_path: Path) -> None:
    lines = [f"Satz {i}: Im Anfang war das Wort, und das Wort war bei Gott." for i in range(20000)]
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) > 8 * HEAD_BYTES
    path = tmp_path / f"long.txt{suffix}"
    path.write_bytes(COMPRESSORS[suffix](data)[:-40])  # the end of the file is lost
    cfg = config(tmp_path, tmp_path, path)
    _check_target_files(cfg)  # the head is fine
    cache = StageCache(tmp_path / "cache")
    spec = corpus_spec(cfg)
    with pytest.raises(CorpusError, match=rf"long\.txt\{suffix}'.*broken"):
        execute(spec, cache)
    assert cache.get("corpus", spec.key) is None
    stage_folder = tmp_path / "cache" / "corpus"
    assert not stage_folder.exists() or not any(stage_folder.iterdir())
