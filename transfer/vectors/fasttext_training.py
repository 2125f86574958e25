"""Training fastText (Bojanowski et al., 2017, skip-gram or CBOW with subword n-grams).

Each training runs in a child process (see :func:`train_fasttext` for why) and saves its
vectors as a compact folder (:mod:`transfer.vectors.compact_vectors`); the training text
is written with :func:`~transfer.vectors.static_vectors.tokenize_words`, so training,
word alignment and dictionary lookups agree on what a word is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from transfer.errors import VectorsError
from transfer.vectors.compact_vectors import load_compact, save_vectors
from transfer.vectors.static_vectors import StaticVectors, tokenize_words
from transfer.vectors.vector_formats import from_fasttext_model


def _train_model(corpus_path: Path, settings: dict[str, Any]) -> Any:
    # The public train_unsupervised() does not accept `seed`; build its args the same way
    # through the package's own helpers so the seed reaches the C++ trainer.
    from fasttext import FastText as ft

    args = dict(ft.unsupervised_default)
    args.update(settings, input=str(corpus_path), verbose=0)
    built = ft._build_args(args, set(settings) | {"input"})
    model = ft._FastText(args=built)
    ft.fasttext.train(model.f, built)
    model.set_args(model.f.getArgs())
    return model


def train_fasttext(
    corpus_path: Path,
    out_dir: Path,
    *,
    model: Literal["skipgram", "cbow"] = "skipgram",
    dim: int = 100,
    epoch: int = 5,
    min_count: int = 3,
    threads: int = 1,
    seed: int = 0,
    minn: int = 3,
    maxn: int = 6,
    bucket: int = 200_000,
    lr: float = 0.05,
    ws: int = 5,
    neg: int = 5,
    lowercase: bool = False,
) -> Path:
    """Train fastText on a whitespace-tokenized text file (one sentence per line) and save
    it compactly (:func:`save_vectors`) to ``out_dir``; returns ``out_dir``.

    ``bucket`` is smaller than fastText's 2M default: a Bible-sized corpus has far fewer
    distinct n-grams, and it keeps training memory at ``bucket x dim`` floats. Results are
    reproducible only with ``threads=1``. ``lowercase`` records that the
    corpus was lowercased, so lookups lowercase too."""
    corpus_path = Path(corpus_path)
    if model not in ("skipgram", "cbow"):
        raise VectorsError(f"fastText model {model!r}: expected 'skipgram' or 'cbow'")
    if not corpus_path.is_file() or corpus_path.stat().st_size == 0:
        raise VectorsError(f"{corpus_path}: fastText training corpus is missing or empty")
    for name, value in (("dim", dim), ("epoch", epoch), ("min_count", min_count), ("threads", threads)):
        if value < 1:
            raise VectorsError(f"fastText parameter {name}={value} must be at least 1")
    if maxn and minn > maxn:
        raise VectorsError(f"fastText n-gram lengths minn={minn} > maxn={maxn}")
    settings = {"model": model, "dim": dim, "epoch": epoch, "minCount": min_count, "thread": threads,
                "seed": seed, "minn": minn, "maxn": maxn, "bucket": bucket, "lr": lr, "ws": ws, "neg": neg}
    # fastText (0.9.x) initializes only the first `thread`/10 of its input matrix and
    # leaves the rest as the allocator hands it over: zeros from a fresh process, leftovers
    # of an earlier model (-> NaN, non-reproducible) within one. A child process per
    # training gets fresh zeroed pages, so runs are reproducible and never inherit garbage.
    payload = json.dumps({"corpus": str(corpus_path), "out": str(Path(out_dir).resolve()),
                          "settings": settings, "lowercase": lowercase})
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run([sys.executable, "-c", _CHILD, payload], check=False, capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise VectorsError(f"{corpus_path}: fastText training failed: {reason}")
    return Path(out_dir)


_CHILD = "import sys; from transfer.vectors.fasttext_training import _train_child; _train_child(sys.argv[1])"


def _train_child(payload: str) -> None:
    job = json.loads(payload)
    corpus_path, settings = Path(job["corpus"]), job["settings"]
    try:
        trained = _train_model(corpus_path, settings)
    except RuntimeError as exc:
        raise SystemExit(
            f"{exc} On a tiny corpus or with few buckets (bucket={settings['bucket']}) "
            f"try more text, a larger bucket or a lower lr."
        ) from exc
    vectors = from_fasttext_model(trained, str(corpus_path))
    if not len(vectors):
        raise SystemExit(f"no word reaches min_count={settings['minCount']}")
    if not np.all(np.isfinite(vectors.matrix)):
        raise SystemExit("fastText diverged (NaN vectors); lower lr or raise bucket")
    vectors.lowercase = bool(job["lowercase"])
    vectors.meta = {**vectors.meta, **settings, "lowercase": vectors.lowercase}
    save_vectors(vectors, Path(job["out"]))


def load_trained(folder: Path | str) -> StaticVectors:
    """Load what :func:`train_fasttext` saved."""
    return load_compact(Path(folder))


def write_training_text(lines: Iterable[str], path: Path, *, lowercase: bool = False) -> dict[str, int]:
    """Write ``lines`` tokenized with :func:`tokenize_words` (one per line) for fastText
    and eflomal; returns line and token counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n_lines = n_tokens = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for line in lines:
            words = tokenize_words(line, lowercase=lowercase)
            if words:
                handle.write(" ".join(words) + "\n")
                n_lines += 1
                n_tokens += len(words)
    os.replace(tmp, path)
    return {"lines": n_lines, "tokens": n_tokens}
