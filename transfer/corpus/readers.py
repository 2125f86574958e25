"""Streamed readers for user corpora (plain text, JSON lines, Parquet, compressed, folders).

Formats, chosen by file suffix:

- plain text (``.txt``, ``.text`` or any other suffix when a single file is named): one
  document per line (the line end is stripped, blank lines are skipped), or with
  ``document_boundary="blank_line"`` one document per block of lines ended by a blank line
  (as CC100 is written), its lines joined with a newline;
- JSON lines (``.jsonl``, ``.json`` in lines format): one JSON object per line, the
  document is the object's ``text_field``;
- either of those compressed: ``.gz``, ``.bz2``, ``.xz``, ``.zst`` (``.txt.zst``,
  ``.jsonl.xz``, ...; a lone compression suffix is compressed plain text);
- Parquet (``.parquet``): one document per row, the string column ``text_field``, read a
  row group at a time (``transfer.corpus.parquet``);
- a folder: every file with one of the suffixes above, recursively, in sorted order of
  the relative path (hidden files and folders are skipped).

Text files are read line by line as bytes and decoded per line, so nothing holds a whole
file in memory and a decoding error can name its line. An empty (0-byte) file of any
format holds no documents.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from transfer.corpus.compressed import (
    COMPRESSION_SUFFIXES,
    DECOMPRESSION_ERRORS,
    Compression,
    compression_of_name,
    open_decompressed,
)
from transfer.corpus.parquet import PARQUET_SUFFIX, iter_parquet_texts
from transfer.corpus.splits import (
    DEFAULT_FRACTIONS,
    Split,
    SplitFractions,
    check_split,
    document_key,
    split_of,
)
from transfer.errors import CorpusError

Format = Literal["text", "jsonl", "parquet"]
DocumentBoundary = Literal["line", "blank_line"]
DOCUMENT_BOUNDARIES: tuple[str, ...] = ("line", "blank_line")

TEXT_SUFFIXES: tuple[str, ...] = (".txt", ".text")
JSONL_SUFFIXES: tuple[str, ...] = (".jsonl", ".json")
GZIP_SUFFIX = ".gz"
# Suffixes a folder is scanned for; a lone compression suffix is compressed plain text.
CORPUS_SUFFIXES: tuple[str, ...] = TEXT_SUFFIXES + JSONL_SUFFIXES + tuple(COMPRESSION_SUFFIXES) + (PARQUET_SUFFIX,)
# A blank-line document longer than this is refused: a file without blank lines read with
# document_boundary="blank_line" would otherwise become one document held in memory.
MAX_DOCUMENT_CHARS = 1 << 24


def file_format(path: Path) -> tuple[Format, Compression | None]:
    """(format, compression) of one corpus file, from its suffixes (``x.jsonl.zst``:
    ("jsonl", "zstd")). The compression is None for an uncompressed file."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = compression_of_name(path)
    if compression is not None:
        suffixes = suffixes[:-1]
    inner = suffixes[-1] if suffixes else ""
    if inner == PARQUET_SUFFIX:
        if compression is not None:
            raise CorpusError(f"corpus file {str(path)!r}: Parquet compresses inside the file; give the "
                              f"{path.suffix} file decompressed, as {path.stem}")
        return "parquet", None
    return ("jsonl" if inner in JSONL_SUFFIXES else "text"), compression


def format_name(path: Path) -> str:
    """A file's format as corpus records show it: ``text``, ``jsonl+zstd``, ``parquet``..."""
    fmt, compression = file_format(path)
    return f"{fmt}+{compression}" if compression else fmt


def _is_corpus_file(path: Path, root: Path) -> bool:
    relative = path.relative_to(root)
    # Skip .git, editor backups and the like: they are never corpus text.
    if any(part.startswith(".") for part in relative.parts):
        return False
    return path.is_file() and path.suffix.lower() in CORPUS_SUFFIXES


