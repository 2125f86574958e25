"""Progress reporting: a callback interface, and a terminal progress bar built on it.

The trainer calls every callback's hooks; the Prefect flow uses the same interface for
its progress artifact, the CLI for a rich progress bar. The pipeline's train stage gets
them as an argument (``run_adaptation(cfg, callbacks=...)`` -> ``BuildContext``).
Callbacks run on the main process only (rank 0) under several processes.
"""

from __future__ import annotations

from typing import Any


class TrainingCallback:
    """Override the hooks you need; all are no-ops here.

    ``metrics`` of ``on_step``: ``loss``, ``lr``, ``stage``, ``tokens_seen``, ``bytes_seen``,
    ``tokens_per_second``, ``grad_norm``, ``total_steps``. ``on_eval``: ``dev_bpb``,
    ``dev_loss``, ``stage``, ``tokens_seen``, ``bytes_seen``.
    """

    def on_train_start(self, total_steps: int, info: dict[str, Any]) -> None: ...

    def on_phase_start(self, phase: str, step: int) -> None: ...

    def on_step(self, step: int, metrics: dict[str, Any]) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, Any]) -> None: ...

    def on_checkpoint(self, step: int, path: str) -> None: ...

    def on_train_end(self, result: Any) -> None: ...


class RichProgress(TrainingCallback):
    """A rich progress bar with loss, tokens/s and the last dev score (for the CLI): BPB,
    or the masked-LM loss of a masked LM."""

    def __init__(self, console: Any | None = None) -> None:
        self.console = console
        self._progress: Any = None
        self._task: Any = None
        self._last_bpb: float | None = None

    def on_train_start(self, total_steps: int, info: dict[str, Any]) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} tok/s"),
            TextColumn("dev {task.fields[metric]} {task.fields[bpb]}"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total_steps, completed=info.get("start_step", 0),
                                             stage="", loss="-", speed="-", metric="BPB", bpb="-")

    def on_step(self, step: int, metrics: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, stage=metrics["stage"],
                                  loss=f"{metrics['loss']:.3f}", speed=f"{metrics['tokens_per_second']:.0f}")

    def on_eval(self, step: int, metrics: dict[str, Any]) -> None:
        if self._progress is None:
            return
        if metrics.get("dev_bpb") is not None:
            self._progress.update(self._task, metric="BPB", bpb=f"{metrics['dev_bpb']:.3f}")
        elif metrics.get("dev_loss") is not None:  # a masked LM: no BPB, its masked-LM loss
            self._progress.update(self._task, metric="MLM loss", bpb=f"{metrics['dev_loss']:.3f}")

    def on_train_end(self, result: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
