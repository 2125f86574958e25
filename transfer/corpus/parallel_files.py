"""A user's parallel corpus (OPUS, NLLB, Europarl, ...) read as (source, target) sentence pairs.

Each entry of ``AdaptConfig.parallel_files`` is one corpus in one of three forms:

- a **TSV** file (``.tsv``, optionally ``.tsv.gz``): a pair per line, source sentence TAB
  target sentence, exactly two fields (no quoting);
- a **JSONL** file (``.jsonl``/``.json``, optionally gzipped): an object per line holding
  both sentences; the field names are ``parallel_fields`` (default: the two language
  codes, e.g. ``{"en": ..., "de": ...}``);
- a **Moses pair** of line-aligned plain-text files given by their common prefix ``P``:
  ``P.<source language>`` and ``P.<target language>``, as OPUS names them
  (``Europarl.de-en`` stands for ``Europarl.de-en.en`` and ``Europarl.de-en.de``).

Whitespace inside a sentence is normalized to single spaces (a tab or newline inside a
JSON string cannot break the pipeline's own TSV). Every line is checked as it is read:
undecodable UTF-8, a TSV line without exactly two fields, a JSON line without the fields,
an empty side, a line over ``max_chars`` characters and two Moses files of different
lengths are refused with a ``ParallelCorpusError`` naming the file and line.
``check_parallel_head`` runs those checks on the first lines and counts the Moses files'
lines, cheaply, before any stage runs; the corpus stage meets any later bad line while it
streams the whole corpus, before anything downstream reads it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from transfer.corpus.readers import decoded_lines, file_format
from transfer.errors import CorpusError, ParallelCorpusError

ParallelFormat = Literal["tsv", "jsonl", "moses"]

DEFAULT_MAX_CHARS = 10_000
HEAD_LINES = 1000  # lines checked up front by validation
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ParallelInput:
    """One parallel corpus, resolved: its form, its file(s) and (JSONL) its two fields."""

    entry: str
    format: ParallelFormat
    files: tuple[str, ...]
    fields: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ParallelInput:
        fields = tuple(data["fields"]) if data.get("fields") else None
        return cls(data["entry"], data["format"], tuple(data["files"]), fields)  # type: ignore[arg-type]


def resolve_parallel(entry: str | Path, source_language: str, target_language: str,
                     fields: Sequence[str] = ()) -> ParallelInput:
    """The form of one ``parallel_files`` entry (see the module docstring)."""
    path = Path(entry)
    if path.is_file():
        inner = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
        suffix = inner[-1] if inner else ""
        if suffix == ".tsv":
            return ParallelInput(str(entry), "tsv", (str(path),))
        if suffix in (".jsonl", ".json"):
            if fields and len(fields) != 2:
                raise ParallelCorpusError(f"parallel_fields: expected two field names, got {list(fields)}")
            pair = (fields[0], fields[1]) if fields else (source_language, target_language)
            return ParallelInput(str(entry), "jsonl", (str(path),), pair)
    if source_language == target_language:
        raise ParallelCorpusError(
            f"parallel file {str(entry)!r}: a Moses pair needs two languages, both are {source_language!r}")
    moses = (Path(f"{entry}.{source_language}"), Path(f"{entry}.{target_language}"))
    if all(p.is_file() for p in moses):
        return ParallelInput(str(entry), "moses", tuple(str(p) for p in moses))
    raise ParallelCorpusError(
        f"parallel file {str(entry)!r}: not a .tsv or .jsonl file, nor the prefix of a Moses pair "
        f"({moses[0]} and {moses[1]} "
        f"{'do not exist' if not any(p.is_file() for p in moses) else 'are not both there'})")


def parallel_content_hash(source: ParallelInput, cache_dir: str | Path | None = None) -> str:
    """sha256 over the form, fields and the content digest of every file (for cache keys;
    file digests through ``transfer.engine.file_identity``, remembered under ``cache_dir``)."""
    from transfer.engine.file_identity import file_identity

    digest = hashlib.sha256(json.dumps([source.format, source.fields]).encode())
    for path in source.files:
        digest.update(b"\0" + bytes.fromhex(file_identity(path, cache_dir)))
    return digest.hexdigest()


def _normalized(text: str) -> str:
    return " ".join(text.split())


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a file; undecodable UTF-8 becomes a ParallelCorpusError."""
    _, gzipped = file_format(Path(path))
    try:
        yield from decoded_lines(Path(path), gzipped)
    except ParallelCorpusError:
        raise
    except CorpusError as exc:
        raise ParallelCorpusError(f"parallel {exc}") from exc