def corpus_files(path: str | Path) -> list[Path]:
    """The files a corpus path stands for: itself, or a folder's corpus files in sorted order.

    Raises CorpusError when the path is missing or a folder holds no corpus file.
    """
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"corpus {str(path)!r}: no such file or folder")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CorpusError(f"corpus {str(path)!r}: not a regular file or folder")
    files = sorted(
        (p for p in path.rglob("*") if _is_corpus_file(p, path)),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    if not files:
        raise CorpusError(
            f"corpus folder {str(path)!r}: no corpus files "
            f"(looked for {', '.join(CORPUS_SUFFIXES)} recursively)"
        )
    return files


def _compression(value: Compression | bool | None) -> Compression | None:
    # callers that predate bzip2/xz/zstd pass gzipped=True/False
    if isinstance(value, bool):
        return "gzip" if value else None
    return value


def decoded_lines(path: Path, compression: Compression | bool | None) -> Iterator[tuple[int, str]]:
    """(line number, line without its line end) for every line, decoded as UTF-8, of a
    plain or compressed file (``compression`` as ``file_format`` gives it)."""
    kind = _compression(compression)
    try:
        handle = open_decompressed(path, kind)
    except OSError as exc:
        raise CorpusError(f"corpus file {str(path)!r}: cannot open ({exc})") from exc
    with handle:
        lineno = 0
        try:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise CorpusError(
                        f"corpus file {str(path)!r}, line {lineno}: not valid UTF-8 "
                        f"(byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                        f"re-encode the file as UTF-8"
                    ) from exc
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]  # a UTF-8 byte order mark is not part of the text
                yield lineno, line.rstrip("\r\n")
        except DECOMPRESSION_ERRORS as exc:
            raise CorpusError(
                f"corpus file {str(path)!r}, after line {lineno}: broken {kind} data ({exc})"
            ) from exc
        except OSError as exc:
            # bzip2 reports bad data as an OSError ("Invalid data stream")
            what = f"broken {kind} data" if kind else "read error"
            raise CorpusError(f"corpus file {str(path)!r}, after line {lineno}: {what} ({exc})") from exc


def _iter_text_file(path: Path, compression: Compression | None, boundary: DocumentBoundary) -> Iterator[str]:
    if boundary == "line":
        for _, line in decoded_lines(path, compression):
            if line.strip():
                yield line
        return
    block: list[str] = []
    chars = 0
    for lineno, line in decoded_lines(path, compression):
        if not line.strip():
            if block:
                yield "\n".join(block)
                block, chars = [], 0
            continue
        block.append(line)
        chars += len(line) + 1
        if chars > MAX_DOCUMENT_CHARS:
            raise CorpusError(
                f"corpus file {str(path)!r}, line {lineno}: a document of over {MAX_DOCUMENT_CHARS:,} "
                f"characters without a blank line; is this file blank-line separated? (else use "
                f"document_boundary='line')"
            )
    if block:
        yield "\n".join(block)


