"""Bigger models from smaller ones (issue #27): CLP-Transfer and OMP against the strategies
that need no helper, on a real large source, through the product's runs.

Large source: Gemma-3-270M (`make gemma`: the Q4_K_M GGUF, 262,144-token byte-fallback
SentencePiece). Small model: SmolLM2-135M-Instruct (the packaged GGUF).

- ``progressive``: one run per strategy of ``adapt --progressive`` (the small model adapted
  to the target language first, with the 32k target tokenizer trained for Gemma's family,
  then used as the helper of ``clp``/``omp``); ``combined``, ``fvt`` and ``mean`` run in
  the same configuration (the progressive stages are built once and shared), so every row
  has the same tokenizer, corpus and training budget. BPB of the test split at step 0 and
  after 20 embeddings-only steps; the source model on its own tokenizer; the small helper.
- ``transplant``: mergekit tokensurgeon's use case, Gemma given SmolLM2's tokenizer with
  SmolLM2 itself as the helper (its tokenizer *is* the target tokenizer), step 0 only,
  against Gemma on its own tokenizer (same texts).

    flock /tmp/vocab-transfer-heavy.lock nice -n 5 .venv/bin/python benchmarks/helper_transfer.py \
        [--languages de] [--cases progressive transplant]

Results: ``results/helper_transfer_<case>_<lang>.json`` (every score of every run) and the
table ``results/helper_transfer.md`` rebuilt from all result files present.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from transfer.pipeline import run_adaptation
from transfer.planning.plan import plan_adaptation
from transfer.settings.config import AdaptConfig
from transfer.source.loading import smollm2_gguf_path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
GEMMA = ROOT / ".assets" / "gemma" / "gemma-3-270m-q4_k_m.gguf"
LANGUAGES: dict[str, list[str]] = {"de": ["e", "s"], "fr": ["l", "o"]}
# a run's label: the strategy, then its non-default parameters ("omp k=8")
CASES: dict[str, list[str]] = {
    "progressive": ["clp", "clp weighting=signed", "omp", "omp k=8", "combined", "fvt", "mean"],
    "transplant": ["omp", "clp", "clp weighting=signed", "fvt", "mean"],
}


def parse_label(label: str) -> tuple[str, dict[str, Any]]:
    """'omp k=8' -> ('omp', {'k': 8}); numbers become int or float, the rest stay strings."""
    strategy, *pairs = label.split()
    params: dict[str, Any] = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            params[key] = int(value)
        except ValueError:
            try:
                params[key] = float(value)
            except ValueError:
                params[key] = value
    return strategy, params


def base_config(language: str, case: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "source_model": str(GEMMA), "target_language": language, "target_bible": LANGUAGES[language],
        "eval_texts": 100, "register_model": False, "card_samples": 0, "seed": 0,
    }
    if case == "progressive":
        values.update(progressive=True, progressive_source="smollm2", train_steps=20)
    else:  # SmolLM2's own tokenizer on Gemma, SmolLM2 the helper: zero-shot, as tokensurgeon
        values.update(helper_model=str(smollm2_gguf_path()), train_steps=0)
    return values


def run_case(language: str, case: str, labels: list[str], runs: dict[str, Any]) -> dict[str, Any]:
    """Runs ``labels`` (the rest of ``runs`` is kept: results of earlier invocations)."""
    for label in labels:
        strategy, params = parse_label(label)
        cfg = AdaptConfig(**base_config(language, case), strategy=strategy, strategy_params=params)
        plan = plan_adaptation(cfg)
        start = time.perf_counter()
        result = run_adaptation(plan)
        init_report = json.loads((Path(plan.stage("init").path) / "init_report.json").read_text())
        runs[label] = {"scores": result.scores, "seconds": round(time.perf_counter() - start, 1),
                       "init_counts": init_report.get("counts"), "init_notes": init_report.get("notes")}
        print(label, {k: round(v, 3) for k, v in result.scores.items()}, flush=True)
    return {"language": language, "case": case, "config": base_config(language, case), "runs": runs,
            "machine": {"platform": platform.platform(), "torch": torch.__version__,
                        "threads": torch.get_num_threads()}}


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def write_table() -> Path:
    lines = ["# Helper-model transfer on Gemma-3-270M (benchmarks/helper_transfer.py)", ""]
    for path in sorted(RESULTS.glob("helper_transfer_progressive_*.json")):
        data = json.loads(path.read_text())
        lines += [f"## Progressive, {data['language']}: SmolLM2-135M adapted first, then Gemma-3-270M",
                  "", "test-split bits per byte (lower is better), 100 verses; 20 embeddings-only steps of 4 x 256",
                  "", "| strategy | step 0 | after 20 steps | rows copied / computed / fallback |", "|---|---|---|---|"]
        ranked = sorted(data["runs"].items(), key=lambda kv: kv[1]["scores"].get("adapted_trained", 1e9))
        for strategy, run in ranked:
            counts = run["init_counts"] or {}
            rows = f"{counts.get('copied', 0)} / {counts.get('computed', 0)} / {counts.get('fallback', 0)}"
            lines.append(f"| {strategy} | {_fmt(run['scores'].get('adapted_step0'))} | "
                         f"{_fmt(run['scores'].get('adapted_trained'))} | {rows} |")
        scores = next(iter(data["runs"].values()))["scores"]
        lines.append(f"| Gemma-3-270M on its own tokenizer | {_fmt(scores.get('source_model_on_target'))} | | |")
        # the helper is rebuilt when its cache is gone (eflomal's links cannot be seeded): one
        # row per build, naming the runs that used it
        helpers: dict[tuple[str, str], list[str]] = {}
        for label, run in data["runs"].items():
            key = (_fmt(run["scores"].get("progressive_step0")), _fmt(run["scores"].get("progressive_trained")))
            helpers.setdefault(key, []).append(label)
        for (step0, trained), labels in helpers.items():
            used = f" (for {', '.join(labels)})" if len(helpers) > 1 else ""
            lines.append(f"| helper: SmolLM2 adapted (combined){used} | {step0} | {trained} | |")
        lines.append("")
    for path in sorted(RESULTS.glob("helper_transfer_transplant_*.json")):
        data = json.loads(path.read_text())
        lines += [f"## Transplant, {data['language']}: Gemma-3-270M given SmolLM2's tokenizer (SmolLM2 the helper)",
                  "", "test-split bits per byte at step 0 (no training), 100 verses", "",
                  "| strategy | step 0 | rows copied / computed / fallback |", "|---|---|---|"]
        for strategy, run in sorted(data["runs"].items(), key=lambda kv: kv[1]["scores"]["adapted_step0"]):
            counts = run["init_counts"] or {}
            rows = f"{counts.get('copied', 0)} / {counts.get('computed', 0)} / {counts.get('fallback', 0)}"
            lines.append(f"| {strategy} | {_fmt(run['scores'].get('adapted_step0'))} | {rows} |")
        scores = next(iter(data["runs"].values()))["scores"]
        lines += [f"| Gemma-3-270M on its own tokenizer | {_fmt(scores.get('source_model_on_target'))} | |",
                  f"| SmolLM2 on its own tokenizer (the helper) | {_fmt(scores.get('helper_model_on_target'))} | |", ""]
    out = RESULTS / "helper_transfer.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", nargs="+", default=["de"], choices=sorted(LANGUAGES))
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rerun", nargs="+", default=[], metavar="LABEL",
                        help="run these labels again even where a result exists")
    parser.add_argument("--only", nargs="+", default=[], metavar="LABEL",
                        help="run only these labels of each case (default: all)")
    args = parser.parse_args()
    if not GEMMA.is_file():
        raise SystemExit(f"{GEMMA} is missing: run `make gemma` first")
    for language in args.languages:
        for case in args.cases:
            out = RESULTS / f"helper_transfer_{case}_{language}.json"
            # resumable: a label with a result is not run again, unless named in --rerun
            runs = json.loads(out.read_text())["runs"] if out.exists() else {}
            todo = [label for label in CASES[case] if (label not in runs or label in args.rerun)
                    and (not args.only or label in args.only)]
            for label in todo:  # one label at a time, saved as it finishes
                data = run_case(language, case, [label], runs)
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1) + "\n")
                tmp.replace(out)
    print(write_table())


if __name__ == "__main__":
    main()
