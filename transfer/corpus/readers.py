"""Streamed readers for user corpora (plain text, gzip, JSON lines, folders of those).

Formats, chosen by file suffix:

- plain text (``.txt``, ``.text`` or any other suffix when a single file is named):
  one document per line; the line end is stripped, blank lines are skipped;
- JSON lines (``.jsonl``, ``.json`` in lines format): one JSON object per line, the
  document is the object's ``text_field``;
- either of those gzip-compressed (``.gz``, ``.txt.gz``, ``.jsonl.gz``, ...);
- a folder: every file with one of the suffixes above, recursively, in sorted order of
  the relative path (hidden files and folders are skipped).

Files are read line by line as bytes and decoded per line, so nothing holds a whole file
in memory and a decoding error can name its line.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from transfer.corpus.splits import (
    DEFAULT_FRACTIONS,
    Split,
    SplitFractions,
    check_split,
    document_key,
    split_of,
)
from transfer.errors import CorpusError

Format = Literal["text", "jsonl"]

TEXT_SUFFIXES: tuple[str, ...] = (".txt", ".text")
JSONL_SUFFIXES: tuple[str, ...] = (".jsonl", ".json")
GZIP_SUFFIX = ".gz"
# Suffixes a folder is scanned for; a lone ".gz" is read as compressed plain text.
CORPUS_SUFFIXES: tuple[str, ...] = TEXT_SUFFIXES + JSONL_SUFFIXES + (GZIP_SUFFIX,)

_CHUNK = 1 << 20


def file_format(path: Path) -> tuple[Format, bool]:
    """(format, gzipped) of one corpus file, from its suffixes."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == GZIP_SUFFIX
    if gzipped:
        suffixes = suffixes[:-1]
    inner = suffixes[-1] if suffixes else ""
    return ("jsonl" if inner in JSONL_SUFFIXES else "text"), gzipped


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


def _open_binary(path: Path, gzipped: bool) -> BinaryIO:
    try:
        return gzip.open(path, "rb") if gzipped else open(path, "rb")  # type: ignore[return-value]
    except OSError as exc:
        raise CorpusError(f"corpus file {str(path)!r}: cannot open ({exc})") from exc


def decoded_lines(path: Path, gzipped: bool) -> Iterator[tuple[int, str]]:
    """(line number, line without its line end) for every line, decoded as UTF-8."""
    with _open_binary(path, gzipped) as handle:
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
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise CorpusError(
                f"corpus file {str(path)!r}, after line {lineno}: broken gzip data ({exc})"
            ) from exc
        except OSError as exc:
            raise CorpusError(
                f"corpus file {str(path)!r}, after line {lineno}: read error ({exc})"
            ) from exc


def _iter_text_file(path: Path, gzipped: bool) -> Iterator[str]:
    for _, line in decoded_lines(path, gzipped):
        if line.strip():
            yield line


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


def _iter_jsonl_file(path: Path, gzipped: bool, text_field: str) -> Iterator[str]:
    for lineno, line in decoded_lines(path, gzipped):
        if not line.strip():
            continue
        text = jsonl_text(line, text_field, f"corpus file {str(path)!r}, line {lineno}")
        if text.strip():
            yield text


def iter_file_documents(path: Path, text_field: str = "text") -> Iterator[str]:
    """Documents of one corpus file, in file order."""
    fmt, gzipped = file_format(path)
    if fmt == "jsonl":
        yield from _iter_jsonl_file(path, gzipped, text_field)
    else:
        yield from _iter_text_file(path, gzipped)


def iter_documents(path: str | Path, text_field: str = "text") -> Iterator[str]:
    """Stream the documents of a corpus file or folder (see the module docstring).

    A missing path raises at once; format errors raise when the reader reaches them,
    naming the file and line.
    """
    files = corpus_files(path)  # eager: a wrong path fails before any work starts
    if not text_field:
        raise CorpusError("text_field: must be a non-empty field name")
    return itertools.chain.from_iterable(iter_file_documents(f, text_field) for f in files)


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
        fmt, gzipped = file_format(path)
        digest.update(f"{fmt}{'+gzip' if gzipped else ''}\0".encode())
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
