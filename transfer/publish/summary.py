"""A run's results as one data model, built once from ``AdaptResult``.

The CLI's table, the Prefect summary and metrics table, the model card, the registry's
metrics and the strategy comparison all show the same facts: each evaluation (who was
scored on which texts, and the value), the final metric, the tokenizers' fertility and
how the target tokens were initialized. ``RunSummary`` holds them in report order with
their human names (``transfer.publish.labels``); the reports only render it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from transfer.publish.labels import (
    ADAPTED_STEP0,
    ADAPTED_TRAINED,
    METRIC_NAMES,
    SOURCE_ON_TARGET,
    TASK_MODELS,
    evaluation_label,
    final_label,
    in_label_order,
    task_metric_title,
    task_model_title,
)

if TYPE_CHECKING:
    from transfer.publish.result import AdaptResult


@dataclass(frozen=True)
class EvaluationRow:
    """One evaluation: its label, the model and texts in words, and its value."""

    label: str
    model: str
    texts: str
    value: float
    adapted: bool


@dataclass(frozen=True)
class GenerationSample:
    """One generation shown on the model card: a fixed prompt and the model's greedy
    continuation (``chat``: the prompt was a user turn in the chat template)."""

    prompt: str
    text: str
    chat: bool
    stopped_at_eos: bool
    max_new_tokens: int


@dataclass(frozen=True)
class RunSummary:
    """What a finished run measured, in the order and words every report uses."""

    name: str  # the run's model name
    strategy: str
    metric: str  # "bpb", or "mlm_loss" for a masked LM
    rows: tuple[EvaluationRow, ...]
    fertility: dict[str, dict[str, float]]  # "source"/"target" -> tokens_per_word, bytes_per_token
    init_counts: dict[str, int]
    stages_cached: dict[str, bool]
    final_label: str | None
    samples: tuple[GenerationSample, ...] = ()  # generations for the card (publish step only)
    # opt-in task evaluations: model -> metric -> value (higher is better), AdaptResult.task_scores
    task_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    train_steps: int = 0

    @classmethod
    def from_result(cls, result: AdaptResult, *, samples: Sequence[GenerationSample] = ()) -> RunSummary:
        cfg = result.config
        rows = []
        for key, value in in_label_order(result.scores):
            label = evaluation_label(key)
            rows.append(EvaluationRow(key, label.title(strategy=cfg.strategy, steps=cfg.total_train_steps),
                                      label.texts, float(value), label.adapted))
        return cls(
            name=cfg.model_name(),
            strategy=cfg.strategy,
            metric=result.metric,
            rows=tuple(rows),
            fertility={side: dict(values) for side, values in result.fertility.items()},
            init_counts=dict(result.init_report.get("counts", {})),
            stages_cached=dict(result.stages_cached),
            final_label=final_label(result.scores),
            samples=tuple(samples),
            task_scores={model: dict(values) for model, values in result.task_scores.items()},
            train_steps=cfg.total_train_steps,
        )

    @property
    def metric_name(self) -> str:
        return METRIC_NAMES[self.metric]

    def value(self, label: str) -> float | None:
        return next((row.value for row in self.rows if row.label == label), None)

    @property
    def final(self) -> float | None:
        """The final model's value: after training when the run trained, else at step 0."""
        return None if self.final_label is None else self.value(self.final_label)

    @property
    def source_model(self) -> float | None:
        """The source model on the target-language evaluation texts: the line to beat."""
        return self.value(SOURCE_ON_TARGET)

    @property
    def step0(self) -> float | None:
        return self.value(ADAPTED_STEP0)

    @property
    def trained(self) -> float | None:
        return self.value(ADAPTED_TRAINED)

    @property
    def gain_vs_source(self) -> float | None:
        """How much lower the final model scores than the source model on the same texts."""
        if self.final is None or self.source_model is None:
            return None
        return self.source_model - self.final

    @property
    def stages_reused(self) -> str:
        """``"cached/all"``: how many of the run's stages came from the cache."""
        return f"{sum(self.stages_cached.values())}/{len(self.stages_cached)}"

    def fertility_value(self, side: str, name: str) -> float:
        return float(self.fertility.get(side, {}).get(name, float("nan")))


# ---------------------------------------------------------------- markdown renderers

def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def evaluations_markdown(summary: RunSummary) -> str:
    """The evaluations as a (model, texts, value) markdown table, the source model first."""
    return markdown_table(["model", "texts", summary.metric_name],
                          [[row.model, row.texts, f"{row.value:.4f}"] for row in summary.rows])


def task_scores_table(summary: RunSummary) -> tuple[list[str], list[list[str]]] | None:
    """The task evaluations (SR-B, lm-evaluation-harness) as (header, rows), a metric a row
    and a model a column (the source model first); None when the run had none."""
    models = [m for m in TASK_MODELS if m in summary.task_scores]
    if not models:
        return None
    metrics = list(dict.fromkeys(name for m in models for name in summary.task_scores[m]))
    header = ["metric (higher is better)"] + [task_model_title(m, strategy=summary.strategy,
                                                               steps=summary.train_steps) for m in models]
    rows = [[task_metric_title(name)] + [_cell(summary.task_scores[m].get(name)) for m in models]
            for name in metrics]
    return header, rows


def task_scores_markdown(summary: RunSummary) -> str | None:
    """``task_scores_table`` as markdown; None when the run had none."""
    table = task_scores_table(summary)
    return None if table is None else markdown_table(*table)


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def fertility_line(summary: RunSummary) -> str:
    """``Fertility (tokens/word): source tokenizer 2.17, target tokenizer 1.21``."""
    parts = [f"{side} tokenizer {summary.fertility_value(side, 'tokens_per_word'):.2f}"
             for side in ("source", "target") if side in summary.fertility]
    return "Fertility (tokens/word): " + ", ".join(parts)


def init_line(summary: RunSummary) -> str:
    """How the target tokens were set, most first: ``31000 computed, 741 fallback, ...``."""
    counts = sorted(summary.init_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {label}" for label, n in counts) or "no report"


def _fenced(text: str) -> str:
    """``text`` in a code block whose fence is longer than any backtick run inside it."""
    run, best = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        best = max(best, run)
    fence = "`" * max(3, best + 1)
    body = text.strip("\n") if text.strip() else ("(only whitespace)" if text else "(nothing)")
    return f"{fence}text\n{body}\n{fence}"


def samples_markdown(summary: RunSummary) -> str:
    """The card's generations: how they were made, then each prompt and its continuation."""
    first = summary.samples[0]
    how = ("each prompt sent as a user turn through the model's chat template, stopping at its "
           "end-of-turn token" if first.chat else "each prompt given as plain text to continue")
    parts = [(f"Greedy generations of at most {first.max_new_tokens} new tokens from fixed prompts, {how}. "
             "They show what the model does with target-language input; the metrics above measure it.")]
    for sample in summary.samples:
        cut = "" if sample.stopped_at_eos or not sample.chat else f"\n\n(cut at {sample.max_new_tokens} tokens)"
        parts.append(f"**Prompt:** {sample.prompt}\n\n{_fenced(sample.text)}{cut}")
    return "\n\n".join(parts)
