"""Several initialization strategies on one language pair, measured in one run.

Each strategy is an ordinary adaptation (``run_adaptation``) of the same configuration with
only ``strategy`` changed, so the corpus, source, tokenizer, vector and source-model
evaluation stages are built once and shared from the cache, and every number in the table
comes from the same texts, tokenizer and training budget, as docs/DESIGN.md asks for BPB
comparisons. The result is a table (markdown and JSON) and one plot that overlays every
run's dev-BPB learning curve with the source model's own BPB as the line to beat.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from transfer.engine.cache import atomic_write
from transfer.errors import VocabTransferError
from transfer.init import strategy_parameters
from transfer.pipeline import run_adaptation
from transfer.planning.plan import RunPlan, plan_adaptation
from transfer.publish.labels import (
    METRIC_NAMES,
    SOURCE_MODEL_TITLE,
    SOURCE_ON_CURVE_TEXTS,
    SOURCE_ON_TARGET,
    final_language_scores,
    final_task_scores,
    language_scores,
    task_metric_title,
)
from transfer.publish.result import AdaptResult, trainer_curve_file
from transfer.publish.summary import RunSummary, markdown_table
from transfer.settings.config import AdaptConfig
from transfer.settings.strategy_choice import AUTO, choose_strategy
from transfer.train.curves import plot_curves, read_json


class ComparisonError(VocabTransferError):
    """A strategy comparison was asked for with an empty, repeated or unusable list."""


class StrategyRow(BaseModel):
    """One strategy's numbers: the metric at step 0 and after training, the init counts."""

    strategy: str
    strategy_params: dict[str, Any]
    step0: float
    trained: float | None
    counts: dict[str, int]
    model_dir: str
    seconds: float
    stages_reused: str  # "cached/all" stages of this run that came from the cache
    curve_file: str | None
    eval_sets: dict[str, float] = {}  # the final model's value on each evaluation set
    task_scores: dict[str, float] = {}  # the final model's SR-B / lm-eval metrics (higher is better)
    languages: dict[str, float] = {}  # a run of several languages: the final model's value on each

    @property
    def final(self) -> float:
        """The final model's value: after training when the run trained, else at step 0."""
        return self.trained if self.trained is not None else self.step0


class Comparison(BaseModel):
    """Every strategy's row plus the source model on its own tokenizer: on the evaluation
    texts (``source_model``) and on the learning curves' dev texts (``source_model_on_curves``)."""

    base: AdaptConfig
    metric: str
    train_steps: int
    source_model: float | None
    source_model_on_curves: float | None = None
    source_model_on_eval_sets: dict[str, float] = {}
    source_model_task_scores: dict[str, float] = {}
    source_model_on_languages: dict[str, float] = {}  # a run of several languages: on each one's texts
    rows: list[StrategyRow]

    @property
    def metric_name(self) -> str:
        return METRIC_NAMES[self.metric]

    def ranked(self) -> list[StrategyRow]:
        """Best first: by the final value (after training when there was training, else step 0)."""
        return sorted(self.rows, key=lambda r: r.final)


def strategy_configs(cfg: AdaptConfig, strategies: Sequence[str]) -> list[AdaptConfig]:
    """One config per strategy. ``cfg.strategy_params`` holds the parameters of all of them;
    each strategy gets the keys it takes, and a key that none takes is refused."""
    if not strategies:
        raise ComparisonError("strategies: give at least one strategy to compare")
    # 'auto' stands for the strategy it picks for this run's data (the demo compares it with mean)
    choices = {name: choose_strategy(cfg) for name in strategies if name == AUTO}
    strategies = [choices[name][0] if name in choices else name for name in strategies]
    repeated = sorted({s for s in strategies if list(strategies).count(s) > 1})
    if repeated:
        raise ComparisonError(f"strategies: {repeated} given more than once")
    accepted = {name: set(strategy_parameters(name)) for name in strategies}  # unknown name: refused here
    unused = sorted(set(cfg.strategy_params) - set().union(*accepted.values()))
    if unused:
        raise ComparisonError(
            f"strategy_params: {unused} is taken by none of {list(strategies)}; "
            + "; ".join(f"{name} takes {sorted(keys) or 'nothing'}" for name, keys in accepted.items())
        )
    configs = []
    for name in strategies:
        params = {k: v for k, v in cfg.strategy_params.items() if k in accepted[name]}
        choice = choices[AUTO][1] if AUTO in choices and name == choices[AUTO][0] else None
        configs.append(cfg.model_copy(update={"strategy": name, "strategy_params": params, "strategy_choice": choice}))
    return configs


