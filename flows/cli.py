"""Command line: ``vocab-transfer adapt`` for one language pair, ``strategies`` to list them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(help="Adapt a pretrained language model to a new language.", no_args_is_help=True)
console = Console()


def _print_result(result) -> None:
    table = Table(title=f"{result.config.model_name()}: bits per byte on held-out {result.config.eval_split} texts")
    table.add_column("model")
    table.add_column("texts")
    table.add_column("BPB", justify="right")
    labels = {
        "source_model_on_source_language": ("source model, own tokenizer", "source language"),
        "source_model_on_target": ("source model, own tokenizer", "target language"),
        "adapted_step0": (f"adapted ({result.config.strategy}), step 0", "target language"),
        "adapted_trained": (f"adapted, after {result.config.train_steps} steps", "target language"),
    }
    for key, value in result.bpb.items():
        model, texts = labels.get(key, (key, ""))
        table.add_row(model, texts, f"{value:.4f}")
    console.print(table)
    fert = result.fertility
    console.print(
        f"Fertility (tokens/word): source tokenizer {fert['source']['tokens_per_word']:.2f}, "
        f"target tokenizer {fert['target']['tokens_per_word']:.2f}"
    )
    counts = result.init_report.get("counts", {})
    console.print(f"Initialization: {counts}")
    cached = [k for k, v in result.stages_cached.items() if v]
    console.print(f"Stages reused from cache: {len(cached)}/{len(result.stages_cached)}")
    console.print(f"Model saved to [bold]{result.model_dir}[/] in {result.seconds:.0f} s")


@app.command()
def adapt(
    config: Path | None = typer.Option(None, help="JSON file with AdaptConfig fields."),
    source_model: str | None = typer.Option(None, help="'smollm2', a .gguf file, a folder or a hub id."),
    target_language: str | None = typer.Option(None),
    target_bible: list[str] | None = typer.Option(None, help="Bible translation code(s) of the target language."),
    target_file: list[Path] | None = typer.Option(None, help="Target corpus file(s) or folder(s)."),
    strategy: str | None = typer.Option(None, help="Initialization strategy."),
    vocab_size: int | None = typer.Option(None),
    train_steps: int | None = typer.Option(None),
    eval_texts: int | None = typer.Option(None),
    device: str | None = typer.Option(None),
    cache_dir: Path | None = typer.Option(None),
    prefect: bool = typer.Option(True, help="Run as a Prefect flow (shows in the UI when a server is configured)."),
) -> None:
    """Adapt the source model to one target language and print bits per byte before and after."""
    from pydantic import ValidationError

    from transfer.config import AdaptConfig
    from transfer.errors import VocabTransferError

    values = json.loads(config.read_text()) if config else {}
    overrides = {
        "source_model": source_model, "target_language": target_language,
        "target_bible": target_bible, "target_files": [str(p) for p in target_file] if target_file else None,
        "strategy": strategy, "vocab_size": vocab_size, "train_steps": train_steps,
        "eval_texts": eval_texts, "device": device, "cache_dir": cache_dir,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = AdaptConfig(**values)
        if prefect:
            from flows.adapt_flow import adapt_flow

            result = adapt_flow(cfg)
        else:
            from transfer.pipeline import run_adaptation

            with console.status("adapting") as status:
                result = run_adaptation(cfg, listener=lambda s, state: status.update(f"{s}: {state}"))
    except (ValidationError, VocabTransferError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(code=2) from error
    _print_result(result)


@app.command()
def strategies() -> None:
    """List the registered initialization strategies."""
    from transfer.strategies import available_strategies, get_strategy

    for name in available_strategies():
        doc = (get_strategy(name).__doc__ or "").strip().splitlines()
        console.print(f"[bold]{name}[/]: {doc[0] if doc else ''}")


if __name__ == "__main__":
    app()
