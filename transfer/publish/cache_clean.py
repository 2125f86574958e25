"""Cleaning the stage cache: remove the folders no registered model was built from.

Every registered version names its stage folders (``vt.stage.*`` tags: the run's whole
lineage, ``transfer.engine.graph.StageGraph.lineage``: corpus, source, tokenizer, fastText
and align when the strategy uses vectors, init, final model, evaluations). Everything else
under ``<cache>/<stage>/<key>/`` can be rebuilt and is removed, except folders younger than
``min_age_s`` (a run in progress has not registered its stages yet) and half-written
temporary folders of running writers. A folder is renamed away before it is deleted, so a
reader never sees half a folder marked complete.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from transfer.errors import VocabTransferError

DEFAULT_MIN_AGE_S = 3600.0


class CacheGcError(VocabTransferError):
    """Cleaning the cache would remove what should not go."""


@dataclass(frozen=True)
class CacheEntry:
    stage: str
    key: str
    path: Path
    bytes: int
    age_s: float


@dataclass
class GcPlan:
    """What a clean would keep and remove."""

    root: Path
    keep: list[CacheEntry] = field(default_factory=list)
    remove: list[CacheEntry] = field(default_factory=list)
    too_young: list[CacheEntry] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(e.bytes for e in self.remove)


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def cache_entries(root: Path) -> list[CacheEntry]:
    """Every finished stage folder ``<root>/<stage>/<key>/`` (temporary folders skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time()
    entries = []
    for stage_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for folder in sorted(p for p in stage_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            entries.append(CacheEntry(stage_dir.name, folder.name, folder, _size(folder),
                                      now - folder.stat().st_mtime))
    return entries


def plan_gc(root: Path, needed: set[tuple[str, str]], *, min_age_s: float = DEFAULT_MIN_AGE_S) -> GcPlan:
    """Sort the cache's folders into keep (needed), remove, and too young to judge."""
    plan = GcPlan(Path(root))
    for entry in cache_entries(root):
        if (entry.stage, entry.key) in needed:
            plan.keep.append(entry)
        elif entry.age_s < min_age_s:
            plan.too_young.append(entry)
        else:
            plan.remove.append(entry)
    return plan


def apply_gc(plan: GcPlan) -> int:
    """Remove the plan's folders; returns how many were removed."""
    removed = 0
    for entry in plan.remove:
        trash = entry.path.with_name(f".trash-{entry.key}-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(entry.path, trash)  # atomic: readers see the folder whole or not at all
        except FileNotFoundError:
            continue  # removed by someone else meanwhile
        shutil.rmtree(trash, ignore_errors=True)
        removed += 1
    return removed


def clean_cache(
    root: Path,
    *,
    tracking_uri: str | None = None,
    artifacts_root: Path | str = "artifacts",
    prefix: str | None = None,
    min_age_s: float = DEFAULT_MIN_AGE_S,
    dry_run: bool = True,
) -> GcPlan:
    """Plan (and unless ``dry_run``, apply) a clean of ``root`` against the registry."""
    from transfer.publish.registry_store import Registry
    from transfer.settings.names import REGISTERED_MODEL_PREFIX

    registry = Registry(tracking_uri, artifacts_root=artifacts_root, prefix=prefix or REGISTERED_MODEL_PREFIX)
    needed = registry.needed_stage_keys()
    plan = plan_gc(root, needed, min_age_s=min_age_s)
    if not dry_run and not needed and plan.remove:
        # most likely the wrong registry: with nothing registered, everything would go
        raise CacheGcError(
            f"registry {registry.tracking_uri} has no registered models, so every cache folder "
            f"under {root} would be removed; refusing (check --tracking-uri, or delete the "
            "folder yourself)"
        )
    if not dry_run:
        apply_gc(plan)
    return plan