def row_of(result: AdaptResult) -> StrategyRow:
    """One strategy's row, from the run's ``RunSummary``."""
    summary = RunSummary.from_result(result)
    curve = trainer_curve_file(result)
    return StrategyRow(
        strategy=summary.strategy,
        strategy_params=result.config.strategy_params,
        step0=summary.step0,
        trained=summary.trained,
        counts=summary.init_counts,
        model_dir=result.model_dir,
        seconds=round(result.seconds, 1),
        stages_reused=summary.stages_reused,
        curve_file=str(curve) if curve else None,
        eval_sets=_final_on_sets(result),
        task_scores=final_task_scores(result.task_scores),
        languages=final_language_scores(result.scores, result.config.target_languages),
    )


def _set_scores(result: AdaptResult, model: str) -> dict[str, float]:
    from transfer.corpus.eval_sets import parse_eval_set_label

    found = {}
    for label, value in result.scores.items():
        parsed = parse_eval_set_label(label)
        if parsed is not None and parsed[0] == model:
            found[parsed[1]] = value
    return found


def _final_on_sets(result: AdaptResult) -> dict[str, float]:
    """The final model's value on each evaluation set (after training when it trained)."""
    return {**_set_scores(result, "adapted_step0"), **_set_scores(result, "adapted_trained")}


def strategy_plans(cfg: AdaptConfig, strategies: Sequence[str], *, measure: bool = False) -> list[RunPlan]:
    """The plan of each strategy's run (a bad list or config is refused here)."""
    return [plan_adaptation(config, measure=measure) for config in strategy_configs(cfg, strategies)]


def compare_strategies(
    cfg: AdaptConfig,
    strategies: Sequence[str],
    *,
    run: Callable[[RunPlan], AdaptResult] = run_adaptation,
    on_result: Callable[[AdaptResult], None] | None = None,
    plans: Sequence[RunPlan] | None = None,
) -> Comparison:
    """Adapt with each strategy in turn (shared stages come from the cache). Every config
    is planned, hence validated, before the first run starts, so a bad one costs nothing;
    ``plans``: those plans when the caller has made them already."""
    if plans is None:
        plans = strategy_plans(cfg, strategies)
    results = []
    for plan in plans:
        result = run(plan)
        if isinstance(result, dict):  # a Prefect flow may hand back its serialized result
            result = AdaptResult.model_validate(result)
        results.append(result)
        if on_result is not None:
            on_result(result)
    first = RunSummary.from_result(results[0])  # the source model's rows are shared by all runs
    return Comparison(
        base=cfg,
        metric=first.metric,
        train_steps=cfg.total_train_steps,
        source_model=first.source_model,
        source_model_on_curves=first.value(SOURCE_ON_CURVE_TEXTS),
        source_model_on_eval_sets=_set_scores(results[0], "source_model"),
        source_model_task_scores=dict(results[0].task_scores.get("source_model", {})),
        source_model_on_languages=language_scores(results[0].scores, SOURCE_ON_TARGET, cfg.target_languages),
        rows=[row_of(r) for r in results],
    )


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


#: The comparison table's optional columns: header (``{steps}``: the training budget) and cell.
_COLUMNS: dict[str, tuple[str, Callable[[StrategyRow], str]]] = {
    "step0": ("step 0", lambda row: _fmt(row.step0)),
    "trained": ("after {steps} steps", lambda row: _fmt(row.trained)),
    "counts": ("tokens by how they were set", lambda row: ", ".join(
        f"{n} {label}" for label, n in sorted(row.counts.items(), key=lambda kv: (-kv[1], kv[0])))),
    "seconds": ("seconds", lambda row: f"{row.seconds:.0f}"),
    "stages": ("stages from cache", lambda row: row.stages_reused),
    "model": ("model", lambda row: Path(row.model_dir).name),
}


