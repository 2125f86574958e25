"""Do the evaluations agree? Bits per byte, SR-B and the packaged lm-eval task on the same
models (issue #30, item 4).

SmolLM2-135M-Instruct (the packaged GGUF, the default source) -> German (Bible `e`+`s`),
French (`l`+`o`) and Swahili (`h`), the translations of ``benchmarks/strategy_languages.py``;
strategies ``combined``, ``fvt`` and ``mean``, each one ordinary run of the product
(``run_adaptation``) with the demo's settings (32k target tokenizer, 20 embeddings-only steps
of 4 x 256 tokens) plus the pipeline's opt-in evaluations: ``srb`` (SR-B, test verses of the
first target translation <-> English `k`, the middle hidden layer) and ``lm_eval_tasks:
[bible_continuation]`` (``configs/lm_eval/bible_continuation``). Each run scores the source
model on its own tokenizer, the adapted model at step 0 and after 20 steps on all three; the
corpus, tokenizer and source-model stages are built once per language and shared from the
cache by the three runs. No learning curve, no generations, no registration.

    flock /tmp/vocab-transfer-heavy.lock nice -n 5 .venv/bin/python benchmarks/evaluation_agreement.py \
        [--languages de fr sw] [--eval-texts 100] [--srb-verses 100] [--lm-eval-limit 100] [--report]

Results: ``results/evaluation_agreement.json`` (every score of every run, per-stage seconds,
sample counts), rewritten after each run (a run already there is skipped: it resumes), and
``results/evaluation_agreement.md`` (tables and rank agreement, rebuilt from the JSON;
``--report`` only rebuilds it). A hand-written ``## Findings`` section at the end of the
markdown is kept when it is rebuilt.

Cost, from the German stages' own times on the shared 2-core machine (2026-12-07, another
job's tests running beside it): eflomal links ~3 min, 20 training steps ~4.7 min per
strategy, SR-B on 500 verses ~4.3 min and bible_continuation on all 500 documents ~4.5 min
per model (the latter read off the harness's progress bar of a run that was stopped); 7
models a language (the source model, each strategy at step 0 and trained).
With the defaults (100 verses, 100 documents, 100 BPB texts) that is roughly 1.5 hours for
the three languages, most of it the nine 20-step trainings, which no evaluation setting
shortens.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import random
import time
from pathlib import Path
from typing import Any

import torch
from strategy_languages import LANGUAGES  # the translations every strategy benchmark uses

from transfer.pipeline import run_adaptation
from transfer.planning.plan import plan_adaptation
from transfer.settings.config import AdaptConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
JSON_PATH = RESULTS / "evaluation_agreement.json"
MD_PATH = RESULTS / "evaluation_agreement.md"
STRATEGIES = ("combined", "fvt", "mean")
TASK = "bible_continuation"
FINDINGS = "## Findings"
NAMES = {"de": "German", "fr": "French", "sw": "Swahili"}
#: metric -> (key in a model's scores, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "bpb": ("bpb", False),
    "srb_to_en": ("srb.to_en.top10", True),
    "srb_from_en": ("srb.from_en.top10", True),
    "acc": (f"lm_eval.{TASK}.acc", True),
}
LABELS = {"bpb": "BPB", "srb_to_en": "SR-B tgt->en top-10", "srb_from_en": "SR-B en->tgt top-10",
          "acc": f"{TASK} acc"}


def config(code: str, strategy: str, args: argparse.Namespace) -> AdaptConfig:
    return AdaptConfig(
        target_language=code, target_bible=LANGUAGES[code], strategy=strategy, seed=0,
        eval_texts=args.eval_texts, curve_texts=0, srb=True, srb_verses=args.srb_verses, lm_eval_tasks=[TASK],
        lm_eval_limit=args.lm_eval_limit,
        register_model=False, card_samples=0, cache_dir=args.cache_dir, output_dir=args.output_dir,
    )


class StageClock:
    """The pipeline's stage listener: seconds of every stage built (cached ones: 0)."""

    def __init__(self) -> None:
        self.seconds: list[tuple[str, float, bool]] = []
        self._started = 0.0

    def __call__(self, stage: str, event: str) -> None:
        if event == "running":
            self._started = time.perf_counter()
        else:
            self.seconds.append((stage, round(time.perf_counter() - self._started, 1), event == "cached"))


def _stage_json(result, label: str, name: str) -> dict[str, Any] | None:
    from transfer.publish.result import stage_folder

    folder = stage_folder(result, label)
    path = folder / name if folder is not None else None
    return json.loads(path.read_text()) if path is not None and path.exists() else None


