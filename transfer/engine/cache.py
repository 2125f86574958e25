"""One caching mechanism for every stage: content-addressed folders.

Each stage writes into ``<root>/<stage>/<key>/`` where the key hashes the stage name, its
parameters, the keys/content hashes of its inputs and the version of the code that stage
runs (``transfer.engine.code_version.stage_code_version``: package version plus a hash of the
modules its builder imports, so editing unrelated code keeps the cache). A stage is
written into a temporary sibling folder and renamed when complete
(``replacing_directory``, the one helper every folder written whole uses), so a crash
never leaves a half entry. The Prefect tasks use the same key, and plain library calls
reuse the same folders.

Crashes and concurrency: a writer holds a file lock per stage key
(``<root>/.locks/<stage>/<key>.lock``, released by the kernel when a process dies, even
by SIGKILL) while it builds, so two runs of the same stage at once build it once: the
second waits and then finds the entry complete. Under that lock the temporary folders
left by killed writers of the same key are removed; ``replacing_directory`` also removes
its own temporary siblings whose writer process is gone. A full disk while a folder is
written raises ``DiskFullError`` naming the folder, and leaves no partial copy.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.engine.code_version import stage_code_version
from transfer.errors import VocabTransferError


def default_cache_root() -> Path:
    """The stage cache folder when none is given: ``$VOCAB_TRANSFER_CACHE``, else
    ``artifacts/cache``; read when asked, so ``adapt`` and ``cache clean`` agree."""
    return Path(os.environ.get("VOCAB_TRANSFER_CACHE", "artifacts/cache"))


_COMPLETE_MARKER = ".complete"
_LOCKS = ".locks"
_log = logging.getLogger(__name__)


class DiskFullError(VocabTransferError):
    """The disk filled up while a folder was written: nothing was kept of it (a resource
    fault, not bad input; a ``VocabTransferError`` so the CLI prints it as one line)."""


# what a full disk looks like in errors that carry no errno (Rust writers, numpy's tofile)
_FULL_DISK_TEXT = ("No space left on device", "os error 28", "Disk quota exceeded", "StorageFull")
_NEARLY_FULL = 1 << 20  # bytes: a bare OSError with less free space than this is a full disk


def free_bytes(folder: Path) -> int:
    """Free bytes for an unprivileged writer on ``folder``'s filesystem."""
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def _is_disk_full(error: BaseException, folder: Path) -> bool:
    """Whether ``error`` (or what caused it) is the disk running full under ``folder``."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(seen) for text in _FULL_DISK_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, OSError) and error.errno is None:
        try:
            return free_bytes(folder) < _NEARLY_FULL
        except OSError:
            return False
    return False


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

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def is_complete(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / _COMPLETE_MARKER).exists()

    def get(self, stage: str, key: str) -> StageOutput | None:
        if self.is_complete(stage, key):
            return StageOutput(stage, key, self.path(stage, key))
        return None

    @contextmanager
    def locked(self, stage: str, key: str) -> Iterator[None]:
        """Hold the lock of one stage key (blocking; a holder that dies releases it)."""
        lock = self.root / _LOCKS / stage / f"{key}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _log.info("stage %s %s: another process is building it; waiting", stage, key)
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError as error:  # a filesystem without locks (some network mounts)
                _log.warning("stage %s %s: cannot lock %s (%s); building without the lock: "
                             "a concurrent run may build it too", stage, key, lock, error)
                yield
                return
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a temporary folder; on success it becomes the stage folder atomically.
        Call it under ``locked(stage, key)`` (as ``run`` does): temporary folders of the
        same key left by killed writers are removed first."""
        final = self.path(stage, key)
        for stale in _temp_siblings(final):  # ours to remove: we hold the key's lock
            shutil.rmtree(stale, ignore_errors=True)
        _remove_orphans(final.parent)
        with replacing_directory(final, keep_existing=True) as tmp:
            yield tmp
            (tmp / _COMPLETE_MARKER).write_text(stage_code_version(stage))

    def run(self, stage: str, key: str, build: Callable[[Path], None]) -> tuple[StageOutput, bool]:
        """Return the cached folder, or build it. The bool says whether it was cached (a
        concurrent run that built it while this one waited for the key's lock counts)."""
        cached = self.get(stage, key)
        if cached is not None:
            return cached, True
        with self.locked(stage, key):
            cached = self.get(stage, key)
            if cached is not None:
                return cached, True
            with self.writing(stage, key) as tmp:
                build(tmp)
        return StageOutput(stage, key, self.path(stage, key)), False


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_siblings(final: Path) -> list[Path]:
    """The temporary and set-aside copies of ``final`` (``.<name>.tmp-*``, ``.<name>.old-*``)."""
    if not final.parent.is_dir():
        return []
    return [p for p in final.parent.iterdir()
            if p.name.startswith((f".{final.name}.tmp-", f".{final.name}.old-"))]