def _raw_pairs(source: ParallelInput) -> Iterator[tuple[str, int, str, str]]:
    """(file, line, source side, target side) in file order, sides as written."""
    if source.format == "moses":
        src_path, tgt_path = source.files
        for src_row, tgt_row in itertools.zip_longest(_lines(src_path), _lines(tgt_path)):
            if src_row is None or tgt_row is None:
                longer, shorter = (tgt_path, src_path) if src_row is None else (src_path, tgt_path)
                line = (src_row or tgt_row)[0]
                raise ParallelCorpusError(
                    f"parallel file {longer!r}, line {line}: line-count mismatch, {shorter!r} has "
                    f"only {line - 1} lines (a Moses pair must be line-aligned)")
            yield src_path, src_row[0], src_row[1], tgt_row[1]
        return
    (path,) = source.files
    for lineno, line in _lines(path):
        where = f"parallel file {path!r}, line {lineno}"
        if source.format == "tsv":
            parts = line.split("\t")
            if len(parts) != 2:
                raise ParallelCorpusError(
                    f"{where}: expected 2 tab-separated fields (source, target), got {len(parts)}")
            yield path, lineno, parts[0], parts[1]
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParallelCorpusError(f"{where}: not valid JSON ({exc.msg}); expected one object per line") from exc
        assert source.fields is not None
        missing = [f for f in source.fields if not isinstance(record, dict) or f not in record]
        if missing:
            found = ", ".join(map(repr, record)) if isinstance(record, dict) else type(record).__name__
            raise ParallelCorpusError(
                f"{where}: no field {missing[0]!r} (found: {found}); name the two fields with parallel_fields")
        sides = [record[f] for f in source.fields]
        for name, side in zip(source.fields, sides):
            if not isinstance(side, str):
                raise ParallelCorpusError(f"{where}: field {name!r} must be a string, got {type(side).__name__}")
        yield path, lineno, sides[0], sides[1]


def iter_pairs(source: ParallelInput, *, max_chars: int = DEFAULT_MAX_CHARS) -> Iterator[tuple[str, str]]:
    """Every (source, target) pair of the corpus, normalized and checked line by line."""
    n = 0
    for path, lineno, src, tgt in _raw_pairs(source):
        for side, text in (("source", src), ("target", tgt)):
            where = f"parallel file {path!r}, line {lineno}"
            if len(text) > max_chars:
                raise ParallelCorpusError(
                    f"{where}: the {side} side has {len(text)} characters, over the limit of {max_chars} "
                    f"(parallel_max_line_chars); is the file line-aligned?")
            if not text.strip():
                raise ParallelCorpusError(f"{where}: the {side} side is empty")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ParallelCorpusError(f"{where}: the {side} side is not encodable text ({exc})") from exc
        n += 1
        yield _normalized(src), _normalized(tgt)
    if n == 0:
        raise ParallelCorpusError(f"parallel file {source.files[0]!r}: empty, no sentence pairs")


def count_lines(path: str | Path) -> int:
    """Lines of a plain file (a last line without a line end counts), read in binary chunks."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def check_parallel_head(source: ParallelInput, *, max_chars: int = DEFAULT_MAX_CHARS,
                        head: int = HEAD_LINES) -> None:
    """The checks of :func:`iter_pairs` on the first ``head`` pairs, and (Moses) the line
    counts of both files: what validation can afford before any stage runs."""
    if source.format == "moses" and not any(f.endswith(".gz") for f in source.files):
        src_path, tgt_path = source.files
        n_src, n_tgt = count_lines(src_path), count_lines(tgt_path)
        if n_src != n_tgt:
            longer, shorter = (src_path, tgt_path) if n_src > n_tgt else (tgt_path, src_path)
            raise ParallelCorpusError(
                f"parallel file {longer!r}, line {min(n_src, n_tgt) + 1}: line-count mismatch, {longer!r} has "
                f"{max(n_src, n_tgt)} lines and {shorter!r} {min(n_src, n_tgt)} (a Moses pair must be line-aligned)")
    for _ in itertools.islice(iter_pairs(source, max_chars=max_chars), head):
        pass
