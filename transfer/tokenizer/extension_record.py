"""The record of a vocabulary extension in the tokenizer stage's folder: ``extension.json``
says which ids are the source's (below ``first_new_id``) and which tokens were appended, so
the init stage keeps the source's rows for the former."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transfer.errors import VocabTransferError

EXTENSION_FILE = "extension.json"


def extension_report(family: str, first_new_id: int, new_tokens: tuple[str, ...]) -> dict[str, Any]:
    """What ``extension.json`` holds: the family, the first appended id, the new tokens."""
    return {"family": family, "first_new_id": first_new_id, "n_new": len(new_tokens),
            "new_tokens": list(new_tokens)}


def read_first_new_id(tokenizer_stage: Path) -> int | None:
    """The first appended id when the tokenizer stage extended the source, else None."""
    path = tokenizer_stage / EXTENSION_FILE
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("first_new_id")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VocabTransferError(f"{path}: first_new_id must be a positive integer, got {value!r}")
    return value
