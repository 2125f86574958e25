"""Every strategy on three target languages, through the product's comparison (issue #14).

SmolLM2-135M-Instruct -> German (Bible `e`+`s`), French (`l`+`o`) and Swahili (`h`), each
with the demo's settings (32k target tokenizer, 20 embeddings-only steps of 4 x 256
tokens, English `k`+`4`+`3` as the source side of the parallel Bible and of the vector
stages). Per language, three phases, each resumable (stages come from the cache, a phase
whose result file exists is skipped):

- ``dev``: every registered strategy compared on 300 held-out **dev** verses (choices are
  made here);
- ``test``: the same runs scored on 300 **test** verses (only the evaluate stages are new;
  the goals are judged here);
- ``long``: the two best strategies on dev and ``mean``, trained for 200 steps with a
  dev-BPB learning-curve point every 20 steps.

    flock /tmp/vocab-transfer-heavy.lock nice -n 5 .venv/bin/python benchmarks/strategy_languages.py \
        [--languages de fr sw] [--phases dev test long] [--smoke]

Results: ``results/strategies_<lang>_<phase>.json`` (the ``Comparison`` of
``transfer.publish.comparison``) and, for ``long``, ``results/strategies_<lang>_long.png``.
``--smoke`` runs a tiny budget on one language into a temporary folder (about 15 minutes on
2 cores: the real model scores every strategy three times).
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

from transfer.init import available_strategies
from transfer.publish.comparison import Comparison, compare_strategies, write_comparison
from transfer.settings.config import AdaptConfig

RESULTS = Path(__file__).parent / "results"

#: Bible translations of each measured language (first: the target side of the parallel Bible).
LANGUAGES: dict[str, list[str]] = {"de": ["e", "s"], "fr": ["l", "o"], "sw": ["h"]}
LONG_STEPS, LONG_EVAL_EVERY, LONG_TOP = 200, 20, 2
PHASES = ("dev", "test", "long")

#: Variants of ``combined`` tried beside its defaults (issue #14's "ideas"), each one run of the
#: product (``run_adaptation``) on dev with the 20-step budget: how much to trust the
#: alignments (the shrinkage lambda), trusting only a token's top translation's links,
#: restoring the norm that averaging takes away, and (the demo's time budget) aligning fewer
#: verse pairs. Each: (strategy parameters, other config fields).
IDEAS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "defaults (lambda 10)": ({}, {}),  # the reference, same code and run (eflomal is not seeded)
    "lambda 3": ({"shrinkage": 3.0}, {}),
    "lambda 30": ({"shrinkage": 30.0}, {}),
    "peaked trust": ({"trust": "peaked"}, {}),
    "restored norms": ({"restore_norm": True}, {}),
    "10,000 verse pairs per translation": ({}, {"parallel_max_pairs": 10_000}),
}


def run_ideas(code: str, cfg_args: dict[str, Any], results: Path) -> list[dict[str, Any]]:
    """``combined`` with each variant of ``IDEAS`` on dev; rows appended to
    ``strategies_<code>_ideas.json`` as they finish (a variant already there is skipped)."""
    from transfer.pipeline import run_adaptation
    from transfer.publish.comparison import row_of

    path = results / f"strategies_{code}_ideas.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    for name, (params, fields) in IDEAS.items():
        if any(row["idea"] == name for row in rows):
            continue
        cfg = language_config(code, **{**cfg_args, **fields}, strategy="combined", strategy_params=params)
        row = row_of(run_adaptation(cfg))
        rows.append({"idea": name, "config": fields, **row.model_dump(mode="json")})
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"language": code, "split": cfg.eval_split, "rows": rows}, indent=1) + "\n")
        tmp.replace(path)
        print(f"{path}: {name}: {row.step0:.4f} -> {row.final:.4f}")
    return rows


def language_config(code: str, cache_dir: Path, output_dir: Path, **overrides: Any) -> AdaptConfig:
    """The demo's settings for one language; no registry (benchmark models are not releases)."""
    values: dict[str, Any] = {
        "target_language": code, "target_bible": LANGUAGES[code], "register_model": False,
        "card_samples": 0, "cache_dir": cache_dir, "output_dir": output_dir,
    }
    values.update(overrides)
    return AdaptConfig(**values)


def long_strategies(dev: Comparison) -> list[str]:
    """The two best strategies after training on dev, plus ``mean`` (the baseline to beat)."""
    best = [row.strategy for row in dev.ranked() if row.strategy != "mean"][:LONG_TOP]
    return best + ["mean"]


def run_phase(code: str, phase: str, cfg_args: dict[str, Any], strategies: list[str],
              results: Path) -> Comparison:
    """One comparison; its JSON (plus the run's wall time and the machine) in ``results``."""
    path = results / f"strategies_{code}_{phase}.json"
    if path.exists():
        print(f"{path}: already measured, skipped")
        return Comparison.model_validate(json.loads(path.read_text())["comparison"])
    cfg = language_config(code, **cfg_args)
    started = time.perf_counter()
    comparison = compare_strategies(cfg, strategies)
    record = {
        "phase": phase, "language": code, "seconds": round(time.perf_counter() - started, 1),
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "comparison": comparison.model_dump(mode="json"),
    }
    results.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    with tempfile.TemporaryDirectory(dir=results) as scratch:  # only the plot is kept
        written = write_comparison(comparison, Path(scratch))
        if "plot" in written:
            written["plot"].replace(results / f"strategies_{code}_{phase}.png")
    print(f"{path}: {[(r.strategy, round(r.step0, 4), r.trained and round(r.trained, 4)) for r in comparison.ranked()]}")
    return comparison


