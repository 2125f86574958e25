"""What the command line shows: a run's result table, a plan, the stage progress bar, a
plan's notes and errors (one console for all commands, ``flows.cli`` and its siblings)."""

from __future__ import annotations

from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def print_result(result) -> None:
    """The run's ``RunSummary`` as a table (the source model's rows first), then fertility,
    initialization and cache use."""
    from transfer.publish.summary import RunSummary, fertility_line, init_line, task_scores_table

    summary = RunSummary.from_result(result)
    cfg = result.config
    table = Table(title=f"{summary.name}: {summary.metric_name} on held-out {cfg.eval_split} texts")
    table.add_column("model")
    table.add_column("texts")
    table.add_column("BPB" if summary.metric == "bpb" else summary.metric_name, justify="right")
    for row in summary.rows:
        table.add_row(row.model, row.texts, f"{row.value:.4f}")
    console.print(table)
    task_table = task_scores_table(summary)
    if task_table is not None:  # SR-B and lm-eval: a metric a row, a model a column
        header, rows = task_table
        tasks = Table(title="Task evaluations")
        tasks.add_column(header[0])
        for title in header[1:]:
            tasks.add_column(title, justify="right")
        for row in rows:
            tasks.add_row(*row)
        console.print(tasks)
    console.print(fertility_line(summary))
    console.print(f"Initialization: {init_line(summary)}")
    console.print(f"Stages reused from cache: {summary.stages_reused}")
    console.print(f"Model saved to [bold]{result.model_dir}[/] in {result.seconds:.0f} s")


def print_plan(plan, title: str) -> None:
    table = Table(title=title)
    for column in ("stage", "state", "est. time", "folder"):
        table.add_column(column, justify="right" if column == "est. time" else "left")
    for stage in plan.stages:
        table.add_row(stage.label, "cached" if stage.cached else "[yellow]to build[/]",
                      "" if stage.cached else f"{stage.seconds:.0f} s", stage.path)
    console.print(table)
    size = plan.source
    memory = f"{plan.peak_memory_bytes / 2**30:.1f} GiB" if plan.peak_memory_bytes else "unknown"
    params = f"{size.parameters / 1e6:.0f}M parameters" if size.parameters else "size unknown"
    cached = f"{len(plan.stages) - len(plan.to_build)}/{len(plan.stages)} stages cached"
    if plan.to_build and not plan.flops_per_second:  # planned for a device this machine lacks
        console.print(f"{cached}; peak memory ~{memory} (source {params}); no time estimates for other hardware.")
    else:
        console.print(
            f"{cached}; estimate for the rest: ~{plan.seconds / 60:.1f} min, peak memory ~{memory} "
            f"(source {params}; device at {plan.flops_per_second / 1e9:.0f} GFLOP/s fp32). "
            "Rough: 6 FLOPs per parameter and token for training, 2 for scoring."
        )
    print_training_memory(plan)


def print_training_memory(plan) -> None:
    """One device's memory for each training stage (the estimate that refuses runs that do
    not fit), with the layout it assumes: processes, sharding, loss kernel, checkpointing."""
    from pathlib import Path

    from transfer.settings.memory_budget import planned_memory

    if not plan.config.total_train_steps:
        return
    source = plan.stage("source")
    planned = planned_memory(plan.config, Path(source.path) if source.cached else None, planning_only=True)
    if planned is not None:
        print_memory_plan(*planned, {"embeddings": plan.config.train_steps, "full": plan.config.full_steps})


def print_memory_plan(memory, available: int, steps: dict[str, int], what: str = "training memory per device") -> None:
    """The table of a ``MemoryPlan`` (a row per training stage) and whether it fits ``available``."""
    from transfer.train.memory import human_bytes

    table = Table(title=(f"{what}: {memory.world_size} process(es) on {memory.device_type}, "
                         f"sharding {memory.sharding}, loss {memory.loss_kernel}, activation checkpointing "
                         f"{'on' if memory.activation_checkpointing else 'off'}, {memory.batch_size} x "
                         f"{memory.block_size} tokens per micro-batch"))
    for column in ("stage", "steps", "weights", "gradients", "optimizer", "activations", "loss", "total"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in memory.stages:
        e = stage.estimate
        table.add_row(stage.stage, str(steps[stage.stage]), human_bytes(e.weights), human_bytes(e.gradients),
                      human_bytes(e.optimizer), human_bytes(e.activations), human_bytes(e.logits),
                      human_bytes(e.total))
    console.print(table)
    fits = memory.peak.total <= available
    console.print(f"{human_bytes(available)} available per device here: "
                  + ("fits" if fits else "[red]does not fit[/]")
                  + " (total: the parts x 1.2 for the allocator)."
                  + (f" {escape(memory.loss_note)}" if memory.loss_note else ""))


@contextmanager
def stage_progress():
    """A progress bar over the run's stages, fed by the flow's progress updates."""
    from flows import reports

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task_id = bar.add_task("starting", total=100)

        def observe(_artifact, percent: float, description: str) -> None:
            bar.update(task_id, completed=percent, description=description)

        reports.progress_observers.append(observe)
        try:
            yield
        finally:
            reports.progress_observers.remove(observe)


def error_text(error: Exception) -> str:
    """One line per bad field for validation errors (field name, problem, given value)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']} (got {e.get('input')!r})"
            for e in error.errors()
        )
    return str(error)


def fail(error: Exception) -> typer.Exit:
    # soft wrap: a path in the message stays whole, to be copied from the terminal
    console.print("[red]error:[/] " + escape(error_text(error)), soft_wrap=True)
    return typer.Exit(code=2)


def print_notes(notes: list[str]) -> None:
    """A plan's notes: the strategy 'auto' chose and the warnings about valid but suspicious
    input (script, repetition, a corpus too small for vocab_size), before any work starts."""
    for note in notes:
        if note.startswith("warning: "):
            console.print("[yellow]warning:[/] " + escape(note.removeprefix("warning: ")))
        else:
            console.print(escape(note))
