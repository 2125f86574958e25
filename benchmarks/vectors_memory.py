"""Peak memory of loading a large fastText ``.bin`` (issue #13, item 1: hold the matrix once).

No multi-GB pretrained model ships offline, so one is made: fastText trained on the KJV's
train verses with many buckets (default ``bucket=2_000_000, dim=300``: a 2.4 GB input
matrix, the size of cc.xx.300.bin's n-gram half). Each variant then runs in a fresh child
process and reports its ``ru_maxrss`` (peak resident memory) and seconds:

- ``fasttext.load_model``: the fastText package alone (its C++ input and output matrices),
  the floor any reader through the package pays;
- ``load before``: the loader as it was (``get_input_matrix()`` copies the whole input
  matrix; the word rows gathered in a list, then ``np.stack``);
- ``load after``: :func:`transfer.vectors.vector_formats.load_fasttext_bin` now (a view of
  fastText's matrix; word rows written into one preallocated matrix);
- ``stage before`` / ``stage after``: load and store compactly, as the
  ``pretrained_vectors`` stage does (``save_vectors``: word matrix + the buckets the
  vocabulary uses).

    flock /tmp/vocab-transfer-heavy.lock .venv/bin/python benchmarks/vectors_memory.py
    .venv/bin/python benchmarks/vectors_memory.py --bucket 1000000 --dim 100   # smaller
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("fasttext.load_model", "load before", "load after", "stage before", "stage after")


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _make_bin(out: Path, bucket: int, dim: int, epoch: int) -> dict[str, Any]:
    """fastText on the KJV train verses with ``bucket`` buckets, saved as a .bin (in a child
    process: fastText's matrix is only zero in fresh memory)."""
    from transfer.corpus.bible import read_texts
    from transfer.vectors.fasttext_training import write_training_text

    text = out.with_suffix(".txt")
    counts = write_training_text(read_texts("k", "train"), text)
    args = {"dim": dim, "epoch": epoch, "minCount": 2, "bucket": bucket, "thread": 1, "seed": 0}
    job = json.dumps({"text": str(text), "out": str(out), "args": args})
    code = ("import json, sys, pathlib; from transfer.vectors.fasttext_training import _train_model; "
            "j = json.loads(sys.argv[1]); _train_model(pathlib.Path(j['text']), j['args']).save_model(j['out'])")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, job], check=True, cwd=ROOT)
    text.unlink()
    return {"train_seconds": round(time.perf_counter() - started, 1), "corpus": counts, **args,
            "bin_mb": round(out.stat().st_size / 2**20, 1)}


def _load_before(path: Path) -> Any:
    """The loader before this change (``_from_fasttext_model`` as it was), verbatim."""
    import fasttext
    import numpy as np

    from transfer.vectors.static_vectors import NgramTable, StaticVectors

    model = fasttext.load_model(str(path))
    args = model.f.getArgs()
    words = list(model.get_words(on_unicode_error="strict"))
    full = np.asarray(model.get_input_matrix(), dtype=np.float32)
    nwords = len(words)
    ngrams = NgramTable(args.minn, args.maxn, args.bucket, full[nwords:]) if args.maxn > 0 else None
    matrix = np.stack([model.get_word_vector(w) for w in words])
    meta = {"minn": args.minn, "maxn": args.maxn, "bucket": args.bucket, "dim": args.dim}
    return StaticVectors(words, matrix, ngrams, (), str(path), False, meta)


def _child(variant: str, path: Path) -> None:
    import fasttext  # noqa: F401  (imported before the baseline, as every variant needs it)
    import numpy  # noqa: F401

    from transfer.vectors.compact_vectors import save_vectors
    from transfer.vectors.vector_formats import load_fasttext_bin

    baseline = _peak_mb()
    started = time.perf_counter()
    if variant == "fasttext.load_model":
        import fasttext as ft

        model = ft.load_model(str(path))
        words = len(model.get_words())
    else:
        vectors = (_load_before if variant.endswith("before") else load_fasttext_bin)(path)
        words = len(vectors)
        if variant.startswith("stage"):
            with tempfile.TemporaryDirectory() as tmp:
                save_vectors(vectors, Path(tmp) / "vectors")
    print(json.dumps({"variant": variant, "seconds": round(time.perf_counter() - started, 2),
                      "peak_rss_mb": _peak_mb(), "baseline_rss_mb": baseline, "words": words}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bucket", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--epoch", type=int, default=1)
    ap.add_argument("--work", type=Path, default=ROOT / "artifacts" / "bench" / "vectors_memory")
    ap.add_argument("--out", type=Path, default=RESULTS / "vectors_memory.json")
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "BIN"), help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        _child(opts.child[0], Path(opts.child[1]))
        return
    opts.work.mkdir(parents=True, exist_ok=True)
    model = opts.work / f"kjv.b{opts.bucket}.d{opts.dim}.bin"
    made = _make_bin(model, opts.bucket, opts.dim, opts.epoch) if not model.exists() else {
        "bin_mb": round(model.stat().st_size / 2**20, 1), "reused": True}
    print(json.dumps({"model": str(model), **made}), flush=True)
    rows = []
    for variant in VARIANTS:
        done = subprocess.run([sys.executable, __file__, "--child", variant, str(model)], check=True,
                              capture_output=True, text=True, cwd=ROOT)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["peak_over_baseline_mb"] = round(row["peak_rss_mb"] - row["baseline_rss_mb"], 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    matrix_mb = round((opts.bucket + 0) * opts.dim * 4 / 2**20, 1)
    report = {"model": {"bucket": opts.bucket, "dim": opts.dim, **made},
              "ngram_matrix_mb": matrix_mb, "rows": rows,
              "note": "peak_rss_mb is ru_maxrss of a fresh child process per variant; baseline_rss_mb is "
                      "after importing numpy, fasttext and the vectors module"}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
