"""One caching mechanism for every stage: content-addressed folders.

Each stage writes into ``<root>/<stage>/<key>/`` where the key hashes the stage name, its
parameters, the keys/content hashes of its inputs and the version of the code that stage
runs (``transfer.engine.code_version.stage_code_version``: package version plus a hash of the
modules its builder imports, so editing unrelated code keeps the cache). A stage is
written into a temporary sibling folder and renamed when complete
(``replacing_directory``, the one helper every folder written whole uses), so a crash
never leaves a half entry. The Prefect tasks use the same key, and plain library calls
reuse the same folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.engine.code_version import stage_code_version

DEFAULT_ROOT = Path(os.environ.get("VOCAB_TRANSFER_CACHE", "artifacts/cache"))
_COMPLETE_MARKER = ".complete"


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
    """Deterministic key of a stage run: stage, parameters, input hashes, and the version
    of the code that stage runs."""
    payload = json.dumps(
        {"stage": stage, "params": _canonical(params), "inputs": _canonical(inputs),
         "code": stage_code_version(stage)},
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
        """Yield a temporary folder; on success it becomes the stage folder atomically (a
        concurrent writer that finished first wins: same key, same content)."""
        with replacing_directory(self.path(stage, key), keep_existing=True) as tmp:
            yield tmp
            (tmp / _COMPLETE_MARKER).write_text(stage_code_version(stage))

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


@contextmanager
def replacing_directory(final: Path | str, *, keep_existing: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``final`` to fill; when the block succeeds it
    takes ``final``'s place by a rename, so readers see the old folder or the new one,
    never half of one; when the block fails it is removed and ``final`` is untouched.

    The temporary folder is made with ``mkdir`` (mode from the umask), not ``mkdtemp``,
    whose 0700 would stick to the final folder. A folder cannot replace a non-empty one in
    one rename, so an old ``final`` is moved aside first and removed after the swap.
    ``keep_existing``: a ``final`` that exists by then (a concurrent writer of the same
    content finished first) is kept and ours dropped, as the stage cache wants."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:12]}")
    tmp.mkdir()
    try:
        yield tmp
        _swap_in(tmp, final, keep_existing=keep_existing)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, final: Path, *, keep_existing: bool) -> None:
    if keep_existing:
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # theirs is complete; ours is the same
        return
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None and not final.exists():
            os.replace(old, final)  # put the old copy back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
