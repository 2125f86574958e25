"""Real check of issue 4: Bible fastText vectors (English k+4+3, German e+s, train split)
aligned with the Ding dictionary and with an eflomal-induced one; BLI P@1 (CSLS) on the
same held-out 10% of the Ding pairs; time and peak memory per step; then variants.

    flock /tmp/vocab-transfer-heavy.lock .venv/bin/python benchmarks/vectors_bli.py
    .venv/bin/python benchmarks/vectors_bli.py --smoke      # seconds, used by the tests

Peak memory: ``ru_maxrss`` of this process (monotonic, so a step's value is the peak up to
its end) and of the fastText child processes.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transfer.corpus.bible import read_texts, verse_pairs
from transfer.vectors.alignment import align_vectors, bli_evaluate
from transfer.vectors.dictionaries import DING_DE_EN, coverage, held_out_split, load_dictionary
from transfer.vectors.fasttext_training import load_trained, train_fasttext, write_training_text
from transfer.vectors.static_vectors import tokenize_words
from transfer.vectors.word_alignment import align, induce_dictionary_report

RESULTS = Path(__file__).resolve().parent / "results"


def _mem_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "peak_child_rss_mb": round(kids, 1)}


class Steps:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def run(self, name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        row = {"step": name, "seconds": round(time.perf_counter() - t0, 2), **_mem_mb()}
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--epoch", type=int, default=5)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--align-pairs", default="k:e", help="comma list of en:de codes for eflomal")
    ap.add_argument("--max-align-sentences", type=int, default=0, help="0 = all train verses")
    ap.add_argument("--refine", type=int, default=5)
    ap.add_argument("--lowercase", action="store_true", help="lowercase corpora and dictionaries")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    en_codes, de_codes = ["k", "4", "3"], ["e", "s"]
    if args.smoke:
        args.dim, args.epoch, args.min_count, args.max_align_sentences, args.refine = 16, 1, 2, 100, 1
    work = Path(tempfile.mkdtemp(prefix="vectors-bli-"))
    steps = Steps()
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    limit = 300 if args.smoke else None

    def corpus(codes: list[str], path: Path) -> dict[str, int]:
        lines = [t for c in codes for t in read_texts(c, "train")[:limit]]
        return write_training_text(lines, path, lowercase=args.lowercase)

    result["corpus"] = {"en": steps.run("write corpus en", corpus, en_codes, work / "en.txt"),
                        "de": steps.run("write corpus de", corpus, de_codes, work / "de.txt")}
    ft = {"dim": args.dim, "epoch": args.epoch, "min_count": args.min_count, "threads": args.threads,
          "bucket": 20_000 if args.smoke else 200_000, "lowercase": args.lowercase}
    steps.run("fasttext en", train_fasttext, work / "en.txt", work / "ft-en", **ft)
    steps.run("fasttext de", train_fasttext, work / "de.txt", work / "ft-de", **ft)
    en, de = load_trained(work / "ft-en"), load_trained(work / "ft-de")
    result["vocab"] = {"en": len(en), "de": len(de),
                       "stored_mb": {k: round(sum(f.stat().st_size for f in (work / f"ft-{k}").iterdir()) / 2**20, 1)
                                     for k in ("en", "de")}}

    ding = steps.run("load ding", load_dictionary, DING_DE_EN, lowercase=args.lowercase).reversed()  # (English, German)
    split = held_out_split(ding.pairs, 0.1)
    result["ding"] = {**ding.report, "train": coverage(split.train, en, de), "test": coverage(split.test, en, de)}

    def induce() -> Any:
        S, T = [], []
        for pair in args.align_pairs.split(","):
            a, b = pair.split(":")
            rows = verse_pairs(a, b, "train")
            if args.max_align_sentences:
                rows = rows[: args.max_align_sentences]
            S += [tokenize_words(s, lowercase=args.lowercase) for _, s, _ in rows]
            T += [tokenize_words(t, lowercase=args.lowercase) for _, _, t in rows]
        alignment = align(S, T)
        induced = induce_dictionary_report(S, T, alignment, min_count=3, min_ratio=0.3)
        return alignment, induced

    alignment, induced = steps.run("eflomal align + induce", induce)
    induced_pairs = split.excludes(induced.pairs)  # never align on a held-out word
    result["induced"] = {**induced.report, "after_excluding_test_words": len(induced_pairs),
                         "coverage": coverage(induced_pairs, en, de), "alignment": alignment.report}

    def evaluate(name: str, pairs, refine: int) -> None:
        aligned = steps.run(f"align {name}", align_vectors, en, de, pairs, refine_iterations=refine)
        fwd = steps.run(f"BLI {name}", bli_evaluate, aligned, split.test)
        rev = bli_evaluate(aligned, split.test, reverse=True)
        result.setdefault("bli", {})[name] = {"en->de": fwd, "de->en": rev,
                                               "covered_pairs": aligned.report["covered_pairs"],
                                               "history": aligned.report["history"]}
        print(name, round(fwd["p_at_1"], 4), round(rev["p_at_1"], 4), fwd["queries"], flush=True)

    evaluate("ding", split.train, 0)
    evaluate("induced", induced_pairs, 0)
    evaluate("ding+refine", split.train, args.refine)
    evaluate("induced+refine", induced_pairs, args.refine)
    evaluate("ding+induced", list(dict.fromkeys(split.train + induced_pairs)), 0)
    evaluate("ding+induced+refine", list(dict.fromkeys(split.train + induced_pairs)), args.refine)
    result["steps"] = steps.rows
    out = args.out or RESULTS / ("vectors_bli_smoke.json" if args.smoke else "vectors_bli.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
