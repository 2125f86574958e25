"""Our own vector storage, the compact folder: safetensors + ``words.txt`` + JSON metadata.

The folder keeps the word matrix plus only the fastText n-gram buckets (Bojanowski et al.,
2017) that training could touch (the n-grams of the vocabulary's words; every other bucket
is still at its random initialization), so a Bible-sized model takes a few MB instead of
``bucket x dim`` floats. The transformations already applied (``StaticVectors.ops``) are
stored too, so n-gram compositions after loading land in the same space.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from transfer.engine.cache import replacing_directory
from transfer.errors import VectorsError
from transfer.vectors.static_vectors import NgramTable, StaticVectors

COMPACT_META = "static_vectors.json"


def save_vectors(vectors: StaticVectors, folder: Path, *, keep_ngrams_for: Iterable[str] | None = None) -> Path:
    """Write ``vectors`` into ``folder`` atomically (temporary sibling, then rename).

    The n-gram table is restricted to the buckets of ``keep_ngrams_for`` (default: the
    vocabulary), which are the only buckets fastText training updates."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    if any("\n" in w or "\r" in w for w in vectors.words):
        raise VectorsError(f"{vectors.source}: a word contains a line break; cannot store it")
    with replacing_directory(folder) as tmp:
        (tmp / "words.txt").write_text("".join(w + "\n" for w in vectors.words), encoding="utf-8")
        tensors: dict[str, np.ndarray] = {"matrix": vectors.matrix}
        meta: dict[str, Any] = {"format": "vocab-transfer static vectors", "version": 1,
                                "words": len(vectors.words), "dim": vectors.dim,
                                "lowercase": vectors.lowercase, "source": vectors.source,
                                "meta": vectors.meta, "ops": []}
        if vectors.ngrams is not None:
            table = vectors.ngrams.restricted_to(keep_ngrams_for if keep_ngrams_for is not None else vectors.words)
            tensors["ngram_ids"] = table.ids
            tensors["ngram_rows"] = table.rows
            meta["ngrams"] = {"minn": table.minn, "maxn": table.maxn, "bucket": table.bucket,
                              "stored_buckets": len(table.ids)}
        for i, (name, arg) in enumerate(vectors.ops):
            entry: dict[str, Any] = {"op": name}
            if arg is not None:
                entry["tensor"] = f"op{i}"
                tensors[f"op{i}"] = np.ascontiguousarray(arg, dtype=np.float32)
            meta["ops"].append(entry)
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "vectors.safetensors"))
        (tmp / COMPACT_META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return folder


def load_compact(folder: Path) -> StaticVectors:
    """Read a folder written by :func:`save_vectors`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / COMPACT_META).read_text())
        tensors = load_file(str(folder / "vectors.safetensors"))
        words = (folder / "words.txt").read_text(encoding="utf-8").split("\n")[:-1]
    except (OSError, json.JSONDecodeError, SafetensorError, UnicodeDecodeError) as exc:
        raise VectorsError(f"{folder}: not a readable compact vector folder ({exc})") from exc
    if len(words) != meta.get("words") or tensors["matrix"].shape != (meta["words"], meta["dim"]):
        raise VectorsError(f"{folder}: {len(words)} words and matrix {tensors['matrix'].shape} "
                           f"disagree with {COMPACT_META} ({meta.get('words')} x {meta.get('dim')})")
    ngrams = None
    if "ngrams" in meta:
        ng = meta["ngrams"]
        ngrams = NgramTable(ng["minn"], ng["maxn"], ng["bucket"], tensors["ngram_rows"], tensors["ngram_ids"])
    ops = tuple((o["op"], tensors[o["tensor"]] if "tensor" in o else None) for o in meta["ops"])
    return StaticVectors(words, tensors["matrix"], ngrams, ops, meta.get("source") or str(folder),
                         bool(meta.get("lowercase")), meta.get("meta", {}))
