"""One caching mechanism for every stage: content-addressed folders.

Each stage writes into ``<root>/<stage>/<key>/`` where the key hashes the stage name, its
parameters, the keys/content hashes of its inputs and the version of our code (package
version plus a hash of the ``transfer/`` and ``tokenizer_builds/`` sources). A stage is
written into a temporary sibling folder and renamed when complete, so a crash never
leaves a half entry. The Prefect tasks use the same key, and plain library calls reuse
the same folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from transfer import __version__

DEFAULT_ROOT = Path(os.environ.get("VOCAB_TRANSFER_CACHE", "artifacts/cache"))
_COMPLETE_MARKER = ".complete"
_SOURCE_PACKAGES = ("transfer", "tokenizer_builds")


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus a hash of the library sources, so code changes miss the cache."""
    digest = hashlib.sha256()
    repo_root = Path(__file__).resolve().parent.parent
    for package in _SOURCE_PACKAGES:
        for path in sorted((repo_root / package).rglob("*.py")):
            digest.update(str(path.relative_to(repo_root)).encode())
            digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def _canonical(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(value, "model_dump"):
        return _canonical(value.model_dump(mode="json"))
    return value


def stage_key(stage: str, params: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """Deterministic key of a stage run: stage, parameters, input hashes, code version."""
    payload = json.dumps(
        {"stage": stage, "params": _canonical(params), "inputs": _canonical(inputs),
         "code": code_version()},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Content hash of one file (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StageOutput:
    """A finished stage folder; its key doubles as its content hash for downstream stages."""

    stage: str
    key: str
    path: Path

    def file(self, name: str) -> Path:
        return self.path / name


class StageCache:
    """Content-addressed stage folders under one root."""

    def __init__(self, root: Path | str = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def is_complete(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / _COMPLETE_MARKER).exists()

    def get(self, stage: str, key: str) -> StageOutput | None:
        if self.is_complete(stage, key):
            return StageOutput(stage, key, self.path(stage, key))
        return None

    @contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a temporary folder; on success it becomes the stage folder atomically."""
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=final.parent))
        try:
            yield tmp
            (tmp / _COMPLETE_MARKER).write_text(code_version())
            if final.exists():  # a concurrent writer finished first; keep theirs
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def run(self, stage: str, key: str, build: Callable[[Path], None]) -> tuple[StageOutput, bool]:
        """Return the cached folder, or build it. The bool says whether it was cached."""
        cached = self.get(stage, key)
        if cached is not None:
            return cached, True
        with self.writing(stage, key) as tmp:
            build(tmp)
        return StageOutput(stage, key, self.path(stage, key)), False


def atomic_write(path: Path | str, data: str | bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so readers (and a crash) see the old file or the new one, never half of one. ``fsync``
    forces it to disk first (for files a resume relies on)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
