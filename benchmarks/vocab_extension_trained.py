"""Extension against replacement after training, at the same budget (issue #17).

SmolLM2-135M-Instruct -> German (Bible `e`+`s`) and French (`l`+`o`), through the product's
own path (``run_adaptation``, the settings of ``strategy_languages.py``: 20 embeddings-only
steps of 4 x 256 tokens, AdamW lr 5e-4, clipping 1.0, seed 0, 300 test verses):

- ``replace``: the demo's 32k target tokenizer, rows from ``fvt`` and from the measured
  winner ``combined``;
- ``extend``: SmolLM2's own tokenizer plus ``--added-tokens`` target tokens (new merges on top
  of the old ones), the new rows from ``fvt`` or ``combined``, the old rows kept; once more
  with the old rows frozen during training (``freeze_source_rows``).

Each row: target BPB at step 0 and after training, the source language's (the same test
verses in English, KJV) at step 0 and after, and target tokens per word. Extension runs
measure English themselves (the pipeline's evaluate stage); for replacement runs this script
scores the init and the trained model on the same verses with the same function
(``transfer.evaluate.score.score_model``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vocab_extension_trained.py [--languages de fr]
    .venv/bin/python benchmarks/vocab_extension_trained.py --smoke     # tiny budget, temporary folder

Results: ``results/vocab_extension_trained.json`` (rows appended as runs finish; a row
already there is skipped, so a killed run resumes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transfer.corpus.stage import read_lines
from transfer.publish.labels import (
    ADAPTED_STEP0,
    ADAPTED_STEP0_ON_SOURCE_LANGUAGE,
    ADAPTED_TRAINED,
    ADAPTED_TRAINED_ON_SOURCE_LANGUAGE,
    SOURCE_ON_SOURCE_LANGUAGE,
    SOURCE_ON_TARGET,
)
from transfer.settings.config import AdaptConfig

RESULTS = ROOT / "benchmarks" / "results"
LANGUAGES: dict[str, list[str]] = {"de": ["e", "s"], "fr": ["l", "o"]}

#: (row name, config fields)
VARIANTS: dict[str, dict[str, Any]] = {
    "replace, fvt": {"strategy": "fvt"},
    "replace, combined": {"strategy": "combined"},
    "extend, fvt": {"strategy": "fvt", "vocab_mode": "extend"},
    "extend, fvt, old rows frozen": {"strategy": "fvt", "vocab_mode": "extend", "freeze_source_rows": True},
    "extend, combined": {"strategy": "combined", "vocab_mode": "extend"},
}


def _english_bpb(cfg: AdaptConfig, result: Any) -> tuple[float, float]:
    """A replacement run's English BPB at step 0 and after training (the evaluate stage's texts
    and scoring function; the pipeline measures this itself only when it extends)."""
    from transfer.evaluate.score import score_model
    from transfer.source.loading import load_source

    texts = read_lines(cfg.cache_dir / "corpus" / result.stage_keys["corpus"] / f"{cfg.eval_split}.source.txt",
                       cfg.eval_texts)
    scores = []
    for folder in (cfg.cache_dir / "init" / result.stage_keys["init"] / "model", Path(result.model_dir)):
        model, tokenizer = load_source(str(folder))
        scores.append(score_model(model, tokenizer, texts, batch_size=cfg.eval_batch_size, device=cfg.device).value)
    return scores[0], scores[1]


def run_variant(code: str, name: str, fields: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    from transfer.pipeline import run_adaptation

    cfg = AdaptConfig(target_language=code, target_bible=LANGUAGES[code], register_model=False, card_samples=0,
                      eval_split="test", **shared, **fields)
    started = time.perf_counter()
    result = run_adaptation(cfg)
    bpb = result.scores
    if cfg.vocab_mode == "extend":
        english = (bpb[ADAPTED_STEP0_ON_SOURCE_LANGUAGE], bpb[ADAPTED_TRAINED_ON_SOURCE_LANGUAGE])
    else:
        english = _english_bpb(cfg, result)
    def entries(folder: Path) -> int:
        return len(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"])

    n_tokens = entries(Path(result.model_dir))
    n_source = entries(cfg.cache_dir / "source" / result.stage_keys["source"] / "model")
    return {
        "language": code, "variant": name, "config": fields, "vocab_entries": n_tokens,
        "source_vocab_entries": n_source,
        "target_step0": bpb[ADAPTED_STEP0], "target_trained": bpb[ADAPTED_TRAINED],
        "english_step0": english[0], "english_trained": english[1],
        "source_model_target": bpb[SOURCE_ON_TARGET], "source_model_english": bpb[SOURCE_ON_SOURCE_LANGUAGE],
        "target_tokens_per_word": result.fertility.get("target", {}).get("tokens_per_word"),
        "train_steps": cfg.total_train_steps, "added_tokens": cfg.added_tokens if cfg.vocab_mode == "extend" else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def report(path: Path) -> str:
    rows = json.loads(path.read_text())["rows"]
    lines = [("| language | run | tokens | target step 0 | target after | English step 0 | English after "
             "| target tokens/word |"), "|---|---|---|---|---|---|---|---|"]
    for code in LANGUAGES:
        mine = [r for r in rows if r["language"] == code]
        if not mine:
            continue
        lines.append(f"| {code} | source model, own tokenizer | {mine[0]['source_vocab_entries']} | "
                     f"{mine[0]['source_model_target']:.4f} | "
                     f"| {mine[0]['source_model_english']:.4f} | | |")
        for r in mine:
            tpw = r["target_tokens_per_word"]
            lines.append(f"| {code} | {r['variant']} | {r['vocab_entries']} | {r['target_step0']:.4f} | "
                         f"{r['target_trained']:.4f} | {r['english_step0']:.4f} | {r['english_trained']:.4f} | "
                         + (f"{tpw:.3f} |" if tpw is not None else " |"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=list(LANGUAGES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/cache"))
    parser.add_argument("--report", action="store_true", help="print the markdown table of the recorded rows")
    parser.add_argument("--smoke", action="store_true", help="tiny budget on German, temporary folder")
    args = parser.parse_args()
    path = RESULTS / "vocab_extension_trained.json"
    if args.report:
        print(report(path))
        return
    shared: dict[str, Any] = {"cache_dir": args.cache_dir, "output_dir": Path("artifacts/bench-models"),
                              "added_tokens": 8000}
    if args.smoke:
        scratch = Path(tempfile.mkdtemp(prefix="extension-trained-"))
        path, args.languages = scratch / "vocab_extension_trained.json", args.languages[:1]
        shared.update(cache_dir=scratch / "cache", output_dir=scratch / "models", added_tokens=300, vocab_size=600,
                      train_steps=2, batch_size=2, block_size=32, eval_texts=4, curve_texts=4, eval_every=1,
                      parallel_max_pairs=300, source_train_bible=["k"])
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    for code in args.languages:
        for name in args.variants:
            if any(r["language"] == code and r["variant"] == name for r in rows):
                continue
            rows.append(run_variant(code, name, VARIANTS[name], shared))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps({"settings": {k: str(v) for k, v in shared.items()}, "rows": rows}, indent=1)
                           + "\n")
            tmp.replace(path)
            print(json.dumps(rows[-1]), flush=True)
    print(report(path))


if __name__ == "__main__":
    main()
