"""Learning curves: dev bits per byte and loss against steps and against bytes seen.

BPB compares models with different tokenizers (DESIGN.md); bytes seen puts runs with
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

from transfer.cache import atomic_write


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


@dataclass
class LearningCurve:
    """The evaluations of one run, in order."""

    label: str
    points: list[CurvePoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "points": [asdict(p) for p in self.points]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearningCurve:
        return cls(label=data["label"], points=[CurvePoint(**p) for p in data["points"]])

    def first_below(self, threshold: float) -> CurvePoint | None:
        """The first evaluation whose dev BPB is below ``threshold`` (e.g. the source model's)."""
        for point in self.points:
            if point.dev_bpb is not None and point.dev_bpb < threshold:
                return point
        return None


def write_csv(curve: LearningCurve, path: Path) -> None:
    buffer = io.StringIO()
    names = [f.name for f in fields(CurvePoint)]
    writer = csv.DictWriter(buffer, fieldnames=["label", *names])
    writer.writeheader()
    for point in curve.points:
        writer.writerow({"label": curve.label, **asdict(point)})
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
    """PNG with dev BPB against bytes seen (left) and steps (right), one line per run;
    ``references`` draws horizontal lines (e.g. the source model's step-0 BPB)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (by_bytes, by_steps) = plt.subplots(1, 2, figsize=(12, 4.5))
    for curve in curves:
        pts = [p for p in curve.points if p.dev_bpb is not None]
        if not pts:
            continue
        by_bytes.plot([p.bytes_seen / 1e6 for p in pts], [p.dev_bpb for p in pts], marker="o", ms=3, label=curve.label)
        by_steps.plot([p.step for p in pts], [p.dev_bpb for p in pts], marker="o", ms=3, label=curve.label)
    for name, value in (references or {}).items():
        for axis in (by_bytes, by_steps):
            axis.axhline(value, linestyle="--", linewidth=1, color="grey")
        by_bytes.annotate(name, (0, value), textcoords="offset points", xytext=(4, 4), fontsize=8, color="grey")
    by_bytes.set_xlabel("training text seen (MB of UTF-8)")
    by_steps.set_xlabel("optimizer steps")
    for axis in (by_bytes, by_steps):
        axis.set_ylabel("dev bits per byte")
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
    plot_curves([curve], paths["png"], title=f"{curve.label}: dev bits per byte")
    return paths
