"""Walking-skeleton benchmark: no-transfer baselines, fertility, and the baseline strategies.

SmolLM2-135M-Instruct -> German (Bible: Elberfelder + Schlachter train verses), 32k
byte-level BPE target tokenizer, BPB on the first 300 held-out test verses (hash order),
each strategy at step 0 and after 20 embeddings-only steps of 4 x 256 tokens (AdamW
lr 5e-4, identical batches: same tokenizer, same seed). All numbers in one run, sharing the
stage cache, so they are comparable.

    .venv/bin/python benchmarks/skeleton_baselines.py [--strategies random mean overlap] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from transfer.pipeline import run_adaptation
from transfer.settings.config import AdaptConfig

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=["random", "mean", "overlap"])
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    parser.add_argument("--cache-dir", default="artifacts/cache")
    args = parser.parse_args()
    budget = ({"vocab_size": 2000, "train_steps": 2, "batch_size": 2, "block_size": 64, "eval_texts": 10}
              if args.smoke else {})
    rows = []
    for strategy in args.strategies:
        cfg = AdaptConfig(strategy=strategy, cache_dir=Path(args.cache_dir),
                          output_dir=Path("artifacts/bench-models"), **budget)
        started = time.perf_counter()
        result = run_adaptation(cfg)
        rows.append({
            "strategy": strategy,
            "bpb": result.scores,
            "fertility": result.fertility,
            "init_counts": result.init_report["counts"],
            "seconds": time.perf_counter() - started,
            "stages_cached": result.stages_cached,
        })
        print(json.dumps(rows[-1], indent=1))
    record = {
        "settings": cfg.model_dump(mode="json", exclude={"strategy"}),
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "rows": rows,
    }
    name = "skeleton_baselines_smoke.json" if args.smoke else "skeleton_baselines.json"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(record, indent=2) + "\n")
    first = rows[0]["bpb"]
    print("\n| model | BPB step 0 | BPB after training |\n|---|---|---|")
    print(f"| SmolLM2, own tokenizer, English test verses | {first.get('source_model_on_source_language', float('nan')):.3f} | |")
    print(f"| SmolLM2, own tokenizer, German test verses | {first['source_model_on_target']:.3f} | |")
    for row in rows:
        b = row["bpb"]
        print(f"| {row['strategy']} | {b['adapted_step0']:.3f} | {b.get('adapted_trained', float('nan')):.3f} |")


if __name__ == "__main__":
    main()
