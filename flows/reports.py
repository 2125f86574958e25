"""Prefect artifacts of a run: a progress bar while it runs, then a markdown summary, a
metrics table and a link to the learning-curve plot.

Progress is counted in stages of the run's plan (``transfer.planning.plan``), the same unit the CLI's
progress bar uses: ``progress_observers`` lets a local caller (the CLI, a test) follow the
same updates that go to the Prefect API.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from transfer.publish.result import AdaptResult
from transfer.train.callbacks import TrainingCallback

#: Called as ``observer(artifact_id, percent, description)`` after every progress update.
ProgressObserver = Callable[[UUID | None, float, str], None]
progress_observers: list[ProgressObserver] = []


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


class RunProgress:
    """A Prefect progress artifact advanced stage by stage (``done / total`` in percent)."""

    def __init__(self, total: int, key: str) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.artifact_id: UUID | None = create_progress_artifact(
            progress=0.0, key=key, description="starting"
        )
        self._notify(0.0, "starting")

    def _notify(self, percent: float, description: str) -> None:
        for observer in progress_observers:
            observer(self.artifact_id, percent, description)

    def update(self, description: str, *, finished_stage: bool = False, within: float = 0.0) -> float:
        """``within``: the share (0..1) of the running stage already done (training steps)."""
        if finished_stage:
            self.done += 1
            # stages that landed in the pipeline after the plan was written still count
            self.total = max(self.total, self.done)
        share = min(max(within, 0.0), 1.0) if not finished_stage else 0.0
        percent = round(100.0 * min(self.done + share, self.total) / self.total, 1)
        if self.artifact_id is not None:
            update_progress_artifact(self.artifact_id, progress=percent, description=description)
        self._notify(percent, description)
        return percent


class TrainingProgress(TrainingCallback):
    """The trainer's callback (``transfer.train.callbacks``) that moves the run's progress
    artifact during training: about ``updates`` times per training stage, with the loss."""

    def __init__(self, progress: RunProgress, updates: int = 20) -> None:
        self.progress = progress
        self.updates = max(updates, 1)
        self.total = 0
        self.every = 1

    def on_train_start(self, total_steps: int, info: dict[str, Any]) -> None:
        self.total = max(int(total_steps), 1)
        self.every = max(self.total // self.updates, 1)

    def on_step(self, step: int, metrics: dict[str, Any]) -> None:
        if step % self.every and step != self.total:
            return
        loss = metrics.get("loss")
        note = f"train ({metrics.get('stage', '')}): step {step}/{self.total}"
        self.progress.update(note + (f", loss {loss:.3f}" if loss is not None else ""),
                             within=step / self.total)


def training_callbacks(progress: RunProgress | None) -> tuple[TrainingCallback, ...]:
    """The callbacks a run hands its train stage (``run_adaptation(callbacks=...)``):
    ``TrainingProgress`` when the run has a progress artifact."""
    return () if progress is None else (TrainingProgress(progress),)


def result_markdown(result: AdaptResult) -> str:
    """The run's summary artifact: its ``RunSummary`` as markdown (the same evaluation table
    as the model card), then how its stages were obtained."""
    from transfer.publish.summary import (
        RunSummary,
        evaluations_markdown,
        fertility_line,
        init_line,
        markdown_table,
        task_scores_markdown,
    )

    summary = RunSummary.from_result(result)
    cfg = result.config
    tasks = task_scores_markdown(summary)
    stages = markdown_table(["stage", "state"], [[label, "cached" if cached else "built"]
                                                 for label, cached in summary.stages_cached.items()])
    return (
        f"# {summary.name}\n\n"
        f"Model: `{result.model_dir}`  \nCode version: `{result.code_version}`  \n"
        f"Strategy: `{summary.strategy}`, vocabulary {cfg.vocab_size}, "
        f"{cfg.total_train_steps} training steps, {result.seconds:.0f} s\n\n"
        + (f"Strategy choice: {cfg.strategy_choice}\n\n" if cfg.strategy_choice else "")
        + f"{evaluations_markdown(summary)}\n\n"
        + (f"{tasks}\n\n" if tasks else "")
        + f"{fertility_line(summary)}\n\n"
        f"Initialization: {init_line(summary)}\n\n{stages}\n"
    )


def metrics_rows(result: AdaptResult) -> list[dict[str, object]]:
    """The run's metrics table artifact: every evaluation (in report order, with the model
    and texts in words), then both tokenizers' fertility."""
    from transfer.publish.summary import RunSummary

    summary = RunSummary.from_result(result)
    rows: list[dict[str, object]] = [
        {"metric": f"{summary.metric}/{row.label}", "value": round(row.value, 4),
         "evaluation": f"{row.model} on {row.texts}" if row.texts else row.model}
        for row in summary.rows
    ]
    for model, values in summary.task_scores.items():  # SR-B and lm-eval, as the registry names them
        for name, value in values.items():
            rows.append({"metric": f"{name}/{model}", "value": round(float(value), 4), "evaluation": model})
    for side in ("source", "target"):
        for name, value in summary.fertility.get(side, {}).items():
            rows.append({"metric": f"fertility/{side}/{name}", "value": round(float(value), 4), "evaluation": ""})
    return rows


