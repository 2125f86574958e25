"""The user's evaluation texts for ``vocab-transfer evaluate``: one text per line of a
UTF-8 file (optionally gzipped), or one JSON object per line; streamed and capped, so a
file of many GB is read only as far as the sample it gives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from transfer.corpus.readers import decoded_lines, file_format
from transfer.errors import CorpusError

#: Texts read when no cap is given: every text of an ordinary file, the first ones of a
#: huge file (scoring costs grow with the texts; 10,000 lines measure BPB to ~3 decimals).
DEFAULT_MAX_TEXTS = 10_000


@dataclass(frozen=True)
class TextSample:
    """The texts read and whether the file held more than were read."""

    path: Path
    texts: list[str]
    truncated: bool


def _json_text(line: str, where: str, text_field: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: not valid JSON ({exc.msg}); expected one object per line") from exc
    if not isinstance(record, dict) or text_field not in record:
        fields = ", ".join(map(repr, record)) if isinstance(record, dict) else type(record).__name__
        raise CorpusError(f"{where}: no field {text_field!r} (got {fields}); name it with --text-field")
    text = record[text_field]
    if not isinstance(text, str):
        raise CorpusError(f"{where}: field {text_field!r} must be a string, got {type(text).__name__}")
    return text


def _texts(path: Path, jsonl: bool, text_field: str) -> Iterator[str]:
    _, gzipped = file_format(path)
    for lineno, line in decoded_lines(path, gzipped):  # names file and line on bad UTF-8
        if not line.strip():
            continue
        text = _json_text(line, f"text file {str(path)!r}, line {lineno}", text_field) if jsonl else line
        if text.strip():
            yield text


def read_eval_texts(
    path: str | Path,
    *,
    jsonl: bool | None = None,
    text_field: str = "text",
    max_texts: int | None = None,
) -> TextSample:
    """The first ``max_texts`` non-empty texts of ``path`` (default
    :data:`DEFAULT_MAX_TEXTS`). ``jsonl=None`` decides by suffix (``.jsonl``/``.json``,
    optionally ``.gz``). Raises ``CorpusError`` naming the file for a missing file, bad
    UTF-8 (with the line), bad JSON lines, or a file without texts."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"text file {str(path)!r} does not exist" if not path.exists()
                          else f"text file {str(path)!r} is not a file")
    limit = DEFAULT_MAX_TEXTS if max_texts is None else max_texts
    if limit < 1:
        raise CorpusError(f"max_texts must be >= 1, got {limit}")
    if jsonl is None:
        jsonl = file_format(path)[0] == "jsonl"
    texts: list[str] = []
    truncated = False
    for text in _texts(path, jsonl, text_field):
        if len(texts) == limit:
            truncated = True
            break
        texts.append(text)
    if not texts:
        raise CorpusError(f"text file {str(path)!r} has no texts (every line is empty)")
    return TextSample(path, texts, truncated)