def jsonl_text(line: str, text_field: str, where: str) -> str:
    """The text of one JSON line (an object with a string ``text_field``), or a CorpusError
    naming ``where`` (file and line) and what is wrong: the one rule for JSONL corpora,
    used by the reader and by the up-front check of a file's head."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(
            f"{where}: not valid JSON ({exc.msg}); expected JSON lines, one object per line"
        ) from exc
    if not isinstance(record, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if text_field not in record:
        raise CorpusError(
            f"{where}: no field {text_field!r} (fields: {', '.join(map(repr, record))}); "
            f"pass text_field= to name the text field"
        )
    text = record[text_field]
    if not isinstance(text, str):
        raise CorpusError(
            f"{where}: field {text_field!r} must be a string, got {type(text).__name__}"
        )
    try:
        # JSON escapes can smuggle in lone surrogates, which no tokenizer can encode.
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CorpusError(f"{where}: field {text_field!r} is not encodable text ({exc})") from exc
    return text


def _iter_jsonl_file(path: Path, compression: Compression | None, text_field: str) -> Iterator[str]:
    for lineno, line in decoded_lines(path, compression):
        if not line.strip():
            continue
        text = jsonl_text(line, text_field, f"corpus file {str(path)!r}, line {lineno}")
        if text.strip():
            yield text


def iter_file_documents(path: Path, text_field: str = "text", boundary: DocumentBoundary = "line") -> Iterator[str]:
    """Documents of one corpus file, in file order."""
    fmt, compression = file_format(path)
    try:
        if path.stat().st_size == 0:
            return  # empty in every format (a 0-byte .gz or .parquet is not refused as broken)
    except OSError as exc:
        raise CorpusError(f"corpus file {str(path)!r}: cannot read ({exc})") from exc
    if fmt == "parquet":
        yield from iter_parquet_texts(path, text_field)
    elif fmt == "jsonl":
        yield from _iter_jsonl_file(path, compression, text_field)
    else:
        yield from _iter_text_file(path, compression, boundary)


def iter_documents(path: str | Path, text_field: str = "text", boundary: DocumentBoundary = "line") -> Iterator[str]:
    """Stream the documents of a corpus file or folder (see the module docstring).

    A missing path raises at once; format errors raise when the reader reaches them,
    naming the file and line.
    """
    files = corpus_files(path)  # eager: a wrong path fails before any work starts
    if not text_field:
        raise CorpusError("text_field: must be a non-empty field name")
    if boundary not in DOCUMENT_BOUNDARIES:
        raise CorpusError(f"document_boundary: {boundary!r} is unknown; use one of {DOCUMENT_BOUNDARIES}")
    for file in files:
        file_format(file)  # eager too: a compressed .parquet fails before any work
    return itertools.chain.from_iterable(iter_file_documents(f, text_field, boundary) for f in files)


def split_documents(
    docs: Iterable[str], split: Split, fractions: SplitFractions = DEFAULT_FRACTIONS
) -> Iterator[str]:
    """The documents that belong to ``split`` (by a stable hash of each document's text)."""
    check_split(split)
    return (doc for doc in docs if split_of(document_key(doc), fractions) == split)


def corpus_content_hash(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """sha256 hex of a corpus's content, for cache keys.

    A file: its content digest, preceded by its format (the same bytes read as text or as
    JSON lines are different corpora). A folder: every corpus file's relative path and
    content digest, in sorted order, so adding, removing, renaming or editing a file changes
    it. File digests come from ``transfer.engine.file_identity`` (hashed once per file version and
    remembered under ``cache_dir``), so a corpus of gigabytes is not re-read on every run.
    """
    path = Path(path)
    files = corpus_files(path)
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(f"{format_name(path)}\0".encode())
        digest.update(bytes.fromhex(_file_digest(path, cache_dir)))
        return digest.hexdigest()
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode("utf-8", "surrogateescape"))
        digest.update(b"\0" + bytes.fromhex(_file_digest(file, cache_dir)))
    return digest.hexdigest()


def _file_digest(path: Path, cache_dir: str | Path | None) -> str:
    from transfer.engine.file_identity import file_identity

    try:
        return file_identity(path, cache_dir)
    except OSError as exc:
        raise CorpusError(f"corpus file {str(path)!r}: cannot read ({exc})") from exc


def require_nonempty(texts: Iterable[str], name: str) -> list[str]:
    """Materialize ``texts`` and raise CorpusError if none holds any non-blank text.

    Stages call this before expensive work, so an empty split or an undecodable corpus
    fails with its name instead of deep inside training.
    """
    items = list(texts)
    if not items:
        raise CorpusError(f"{name}: corpus is empty (no documents)")
    if not any(text.strip() for text in items):
        raise CorpusError(f"{name}: corpus has no decodable text ({len(items)} blank documents)")
    return items
