"""Does the default strategy hold on languages it was not chosen on?

`auto` runs `combined`, the winner across German, French and Swahili
(`strategy_languages.py`); a language nobody measured gets it too. This runs, on languages
outside those three, the product's comparison of `combined`, `fvt` (what `auto` falls back
to without parallel text) and `mean`, with the demo's settings (32k target tokenizer, 20
embeddings-only steps of 4 x 256 tokens, English `k`+`4`+`3` as the parallel source side)
and the target Bibles the config picks for the language (`target_bible` not given), scored
on 300 **test** verses: nothing is chosen here, so there is no dev phase.

    flock /tmp/vocab-transfer-heavy.lock nice -n 5 .venv/bin/python benchmarks/default_new_languages.py \
        [--languages ru tr] [--smoke]

Results: ``results/default_<lang>.json`` (the ``Comparison``, its wall time and the machine).
A language whose result file exists is skipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from transfer.engine.cache import atomic_write
from transfer.publish.comparison import compare_strategies
from transfer.settings.config import AdaptConfig

RESULTS = Path(__file__).parent / "results"
STRATEGIES = ["combined", "fvt", "mean"]


def run_language(code: str, shared: dict[str, Any], results: Path) -> dict[str, Any]:
    path = results / f"default_{code}.json"
    if path.exists():
        print(f"{path}: already measured, skipped")
        return json.loads(path.read_text())
    cfg = AdaptConfig(target_language=code, register_model=False, card_samples=0, eval_split="test", **shared)
    started = time.perf_counter()
    comparison = compare_strategies(cfg, STRATEGIES)
    record = {
        "language": code, "target_bible": cfg.target_bible, "seconds": round(time.perf_counter() - started, 1),
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "comparison": comparison.model_dump(mode="json"),
    }
    atomic_write(path, json.dumps(record, indent=1) + "\n")
    final = {row.strategy: row.final for row in comparison.rows}
    print(f"{path}: source {comparison.source_model:.4f}; " + ", ".join(
        f"{row.strategy} {row.step0:.4f} -> {row.final:.4f} ({100 * (final[row.strategy] / final['mean'] - 1):+.1f}%)"
        for row in comparison.ranked()))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", nargs="+", default=["ru", "tr"])
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/cache"))
    parser.add_argument("--smoke", action="store_true", help="tiny budget, one language, temporary folder")
    args = parser.parse_args()
    results = RESULTS
    shared: dict[str, Any] = {"cache_dir": args.cache_dir, "output_dir": Path("artifacts/bench-models")}
    if args.smoke:
        scratch = Path(tempfile.mkdtemp(prefix="default-languages-"))
        results = scratch / "results"
        args.languages = args.languages[:1]
        shared = {"cache_dir": scratch / "cache", "output_dir": scratch / "models", "vocab_size": 600,
                  "train_steps": 2, "batch_size": 2, "block_size": 32, "eval_texts": 4, "curve_texts": 4,
                  "eval_every": 1, "parallel_max_pairs": 300, "source_train_bible": ["k"]}
    for code in args.languages:
        run_language(code, shared, results)


if __name__ == "__main__":
    main()
