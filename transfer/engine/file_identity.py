"""Content identity of a user's (possibly huge) input file, computed once per version.

A stage key must change when an input file's bytes change, so it holds the file's sha256.
Hashing a 7 GB fastText model takes about a minute, and a run builds its specs several
times (plan, walk, record) and again on every later run; so the digest is remembered by
(resolved path, size, mtime): in the process, and in a small JSON file under the cache
folder (``file_identity.json``) across runs. An edited or replaced file has another size
or mtime and is hashed again.
"""

from __future__ import annotations

import json
from pathlib import Path

from transfer.engine.cache import atomic_write, file_sha256

IDENTITY_FILE = "file_identity.json"
_MEMO: dict[tuple[str, int, int], str] = {}


def _stamp(path: Path) -> tuple[str, int, int]:
    resolved = path.resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_size, stat.st_mtime_ns


def _read_table(table: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(table.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: a cache only, rebuilt as files are hashed
    return data if isinstance(data, dict) else {}


def file_identity(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """sha256 of ``path``'s bytes, remembered by (path, size, mtime) in this process and,
    with ``cache_dir``, in ``<cache_dir>/file_identity.json`` for later runs."""
    stamp = _stamp(Path(path))
    if stamp in _MEMO:
        return _MEMO[stamp]
    table_path = Path(cache_dir) / IDENTITY_FILE if cache_dir is not None else None
    table = _read_table(table_path) if table_path is not None else {}
    entry = table.get(stamp[0])
    if isinstance(entry, dict) and entry.get("size") == stamp[1] and entry.get("mtime_ns") == stamp[2]:
        digest = str(entry["sha256"])
    else:
        digest = file_sha256(Path(stamp[0]))
        if table_path is not None:
            # re-read just before writing: another run may have added entries meanwhile
            table = _read_table(table_path)
            table[stamp[0]] = {"size": stamp[1], "mtime_ns": stamp[2], "sha256": digest}
            try:
                atomic_write(table_path, json.dumps(table, indent=1, sort_keys=True) + "\n")
            except OSError:
                pass  # a read-only cache folder only costs hashing again next run
    _MEMO[stamp] = digest
    return digest


__all__ = ["IDENTITY_FILE", "file_identity"]