def plot_learning_curve(result: AdaptResult, path: Path) -> Path | None:
    """Training loss per step (and evaluations by step, if any) as a PNG; None without training."""
    log = result.train_log or {}
    losses = log.get("losses") or []
    if not losses:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(range(1, len(losses) + 1), losses, label="training loss (nats/token)")
    evaluations = log.get("evaluations") or {}
    if evaluations:
        # JSON turned the step numbers into strings
        points = sorted((int(step), float(value)) for step, value in evaluations.items())
        axis.plot(*zip(*points, strict=True), "o-", label="held-out BPB")
    axis.set_xlabel("step")
    axis.set_title(result.config.model_name())
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)
    return path


def learning_curve_file(result: AdaptResult, path: Path) -> Path | None:
    """The trainer's dev-BPB curve (``curve.json`` in the train stage folder) plotted next to
    the reports, with the source model on the same dev texts as the line to beat (so cache
    clean-ups do not break the link); else a plot of the step losses."""
    from transfer.publish.labels import SOURCE_MODEL_TITLE, SOURCE_ON_CURVE_TEXTS
    from transfer.publish.result import trainer_curve_file
    from transfer.train.curves import plot_curves, read_json

    trainer_curve = trainer_curve_file(result)
    if trainer_curve is not None:
        reference = result.scores.get(SOURCE_ON_CURVE_TEXTS)
        references = {SOURCE_MODEL_TITLE: reference} if reference is not None else None
        return plot_curves([read_json(trainer_curve)], path, references=references,
                           title=f"{result.config.model_name()}: dev bits per byte")
    return plot_learning_curve(result, path)


def publish_reports(result: AdaptResult, reports_dir: Path) -> dict[str, UUID | None]:
    """The summary, metrics table and learning-curve link of a finished run."""
    name = result.config.model_name()
    ids: dict[str, UUID | None] = {}
    ids["summary"] = create_markdown_artifact(
        markdown=result_markdown(result), key=artifact_key(name, "summary"),
        description="Bits per byte before and after adaptation",
    )
    ids["metrics"] = create_table_artifact(
        table=metrics_rows(result), key=artifact_key(name, "metrics"),
        description="Bits per byte and fertility",
    )
    plot = learning_curve_file(result, reports_dir / name / "learning_curve.png")
    if plot is not None:
        ids["learning_curve"] = create_link_artifact(
            link=plot.resolve().as_uri(), link_text=f"learning curve of {name}",
            key=artifact_key(name, "learning-curve"), description="Training loss by step (PNG)",
        )
    return ids