def models_of(result) -> dict[str, dict[str, float]]:
    """source_model / adapted_step0 / adapted_trained -> bpb and the task scores."""
    bpb = {"source_model": result.scores["source_model_on_target"], "adapted_step0": result.scores["adapted_step0"],
           "adapted_trained": result.scores["adapted_trained"]}
    return {name: {"bpb": value, **result.task_scores.get(name, {})} for name, value in bpb.items()}


def sample_counts(result) -> dict[str, Any]:
    """How many verses SR-B retrieved among and how many documents the harness scored
    (the same for every model of a language), from the stages' own files."""
    srb = _stage_json(result, "srb.adapted_trained", "srb.json") or {}
    harness = _stage_json(result, "lm_eval.adapted_trained", "lm_eval.json") or {}
    n_docs = (harness.get("n-samples") or {}).get(TASK, {}).get("effective")
    rows = srb.get("rows") or [srb]
    return {"srb_verses": rows[0].get("n_verses"), "srb_layer": rows[0].get("layer"), "lm_eval_docs": n_docs,
            "bpb_texts": result.config.eval_texts, "bpb_split": result.config.eval_split}


def run_language(code: str, args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """The three runs of one language, each saved as it finishes (a run already in
    ``data`` is skipped, so a stopped benchmark resumes)."""
    record = data["languages"].setdefault(code, {"language": code, "bibles": LANGUAGES[code], "runs": {}})
    wanted = config(code, STRATEGIES[0], args).model_dump(mode="json", exclude={"strategy"})
    if record.get("config") not in (None, wanted):
        raise SystemExit(f"{code}: {JSON_PATH} holds runs of other settings; move it away to measure these")
    for strategy in STRATEGIES:
        if strategy in record["runs"]:
            continue
        plan = plan_adaptation(config(code, strategy, args))
        clock = StageClock()
        started = time.perf_counter()
        result = run_adaptation(plan, listener=clock)
        models = models_of(result)
        source = record.get("source_model")
        if source is not None and models["source_model"] != source:
            raise RuntimeError(f"{code}: the source model's scores differ between runs: {source} {models['source_model']}")
        record["source_model"] = models["source_model"]
        record["counts"] = record.get("counts") or sample_counts(result)
        record["runs"][strategy] = {"step0": models["adapted_step0"], "trained": models["adapted_trained"],
                                    "all_scores": result.scores, "seconds": round(time.perf_counter() - started, 1),
                                    "stage_seconds": clock.seconds, "init_counts": result.init_report.get("counts"),
                                    "code_version": result.code_version}
        record["config"] = wanted
        record["machine"] = {"platform": platform.platform(), "torch": torch.__version__,
                             "threads": torch.get_num_threads()}
        data["date"] = time.strftime("%Y-%m-%d")
        save(data)
        print(code, strategy, {k: {m: round(v, 4) for m, v in s.items()} for k, s in models.items()},
              f"{record['runs'][strategy]['seconds']} s", flush=True)
    return record


def complete(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The languages with all three runs, in LANGUAGES' order."""
    return [data["languages"][c] for c in LANGUAGES
            if c in data["languages"] and set(STRATEGIES) <= set(data["languages"][c]["runs"])]


# -- rank agreement -----------------------------------------------------------------------

def _goodness(values: list[float], higher_better: bool) -> list[float]:
    return values if higher_better else [-v for v in values]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def pair_counts(a: list[float], b: list[float]) -> tuple[int, int, int]:
    """(concordant, discordant, tied in either) pairs of two score lists (higher = better)."""
    c = d = t = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        s = _sign(a[i] - a[j]) * _sign(b[i] - b[j])
        c, d, t = c + (s > 0), d + (s < 0), t + (s == 0)
    return c, d, t


def kendall(groups: list[tuple[list[float], list[float]]], *, permutations: int = 20000,
            seed: int = 0) -> dict[str, Any]:
    """Kendall's tau-a of two metrics' orderings, pairs counted within each group (a language)
    only, and its two-sided permutation p-value (one metric's values shuffled within each
    group; exact when the groups have few enough orderings)."""
    def tau(gs) -> float:
        c = d = n = 0
        for a, b in gs:
            ci, di, ti = pair_counts(a, b)
            c, d, n = c + ci, d + di, n + ci + di + ti
        return (c - d) / n if n else float("nan")

    observed = tau(groups)
    sizes = [math.factorial(len(a)) for a, _ in groups]
    total = math.prod(sizes)
    hits = 0
    if total <= permutations:
        for orders in itertools.product(*(itertools.permutations(b) for _, b in groups)):
            hits += abs(tau([(a, list(o)) for (a, _), o in zip(groups, orders)])) >= abs(observed) - 1e-12
        p, exact = hits / total, True
    else:
        rng = random.Random(seed)
        for _ in range(permutations):
            shuffled = [(a, rng.sample(b, len(b))) for a, b in groups]
            hits += abs(tau(shuffled)) >= abs(observed) - 1e-12
        p, exact = (hits + 1) / (permutations + 1), False
    return {"tau": observed, "p": p, "exact": exact, "n_models": sum(len(a) for a, _ in groups)}


def model_rows(record: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """row name -> {'step0': scores, 'trained': scores}; the source model is not trained,
    so its one score stands in both columns."""
    rows = {"source model": {"step0": record["source_model"], "trained": record["source_model"]}}
    for strategy in STRATEGIES:
        rows[strategy] = {"step0": record["runs"][strategy]["step0"], "trained": record["runs"][strategy]["trained"]}
    return rows


def metric_values(scores: list[dict[str, float]], metric: str) -> list[float]:
    key, higher = METRICS[metric]
    return _goodness([s[key] for s in scores], higher)


def agreement(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Kendall tau between every two metrics' orderings of the models: per language and
    point (the 4 rows at step 0; the 4 after 20 steps), per language over the 7 distinct
    models (source, 3 at step 0, 3 trained), and across languages (pairs within a language)."""
    out: dict[str, Any] = {}
    for m1, m2 in itertools.combinations(METRICS, 2):
        entry: dict[str, Any] = {}
        all_groups = []
        for record in records:
            rows = model_rows(record)
            for point in ("step0", "trained"):
                scores = [r[point] for r in rows.values()]
                entry[f"{record['language']}.{point}"] = kendall([(metric_values(scores, m1),
                                                                   metric_values(scores, m2))])
            seven = [record["source_model"]] + [rows[s][p] for p in ("step0", "trained") for s in STRATEGIES]
            group = (metric_values(seven, m1), metric_values(seven, m2))
            all_groups.append(group)
            entry[f"{record['language']}.all7"] = kendall([group])
        if len(all_groups) > 1:
            entry["pooled"] = kendall(all_groups)
        out[f"{m1}~{m2}"] = entry
    return out


def ranking(rows: dict[str, dict[str, dict[str, float]]], point: str, metric: str) -> str:
    key, higher = METRICS[metric]
    ordered = sorted(rows, key=lambda name: rows[name][point][key], reverse=higher)
    text = ordered[0]
    for before, name in itertools.pairwise(ordered):  # equal scores (a tie) joined with '='
        text += (" = " if rows[name][point][key] == rows[before][point][key] else " > ") + name
    return text


# -- report ------------------------------------------------------------------------------

def _se(p: float, n: int | None) -> float | None:
    return math.sqrt(p * (1 - p) / n) if n else None


def table(record: dict[str, Any]) -> list[str]:
    rows = model_rows(record)
    counts = record["counts"]
    lines = [(f"### {NAMES.get(record['language'], record['language'])} (Bible {' + '.join(record['bibles'])}; "
             f"BPB: {counts['bpb_texts']} {counts['bpb_split']} texts; SR-B: {counts['srb_verses']} test verses "
             f"<-> `k`, layer {counts['srb_layer']}; {TASK}: {counts['lm_eval_docs']} documents)"), "",
             ("| model | BPB step 0 | BPB after 20 | SR-B tgt->en top-10 step 0 | after 20 | SR-B en->tgt top-10 "
             "step 0 | after 20 | bible_continuation acc step 0 | after 20 |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        cells = []
        for metric in METRICS:
            key = METRICS[metric][0]
            fmt = "{:.3f}"
            cells += [fmt.format(r["step0"][key]), fmt.format(r["trained"][key])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def report(data: dict[str, Any]) -> str:
    records = complete(data)
    agree = agreement(records)
    first = records[0]["config"]
    lines = [
        "# Do BPB, SR-B and the lm-eval task agree? (issue #30, item 4)", "",
        ("Script: `benchmarks/evaluation_agreement.py`; numbers: `benchmarks/results/evaluation_agreement.json`. "
        f"Measured {data.get('date', '?')} on the project's shared 2-core CPU machine."), "",
        ("SmolLM2-135M-Instruct (the packaged GGUF) adapted with `combined`, `fvt` and `mean`, each one run of "
        f"the product (`run_adaptation`): the {first['vocab_size'] // 1000}k target tokenizer, "
        f"{first['train_steps']} embeddings-only steps of {first['batch_size']} x {first['block_size']} tokens, "
        "with the pipeline's `srb: true` and `lm_eval_tasks: [bible_continuation]`. "
        f"Reduced for the CPU budget: BPB on the first {first['eval_texts']} held-out test texts (the product's "
        f"default is 300), SR-B on the first {first['srb_verses']} test verses in the Bible's order (default 500), "
        f"bible_continuation on its first {first['lm_eval_limit']} documents (default all, 500), no learning "
        "curve. SR-B: top-10 accuracy of retrieving each verse's translation among "
        "all the verses (mean-pooled middle hidden layer; chance = 10 / verses); bible_continuation: choose a "
        "test verse's true second half among four (chance 0.25). BPB: lower is better; the others: higher. "
        "The source model is not trained: its one score stands in both columns and in both rankings."), "",
    ]
    for record in records:
        lines += table(record)
        counts = record["counts"]
        rows = model_rows(record)
        acc = [r[p][METRICS["acc"][0]] for r in rows.values() for p in ("step0", "trained")]
        srb = [r[p][METRICS[m][0]] for r in rows.values() for p in ("step0", "trained")
               for m in ("srb_to_en", "srb_from_en")]
        se_acc = _se(sum(acc) / len(acc), counts["lm_eval_docs"])
        se_srb = _se(sum(srb) / len(srb), counts["srb_verses"])
        lines += ["", (f"Standard error of one number (binomial, at the table's mean): SR-B top-10 "
                      f"{se_srb:.3f}, accuracy {se_acc:.3f}; SR-B chance {10 / counts['srb_verses']:.3f}."), ""]
        for point, title in (("step0", "step 0"), ("trained", "after 20 steps")):
            lines.append(f"- Ranking {title}: " + "; ".join(f"{LABELS[m]}: {ranking(rows, point, m)}"
                                                              for m in METRICS))
        seconds = sum(run["seconds"] for run in record["runs"].values())
        lines += [f"- Wall time of the three runs: {seconds / 60:.1f} min.", ""]
    lines += ["## Rank agreement (Kendall tau)", "",
              ("tau-a between two metrics' orderings of the models (+1: the same order, 0: unrelated, -1: reversed), "
              "with its two-sided permutation p-value. Per language: the 4 rows at step 0, the 4 after 20 steps, "
              "and all 7 distinct models (source, three at step 0, three trained). Pooled: the 7 models of every "
              "language, pairs counted within a language only."), ""]
    keys = [f"{r['language']}.{p}" for r in records for p in ("step0", "trained", "all7")]
    if len(records) > 1:
        keys.append("pooled")
    lines += ["| metrics | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for pair, entry in agree.items():
        m1, m2 = pair.split("~")
        lines.append(f"| {LABELS[m1]} ~ {LABELS[m2]} | " + " | ".join(
            f"{entry[k]['tau']:+.2f} (p {entry[k]['p']:.2f})" for k in keys) + " |")
    lines += ["", ("With 4 models a tau of +1 has p = 1/12 two-sided (0.08): no 4-model ranking alone can be "
              "significant at 5%."), ""]
    return "\n".join(lines) + kept_findings()


def kept_findings() -> str:
    """The hand-written ``## Findings`` section of the markdown already there (a reading of
    the numbers, not a number), kept when the tables are rebuilt."""
    if not MD_PATH.exists():
        return ""
    text = MD_PATH.read_text()
    start = text.find(FINDINGS)
    return "" if start < 0 else "\n" + text[start:].rstrip() + "\n"


def load() -> dict[str, Any]:
    return json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {"languages": {}}


def save(data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    records = complete(data)
    data["agreement"] = agreement(records) if records else {}
    tmp = JSON_PATH.with_name(f".{JSON_PATH.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(JSON_PATH)
    if records:
        MD_PATH.write_text(report(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=list(LANGUAGES))
    parser.add_argument("--eval-texts", type=int, default=100, help="held-out texts scored for BPB (product: 300)")
    parser.add_argument("--srb-verses", type=int, default=100, help="SR-B test verses (product: 500)")
    parser.add_argument("--lm-eval-limit", type=int, default=100, help=f"{TASK} documents (product: all, 500)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "artifacts" / "cache")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "artifacts" / "evaluation_agreement" / "models")
    parser.add_argument("--report", action="store_true", help="only rebuild the markdown from the JSON")
    args = parser.parse_args()
    data = load()
    if not args.report:
        for code in args.languages:
            run_language(code, args, data)
    save(data)
    if MD_PATH.exists():
        print(MD_PATH.read_text())


if __name__ == "__main__":
    main()