def _writer_gone(sibling: Path) -> bool:
    """Whether the process that made this temporary sibling no longer runs. Its name holds
    the writer's host and pid (``.<name>.tmp-<host>-<pid>-<random>``); only a writer on this
    host can be checked, and a name without them (older code) is left alone."""
    parts = sibling.name.rsplit("-", 3)
    if len(parts) != 4 or parts[1] != _HOST or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _remove_orphans(folder: Path) -> None:
    """Remove the temporary folders and files in ``folder`` whose writer was killed, whatever
    they were for (a killed run's stage whose key has changed since is never rebuilt)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(".") and (".tmp-" in path.name or ".old-" in path.name) \
                and _writer_gone(path):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _sibling(final: Path, kind: str) -> Path:
    return final.with_name(f".{final.name}.{kind}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}")


def atomic_write(path: Path | str, data: str | bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so readers (and a crash) see the old file or the new one, never half of one. ``fsync``
    forces it to disk first (for files a resume relies on)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _temp_siblings(path):  # left by a writer killed mid-write
        if _writer_gone(stale):
            Path(stale).unlink(missing_ok=True)
    tmp = _sibling(path, "tmp")
    # os.open with 0o666, not mkstemp: mkstemp's file is 0600 whatever the umask, so results,
    # curves and model files would be unreadable to the rest of a team sharing the cache
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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


def _readable_as_the_umask_allows(folder: Path) -> None:
    """Give every file in ``folder`` the read bits the umask allows (those of ``folder``
    itself, made by ``mkdir``): libraries write some files 0600 (transformers' and
    safetensors' ``model.safetensors``), which would keep a shared model or cache from
    the rest of a team."""
    readable = folder.stat().st_mode & 0o444
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            mode = path.stat().st_mode & 0o7777
            if mode & readable != readable:
                path.chmod(mode | readable)


@contextmanager
def replacing_directory(final: Path | str, *, keep_existing: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``final`` to fill; when the block succeeds it
    takes ``final``'s place by a rename, so readers see the old folder or the new one,
    never half of one; when the block fails it is removed and ``final`` is untouched.

    The temporary folder is made with ``mkdir`` (mode from the umask), not ``mkdtemp``,
    whose 0700 would stick to the final folder. A folder cannot replace a non-empty one in
    one rename, so an old ``final`` is moved aside first and removed after the swap; when
    another writer puts its copy there in between, the swap is tried again (the last
    writer wins). ``keep_existing``: a ``final`` that exists by then (a concurrent writer
    of the same content finished first) is kept and ours dropped, as the stage cache wants.
    Temporary siblings left by a writer that was killed (SIGKILL skips every clean-up) are
    removed first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in _temp_siblings(final):
        if _writer_gone(stale):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = _sibling(final, "tmp")
    try:
        tmp.mkdir()
    except OSError as error:
        if _is_disk_full(error, final.parent):
            raise _disk_full_error(final, error) from error
        raise
    try:
        yield tmp
        _readable_as_the_umask_allows(tmp)
        _swap_in(tmp, final, keep_existing=keep_existing)
    except Exception as error:
        full = _is_disk_full(error, final.parent) and not isinstance(error, DiskFullError)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise _disk_full_error(final, error) from error
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _disk_full_error(final: Path, error: BaseException) -> DiskFullError:
    try:
        free = f"{free_bytes(final.parent) / (1 << 20):.1f} MiB free now"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        f"the disk filled up while writing {final} ({type(error).__name__}: {error}); its "
        f"partial copy was removed and nothing of it was kept ({free}). Free some space on "
        f"that disk (or set cache_dir / output_dir to a larger one) and run again: finished "
        f"stages are reused."
    )


def _occupied(error: OSError) -> bool:
    """A rename refused because the destination is a non-empty folder."""
    return error.errno in (errno.ENOTEMPTY, errno.EEXIST)


def _swap_in(tmp: Path, final: Path, *, keep_existing: bool, attempts: int = 20) -> None:
    if keep_existing:
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # theirs is complete; ours is the same
        return
    for attempt in range(attempts):
        old = None
        if final.exists():
            old = _sibling(final, "old")
            try:
                os.replace(final, old)
            except FileNotFoundError:  # another writer moved it aside first
                old = None
        try:
            os.replace(tmp, final)
        except OSError as error:
            if old is not None and not final.exists():
                os.replace(old, final)  # put the old copy back
            elif old is not None:
                shutil.rmtree(old, ignore_errors=True)
            if _occupied(error) and attempt + 1 < attempts:
                continue  # a concurrent writer renamed its copy in between: set it aside too
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return
