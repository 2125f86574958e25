"""``vocab-transfer models list|show`` (the registry) and ``vocab-transfer cache clean``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from flows.cli_render import console, fail
from transfer.engine.cache import default_cache_root
from transfer.settings.names import REGISTERED_MODEL_PREFIX

models_app = typer.Typer(help="Registered adapted models (MLflow model registry).", no_args_is_help=True)
cache_app = typer.Typer(help="The stage cache.", no_args_is_help=True)

_TRACKING = typer.Option(
    None, "--tracking-uri",
    help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else artifacts/registry/mlflow.db).")
_ARTIFACTS = typer.Option(Path("artifacts"), help="Artifacts folder holding registry/mlflow.db.")
_PREFIX = typer.Option(REGISTERED_MODEL_PREFIX, help="Registered model name prefix.")


def _registry(tracking_uri: str | None, artifacts: Path, prefix: str):
    from transfer.publish.registry_store import Registry

    return Registry(tracking_uri, artifacts_root=artifacts, prefix=prefix)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@models_app.command("list")
def list_models(
    language: str | None = typer.Option(None, help="Only this target language."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    tracking_uri: str | None = _TRACKING,
    artifacts: Path = _ARTIFACTS,
    prefix: str = _PREFIX,
) -> None:
    """Registered models per language: versions, lineage, bits per byte, aliases."""
    from transfer.errors import VocabTransferError

    try:
        versions = _registry(tracking_uri, artifacts, prefix).versions(language)
    except VocabTransferError as error:
        raise fail(error) from error
    if as_json:
        console.print_json(json.dumps([v.model_dump() | {"metrics": v.metrics} for v in versions]))
        return
    if not versions:
        console.print("no registered models")
        return
    table = Table(title="Registered models (bits per byte on held-out texts; lower is better)")
    for column in ("model", "ver", "aliases", "source", "strategy", "vocab", "split",
                   "source BPB", "step 0", "trained", "tok/word"):
        table.add_column(column, justify="right" if column in {"ver", "vocab", "source BPB", "step 0", "trained", "tok/word"} else "left")
    from transfer.publish.labels import ADAPTED_STEP0, ADAPTED_TRAINED, SOURCE_ON_TARGET

    for v in versions:
        m = v.metrics
        table.add_row(
            v.name, str(v.version), ",".join(v.aliases), v.tag("source_model") or "",
            v.tag("strategy") or "", v.tag("tokenizer.vocab_size") or "", v.tag("eval_split") or "",
            *(_fmt(m.get(f"bpb.{label}")) for label in (SOURCE_ON_TARGET, ADAPTED_STEP0, ADAPTED_TRAINED)),
            _fmt(m.get("fertility.target.tokens_per_word")),
        )
    console.print(table)


@models_app.command("show")
def show_model(
    ref: str = typer.Argument(..., help="NAME, NAME:VERSION, NAME:ALIAS or NAME@ALIAS (e.g. vocab-transfer-de@best)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    tracking_uri: str | None = _TRACKING,
    artifacts: Path = _ARTIFACTS,
    prefix: str = _PREFIX,
) -> None:
    """One registered version: lineage, metrics, aliases and where its files are."""
    from transfer.errors import VocabTransferError

    try:
        version = _registry(tracking_uri, artifacts, prefix).resolve(ref)
    except VocabTransferError as error:
        raise fail(error) from error
    if as_json:
        console.print_json(json.dumps(version.model_dump() | {"metrics": version.metrics}))
        return
    created = (datetime.fromtimestamp(version.created_ms / 1000, UTC).isoformat(timespec="seconds")
               if version.created_ms else "-")
    console.print(f"[bold]{version.name}[/] version {version.version}"
                  + (f" (aliases: {', '.join(version.aliases)})" if version.aliases else ""))
    console.print(f"registered {created}; run {version.run_id}")
    console.print(f"files: {version.source}")
    lineage = Table(title="lineage", show_header=False)
    lineage.add_column("field")
    lineage.add_column("value")
    from transfer.publish.registry_records import TAG

    for key, value in sorted(version.tags.items()):
        if key.startswith(TAG) and not key.startswith(TAG + "metric."):
            lineage.add_row(key[len(TAG):], value)
    console.print(lineage)
    metrics = Table(title="metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key, value in sorted(version.metrics.items()):
        metrics.add_row(key, f"{value:.4f}")
    console.print(metrics)


@cache_app.command("clean")
def clean(
    cache_dir: Path = typer.Option(default_cache_root, help="Stage cache folder (default $VOCAB_TRANSFER_CACHE, "
                                                            "else artifacts/cache)."),
    yes: bool = typer.Option(False, "--yes", help="Delete; without it only print what would go."),
    min_age_hours: float = typer.Option(
        1.0, help="Keep unregistered folders younger than this (a run may still need them)."),
    tracking_uri: str | None = _TRACKING,
    artifacts: Path = _ARTIFACTS,
    prefix: str = _PREFIX,
) -> None:
    """Remove stage cache folders that no registered model was built from."""
    from transfer.errors import VocabTransferError
    from transfer.publish.cache_clean import clean_cache

    try:
        plan = clean_cache(cache_dir, tracking_uri=tracking_uri, artifacts_root=artifacts,
                           prefix=prefix, min_age_s=min_age_hours * 3600, dry_run=not yes)
    except VocabTransferError as error:
        raise fail(error) from error
    verb = "removed" if yes else "would remove"
    for entry in plan.remove:
        console.print(f"{verb} {entry.stage}/{entry.key} ({entry.bytes / 2**20:.1f} MiB)")
    console.print(
        f"{verb} {len(plan.remove)} folder(s), {plan.bytes_freed / 2**20:.1f} MiB; kept "
        f"{len(plan.keep)} needed by registered models and {len(plan.too_young)} younger than "
        f"{min_age_hours:g} h" + ("" if yes else "; run with --yes to delete")
    )
