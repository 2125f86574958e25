"""Learning curves: dev bits per byte and loss against steps and against bytes seen.

BPB compares models with different tokenizers (docs/DESIGN.md); a masked LM has no BPB and its
curve holds the masked-LM loss instead (``metric``, the evaluate stage's metric name).
Bytes seen puts runs with
different tokenizers on one x axis, since the same training text is a different number
of tokens for each. Saved as CSV and JSON (atomic writes) and plotted with matplotlib; one
plot can overlay several runs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from transfer.engine.cache import atomic_write


@dataclass
class CurvePoint:
    """One evaluation: where the run was and what it scored on the dev texts."""

    step: int
    stage: str
    tokens_seen: int
    bytes_seen: int
    dev_bpb: float | None
    dev_loss: float | None  # nats per scored token
    train_loss: float | None  # mean of the losses since the previous point
    seconds: float  # training wall time so far (evaluations excluded)


#: Axis label of each metric a curve can hold.
METRIC_AXIS = {"bpb": "dev bits per byte", "mlm_loss": "dev masked-LM loss (nats per masked token)",
               "loss": "dev loss (nats per token)"}


@dataclass
class LearningCurve:
    """The evaluations of one run, in order. ``metric`` names what the curve is scored by:
    ``bpb`` (``dev_bpb``), or ``mlm_loss``/``loss`` (``dev_loss``) when there is no BPB."""

    label: str
    points: list[CurvePoint] = field(default_factory=list)
    metric: str = "bpb"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "metric": self.metric, "points": [asdict(p) for p in self.points]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearningCurve:
        return cls(label=data["label"], points=[CurvePoint(**p) for p in data["points"]],
                   metric=data.get("metric", "bpb"))  # curves written before the field: BPB

    def value(self, point: CurvePoint) -> float | None:
        """The point's score in this curve's metric."""
        return point.dev_bpb if self.metric == "bpb" else point.dev_loss

    def first_below(self, threshold: float) -> CurvePoint | None:
        """The first evaluation scoring below ``threshold`` (e.g. the source model's)."""
        for point in self.points:
            value = self.value(point)
            if value is not None and value < threshold:
                return point
        return None


def write_csv(curve: LearningCurve, path: Path) -> None:
    buffer = io.StringIO()
    names = [f.name for f in fields(CurvePoint)]
    writer = csv.DictWriter(buffer, fieldnames=["label", "metric", *names])
    writer.writeheader()
    for point in curve.points:
        writer.writerow({"label": curve.label, "metric": curve.metric, **asdict(point)})
    atomic_write(Path(path), buffer.getvalue())


def write_json(curve: LearningCurve, path: Path) -> None:
    atomic_write(Path(path), json.dumps(curve.to_dict(), indent=1) + "\n")


def read_json(path: Path) -> LearningCurve:
    return LearningCurve.from_dict(json.loads(Path(path).read_text()))


def plot_curves(
    curves: Sequence[LearningCurve],
    path: Path,
    *,
    references: dict[str, float] | None = None,
    title: str = "dev bits per byte",
) -> Path:
    """PNG with each run's metric (dev BPB, or the masked-LM loss) against bytes seen (left)
    and steps (right), one line per run; ``references`` draws horizontal lines (e.g. the
    source model's step-0 BPB)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (by_bytes, by_steps) = plt.subplots(1, 2, figsize=(12, 4.5))
    for curve in curves:
        pts = [p for p in curve.points if curve.value(p) is not None]
        if not pts:
            continue
        values = [curve.value(p) for p in pts]
        by_bytes.plot([p.bytes_seen / 1e6 for p in pts], values, marker="o", ms=3, label=curve.label)
        by_steps.plot([p.step for p in pts], values, marker="o", ms=3, label=curve.label)
    for name, value in (references or {}).items():
        for axis in (by_bytes, by_steps):
            axis.axhline(value, linestyle="--", linewidth=1, color="grey")
        by_bytes.annotate(name, (0, value), textcoords="offset points", xytext=(4, 4), fontsize=8, color="grey")
    by_bytes.set_xlabel("training text seen (MB of UTF-8)")
    by_steps.set_xlabel("optimizer steps")
    metrics = {curve.metric for curve in curves}
    ylabel = METRIC_AXIS.get(metrics.pop(), "dev metric") if len(metrics) == 1 else "dev metric"
    for axis in (by_bytes, by_steps):
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    by_bytes.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


def save_curve_files(curve: LearningCurve, folder: Path, stem: str = "curve") -> dict[str, Path]:
    """Write ``<stem>.csv``, ``<stem>.json`` and ``<stem>.png`` into ``folder``."""
    folder = Path(folder)
    paths = {"csv": folder / f"{stem}.csv", "json": folder / f"{stem}.json", "png": folder / f"{stem}.png"}
    write_csv(curve, paths["csv"])
    write_json(curve, paths["json"])
    plot_curves([curve], paths["png"], title=f"{curve.label}: {METRIC_AXIS.get(curve.metric, curve.metric)}")
    return paths