def load_phase(code: str, phase: str, results: Path = RESULTS) -> Comparison | None:
    path = results / f"strategies_{code}_{phase}.json"
    if not path.exists():
        return None
    return Comparison.model_validate(json.loads(path.read_text())["comparison"])


def ratios_to_mean(comparison: Comparison) -> dict[str, float]:
    """Each strategy's final BPB divided by ``mean``'s (below 1: better than the mean)."""
    final = {row.strategy: row.final for row in comparison.rows}
    return {name: value / final["mean"] for name, value in final.items()}


def overall_ranking(comparisons: list[Comparison]) -> list[tuple[str, float]]:
    """Strategies measured on every language, best first by their mean ratio to ``mean``
    after the budget (the winner across languages; ties are not broken)."""
    ratios = [ratios_to_mean(c) for c in comparisons]
    common = set.intersection(*(set(r) for r in ratios))
    return sorted(((name, sum(r[name] for r in ratios) / len(ratios)) for name in common), key=lambda kv: kv[1])


def report(results: Path = RESULTS) -> str:
    """Markdown: per language the test table (every strategy, step 0 and after the budget,
    ratio to mean), the winners on dev, the overall ranking, and the 200-step curves."""
    lines: list[str] = []
    devs = []
    for code, bibles in LANGUAGES.items():
        dev, test, long = (load_phase(code, phase, results) for phase in PHASES)
        if dev is None:
            continue
        devs.append(dev)
        lines += [f"### {code} (Bible {' + '.join(bibles)})", ""]
        shown = test or dev
        split = "test" if test else "dev (test not yet measured)"
        ratios = ratios_to_mean(shown)
        lines += [f"{split} BPB on 300 verses; winner on dev: **{dev.ranked()[0].strategy}**", "",
                  f"| strategy | step 0 | after {shown.train_steps} steps | vs mean | dev after {dev.train_steps} |",
                  "|---|---|---|---|---|"]
        dev_final = {row.strategy: row.final for row in dev.rows}
        for row in shown.ranked():
            lines.append(f"| {row.strategy} | {row.step0:.4f} | {row.final:.4f} | {100 * (ratios[row.strategy] - 1):+.1f}% "
                         f"| {dev_final.get(row.strategy, float('nan')):.4f} |")
        lines.append(f"| source model, own tokenizer | {shown.source_model:.4f} | | | |")
        ideas_file = results / f"strategies_{code}_ideas.json"
        if ideas_file.exists():
            default = dev_final.get("combined", float("nan"))
            lines += ["", f"Ideas (`combined` variants, dev; defaults: {default:.4f} after {dev.train_steps} steps): "
                      + ", ".join(f"{row['idea']} {row['step0']:.4f} -> {row['trained']:.4f}"
                                  for row in json.loads(ideas_file.read_text())["rows"])]
        if long is not None:
            lines += ["", f"{long.train_steps} steps (dev, curve every {LONG_EVAL_EVERY}): " + ", ".join(
                f"{row.strategy} {row.step0:.4f} -> {row.final:.4f}" for row in long.ranked())]
        lines.append("")
    if devs:
        ranking = overall_ranking(devs)
        lines += [f"Across {', '.join(c.base.target_language for c in devs)} (dev, mean ratio to `mean` after "
                  f"the budget), overall winner: **{ranking[0][0]}**; " + ", ".join(
                      f"{name} {100 * (ratio - 1):+.1f}%" for name, ratio in ranking), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=list(LANGUAGES))
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--strategies", nargs="+", default=None, help="default: every registered strategy")
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/cache"))
    parser.add_argument("--results", type=Path, default=None, help=f"result folder (default: {RESULTS})")
    parser.add_argument("--ideas", action="store_true", help="run the combined variants (IDEAS) on dev instead")
    parser.add_argument("--report", action="store_true", help="print the markdown tables of the recorded results")
    parser.add_argument("--smoke", action="store_true", help="tiny budget on the first language, temporary folder")
    args = parser.parse_args()
    if args.report:
        print(report(args.results or RESULTS))
        return
    strategies = args.strategies or available_strategies()
    results = RESULTS
    budget: dict[str, Any] = {}
    long_budget: dict[str, Any] = {"train_steps": LONG_STEPS, "eval_every": LONG_EVAL_EVERY}
    if args.smoke:
        scratch = Path(tempfile.mkdtemp(prefix="strategy-languages-"))
        results, args.cache_dir = scratch / "results", scratch / "cache"
        args.languages = args.languages[:1]
        budget = {"vocab_size": 600, "train_steps": 2, "batch_size": 2, "block_size": 32, "eval_texts": 4,
                  "curve_texts": 4, "eval_every": 1, "vector_epochs": 1, "vector_max_verses": 300,
                  "parallel_max_pairs": 300, "source_train_bible": ["k"]}
        long_budget = {**budget, "train_steps": 3}
    if args.results:
        results = args.results
    shared = {"cache_dir": args.cache_dir, "output_dir": Path("artifacts/bench-models"), **budget}
    if args.ideas:
        for code in args.languages:
            run_ideas(code, {**shared, "eval_split": "dev"}, results)
        return
    # phase by phase across the languages, so that the choices (dev) of all three land first
    dev = {code: run_phase(code, "dev", {**shared, "eval_split": "dev"}, strategies, results)
           for code in args.languages if "dev" in args.phases or "long" in args.phases}
    if "test" in args.phases:
        for code in args.languages:
            run_phase(code, "test", {**shared, "eval_split": "test"}, strategies, results)
    if "long" in args.phases:
        for code in args.languages:
            run_phase(code, "long", {**shared, **long_budget, "eval_split": "dev"},
                      long_strategies(dev[code]), results)
    print(f"results in {results}")


if __name__ == "__main__":
    main()
