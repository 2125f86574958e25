"""Helpers of the bad-input tests: refuse, check that nothing was written, record the time.

``refused(case, surface, call, pattern, artifacts)`` runs ``call``, expects an error whose
message matches ``pattern``, checks that ``artifacts`` (the run's cache and output folders)
is byte-for-byte unchanged, and, when ``BAD_INPUTS_JSON`` names a file, appends the case,
the surface that refused it, the message and the seconds to refusal there
(``benchmarks/bad_inputs.py`` turns that file into ``docs/bad_inputs.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

RECORD_ENV = "BAD_INPUTS_JSON"


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (and "dir" for every folder) under ``folder``."""
    if not folder.exists():
        return {}
    state: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        state[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def make_artifacts(root: Path) -> Path:
    """An ``artifacts/`` folder with a cache and a models folder, each holding a file, so
    that "unchanged" also means nothing was removed."""
    artifacts = root / "artifacts"
    for sub in ("cache", "models"):
        (artifacts / sub).mkdir(parents=True, exist_ok=True)
        (artifacts / sub / "existing.txt").write_text(f"{sub} before the run\n")
    return artifacts


def record(case: str, surface: str, message: str, seconds: float) -> None:
    target = os.environ.get(RECORD_ENV)
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(path.read_text()) if path.is_file() else []
    rows = [row for row in rows if row["case"] != case]
    rows.append({"case": case, "surface": surface, "message": message, "seconds": round(seconds, 3)})
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")


def refused(case: str, surface: str, call: Callable[[], object], pattern: str, artifacts: Path,
            error: type[BaseException] | tuple[type[BaseException], ...] = ValueError) -> str:
    """Run ``call``; it must raise ``error`` matching ``pattern`` and leave ``artifacts`` as it
    was. Returns the message."""
    before = snapshot(artifacts)
    started = time.perf_counter()
    with pytest.raises(error) as caught:
        call()
    seconds = time.perf_counter() - started
    message = str(caught.value)
    assert re.search(pattern, message, re.DOTALL), f"{case}: {message!r} does not match {pattern!r}"
    assert snapshot(artifacts) == before, f"{case}: artifacts/ changed"
    # the test's temporary folder says nothing about the refusal: shorten it for the table
    record(case, surface, short_message(message).replace(str(artifacts.parent), "<tmp>"), seconds)
    return message


def short_message(message: str) -> str:
    """One line: a pydantic error's field and text, without its type and link lines."""
    if "validation error" not in message.splitlines()[0]:
        return " ".join(message.split())
    lines = [line.strip() for line in message.splitlines()[1:]
             if line.strip() and not line.strip().startswith("For further information")]
    text = " ".join(lines)
    return re.sub(r"\s*\[type=[^\]]*\]", "", text)
