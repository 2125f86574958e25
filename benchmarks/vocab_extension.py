"""Vocabulary extension (issue #17): how much target fertility N appended tokens buy, what
they cost the source language, and the merge learner against keeping a target BPE's
composable merges.

For each real source tokenizer (``.assets/tokenizers``, plus XLM-R's Unigram when its
package is installed), target language (German ``e``, French ``l``) and budget N, the
source is extended on the train verses and measured on the first dev verses: tokens per
word on the target, tokens per word on English (KJV ``k``, the same verses' keys), the
share of new tokens used on the target dev verses and the build time. Tokenizers only, no
model: the numbers do not depend on the machine's load except the times.

    .venv/bin/python benchmarks/vocab_extension.py            # --smoke for a tiny run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.families import family_tokenizer
from tests.tiny import xlmr_tokenizer, xlmr_tokenizer_file
from tokenizer_builds.extend import extend_tokenizer
from transfer.corpus.bible import read_texts
from transfer.tokenizer.fertility import measure_fertility

RESULTS = ROOT / "benchmarks" / "results"


def run(smoke: bool) -> dict:
    sources = ["llama2"] if smoke else ["llama3", "qwen3", "llama2", "gemma3", "xlmr"]
    targets = ["e"] if smoke else ["e", "l"]
    budgets = [200] if smoke else [1000, 4000]
    n_train, n_dev = (2000, 200) if smoke else (None, 500)
    english = read_texts("k", "dev")[:n_dev]
    rows = []
    for name in sources:
        if name == "xlmr":
            if xlmr_tokenizer_file() is None:
                continue
            source = xlmr_tokenizer()
        else:
            source = family_tokenizer(name)
        base_en = measure_fertility(source, english).tokens_per_word
        for code in targets:
            train = read_texts(code, "train")[:n_train]
            dev = read_texts(code, "dev")[:n_dev]
            base = measure_fertility(source, dev).tokens_per_word
            rows.append({"source": name, "target": code, "method": "none", "added": 0,
                         "target_tokens_per_word": round(base, 4),
                         "english_tokens_per_word": round(base_en, 4)})
            for budget in budgets:
                methods = ["learn"] if name == "xlmr" else ["learn", "target_bpe"]
                for method in methods:
                    start = time.perf_counter()
                    extension = extend_tokenizer(source, train, budget, method=method)  # type: ignore[arg-type]
                    seconds = time.perf_counter() - start
                    tokenizer = extension.tokenizer
                    ids = tokenizer(dev, add_special_tokens=False)["input_ids"]
                    used = {i for row in ids for i in row} & set(extension.new_ids)
                    row = {
                        "source": name, "target": code, "method": method, "added": budget,
                        "family": extension.family.value,
                        "new_tokens": len(extension.new_tokens),
                        "target_tokens_per_word": round(measure_fertility(tokenizer, dev).tokens_per_word, 4),
                        "english_tokens_per_word": round(measure_fertility(tokenizer, english).tokens_per_word, 4),
                        "new_tokens_used_on_dev": len(used),
                        "seconds": round(seconds, 1),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return {"n_train": n_train or "all train verses", "n_dev": n_dev, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    result = run(args.smoke)
    name = "vocab_extension_smoke.json" if args.smoke else "vocab_extension.json"
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