def comparison_rows(comparison: Comparison, columns: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of the comparison, best first, then the source model (its value
    in the step-0 column): the one table that the markdown file and the CLI render."""
    sets = list(comparison.source_model_on_eval_sets) or sorted({n for r in comparison.rows for n in r.eval_sets})
    header = ["strategy"] + [_COLUMNS[c][0].format(steps=comparison.train_steps) for c in columns]
    header += [f"eval set {name}" for name in sets]  # one column per evaluation set: the final model
    # one column per task metric (SR-B, lm-eval): the final model's, higher is better
    tasks = list(dict.fromkeys([*comparison.source_model_task_scores, *(n for r in comparison.rows for n in r.task_scores)]))
    header += [task_metric_title(name) for name in tasks]
    # a run of several languages: the final model on each language (the step-0/trained columns: their byte-weighted mean)
    langs = list(dict.fromkeys([*comparison.source_model_on_languages, *(n for r in comparison.rows for n in r.languages)]))
    header += [f"language {lang}" for lang in langs]
    rows = [[row.strategy] + [_COLUMNS[c][1](row) for c in columns] + [_fmt(row.eval_sets.get(n)) for n in sets]
            + [_fmt(row.task_scores.get(n)) for n in tasks] + [_fmt(row.languages.get(n)) for n in langs]
            for row in comparison.ranked()]
    if comparison.source_model is not None or comparison.source_model_task_scores:
        rows.append([SOURCE_MODEL_TITLE] + [_fmt(comparison.source_model) if c == "step0" else "" for c in columns]
                    + [_fmt(comparison.source_model_on_eval_sets.get(n)) for n in sets]
                    + [_fmt(comparison.source_model_task_scores.get(n)) for n in tasks]
                    + [_fmt(comparison.source_model_on_languages.get(n)) for n in langs])
    return header, rows


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison as a markdown table, best first."""
    cfg = comparison.base
    header, rows = comparison_rows(comparison, ("step0", "trained", "counts", "seconds", "stages"))
    lines = [
        (f"# {cfg.source_model} -> {cfg.target_language}: {comparison.metric_name} on {cfg.eval_texts} "
         f"held-out {cfg.eval_split} texts"),
        "",
        (f"Target tokenizer of {cfg.vocab_size} tokens; {comparison.train_steps} training steps of "
        f"{cfg.batch_size} x {cfg.block_size} tokens (seed {cfg.seed}). Lower is better."),
        "",
        markdown_table(header, rows),
    ]
    return "\n".join(lines) + "\n"


def write_comparison(comparison: Comparison, folder: Path) -> dict[str, Path]:
    """``comparison.json``, ``comparison.md`` and, when the runs trained with learning
    curves, ``curves.png`` (every run overlaid, the source model as a reference line)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "comparison.json", "markdown": folder / "comparison.md"}
    atomic_write(paths["json"], json.dumps(comparison.model_dump(mode="json"), indent=1) + "\n")
    atomic_write(paths["markdown"], comparison_markdown(comparison))
    curves = []
    for row in comparison.rows:
        if row.curve_file:
            curve = read_json(Path(row.curve_file))
            curve.label = row.strategy
            curves.append(curve)
    if curves and comparison.metric == "bpb":
        # the reference line must be measured on the curves' texts, not the evaluation texts
        reference = comparison.source_model_on_curves
        references = {SOURCE_MODEL_TITLE: reference} if reference is not None else None
        cfg = comparison.base
        paths["plot"] = plot_curves(
            curves, folder / "curves.png", references=references,
            title=f"{cfg.target_language}: bits per byte on the first {cfg.curve_texts} dev texts, by strategy")
    return paths


def comparison_folder(cfg: AdaptConfig, strategies: Sequence[str]) -> Path:
    """``<output_dir>/../reports/compare-<source>-<lang>-<strategies>-<hash>``, beside the run
    reports; the hash of the shared settings keeps comparisons of other settings apart."""
    source = cfg.model_name().rsplit(f"-{cfg.target_language}-", 1)[0]
    shared = cfg.model_dump(mode="json", exclude={"strategy", "strategy_params", "device", "cache_dir",
                                                  "output_dir", "eval_batch_size", "compile", "tracking_uri",
                                                  "register_model", "registered_model_prefix", "card_samples"})
    digest = hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:8]
    name = f"compare-{source}-{cfg.target_language}-{'-'.join(strategies)}-{digest}"
    return Path(cfg.output_dir).parent / "reports" / name
