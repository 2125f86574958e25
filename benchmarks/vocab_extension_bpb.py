"""Vocabulary extension on SmolLM2 (issue #17): target and source-language bits per byte at
initialization (step 0, no training), extension against replacement.

SmolLM2-135M-Instruct (the packaged GGUF) -> German: the source tokenizer extended with N
tokens learned on the Elberfelder train verses (``tokenizer_builds.extend``), the new rows
from a strategy and the old rows kept exactly (``transfer.init.extension``), against the
demo's replacement (a 32k German byte-level BPE on the same verses, same strategy). BPB on
the first 100 test verses of Elberfelder (German) and of KJV (English, the source language).

    .venv/bin/python benchmarks/vocab_extension_bpb.py            # --smoke for a tiny run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tokenizer_builds.build import build_target_tokenizer
from tokenizer_builds.extend import extend_tokenizer
from transfer.corpus.bible import read_texts
from transfer.evaluate.bpb import bits_per_byte
from transfer.init import initialize
from transfer.init.base import StrategyInputs
from transfer.init.extension import keep_source_rows
from transfer.init.surgery import get_source_embeddings, swap_vocabulary
from transfer.source.loading import SMOLLM2, load_source

RESULTS = ROOT / "benchmarks" / "results"


def _adapted(target_tokenizer, strategy: str, first_new_id: int | None):
    model, source_tokenizer = load_source(SMOLLM2)
    inputs = StrategyInputs(source=get_source_embeddings(model), source_tokenizer=source_tokenizer,
                            target_tokenizer=target_tokenizer, seed=0)
    target = initialize(strategy, inputs)
    if first_new_id is not None:
        target = keep_source_rows(target, inputs.source, first_new_id)
    return swap_vocabulary(model, target_tokenizer, target, source_tokenizer=source_tokenizer)


def run(smoke: bool) -> dict:
    n_eval = 20 if smoke else 100
    train = read_texts("e", "train")[: 2000 if smoke else None]
    german, english = read_texts("e", "test")[:n_eval], read_texts("k", "test")[:n_eval]
    budgets = [500] if smoke else [1000, 8000]
    strategies = ["fvt"]
    model, tokenizer = load_source(SMOLLM2)
    rows = [{"model": "SmolLM2, own tokenizer", "tokens": len(tokenizer),
             "german_bpb": round(bits_per_byte(model, tokenizer, german, device="cpu").bpb, 4),
             "english_bpb": round(bits_per_byte(model, tokenizer, english, device="cpu").bpb, 4)}]
    print(json.dumps(rows[-1]), flush=True)
    tokenizers = []
    for budget in budgets:
        start = time.perf_counter()
        extension = extend_tokenizer(tokenizer, train, budget)
        tokenizers.append((f"extend +{budget}", extension.tokenizer, extension.first_new_id,
                           time.perf_counter() - start))
    start = time.perf_counter()
    replacement = build_target_tokenizer(tokenizer, train, 2000 if smoke else 32000)
    tokenizers.append(("replace (German BPE)", replacement, None, time.perf_counter() - start))
    for label, target_tokenizer, first_new_id, seconds in tokenizers:
        for strategy in strategies:
            adapted = _adapted(target_tokenizer, strategy, first_new_id)
            row = {"model": f"{label}, {strategy}", "tokens": len(target_tokenizer),
                   "tokenizer_seconds": round(seconds, 1),
                   "german_bpb": round(bits_per_byte(adapted, target_tokenizer, german, device="cpu").bpb, 4),
                   "english_bpb": round(bits_per_byte(adapted, target_tokenizer, english, device="cpu").bpb, 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"train": "Elberfelder train verses", "eval_texts": n_eval, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    result = run(args.smoke)
    name = "vocab_extension_bpb_smoke.json" if args.smoke else "vocab_extension_bpb.json"
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
