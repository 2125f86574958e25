"""``vocab-transfer evaluate MODEL... --text-file F``: score any models on your own texts
(``--task srb``: sentence retrieval on Bible verses; ``--lm-eval-task NAME``: tasks of
lm-evaluation-harness, beside or instead of bits per byte).

Each model is loaded with its own tokenizer (``smollm2``, a ``.gguf`` file, a local Hugging
Face folder, a hub id, or an adapted model folder from ``artifacts/models/``) and scored by
``transfer.evaluate.score.score_model``, the function the pipeline's evaluate stage runs:
bits per byte for causal LMs, the masked-LM loss for masked LMs (DESIGN, "Metric"). One
table, best first; each row names its metric.
"""

from __future__ import annotations

import gc
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli_render import console, fail
from transfer.evaluate.texts import DEFAULT_MAX_TEXTS

#: Table order of the metrics (lower is better for both; they do not compare to each other).
_METRIC_ORDER = {"bpb": 0, "mlm_loss": 1}
_METRIC_LABEL = {"bpb": "bits per byte", "mlm_loss": "masked-LM loss"}


@dataclass(frozen=True)
class Row:
    """One model's score (``details``: the totals the metric came from)."""

    model: str
    metric: str
    value: float
    details: dict[str, Any]


def score_models(models: list[str], texts: list[str], *, batch_size: int, device: str | None,
                 on_model=None) -> list[Row]:
    """Every model scored on ``texts``, best first (bits per byte rows, then masked-LM
    rows). Every path is checked before the first (slow) load; one model in memory at a
    time."""
    import torch

    from transfer.evaluate.score import score_model
    from transfer.source.loading import load_source, resolve_hub_revision, resolve_source

    for model in models:  # a missing path or an unreachable hub id fails before any load
        source = resolve_source(model)
        if source.kind == "hub":
            resolve_hub_revision(source.location, source.revision)
    rows = []
    for name in models:
        if on_model is not None:
            on_model(name)
        model, tokenizer = load_source(name)
        score = score_model(model, tokenizer, texts, batch_size=batch_size, device=device)
        rows.append(Row(name, score.metric, score.value, score.details))
        del model, tokenizer
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return sorted(rows, key=lambda r: (_METRIC_ORDER.get(r.metric, 2), r.value))


def short_names(models: list[str]) -> dict[str, str]:
    """A unique short name per model for an 80-column table: the folder or file name, with
    as many parent folders as it takes to tell two apart (``a/models/x`` and ``b/models/x``
    become ``a/models/x`` and ``b/models/x``, ``smollm2`` stays ``smollm2``)."""
    parts = {m: Path(m).parts or (m,) for m in models}
    depth = {m: 1 for m in models}
    while True:
        names = {m: "/".join(parts[m][-depth[m]:]) for m in models}
        clashes = {n for n in names.values() if list(names.values()).count(n) > 1}
        grow = [m for m in models if names[m] in clashes and depth[m] < len(parts[m])]
        if not grow:
            return names
        for m in grow:
            depth[m] += 1


def _table(rows: list[Row], title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "model", "metric", "value", "tokens/byte", "texts"):
        # numbers never cut short; a long model name folds inside its cell instead
        table.add_column(column, justify="left" if column in {"model", "metric"} else "right",
                         no_wrap=column != "model", overflow="fold" if column == "model" else "ellipsis")
    names = short_names([row.model for row in rows])
    for rank, row in enumerate(rows, start=1):
        per_byte = row.details.get("tokens_per_byte")
        table.add_row(str(rank), escape(names[row.model]), _METRIC_LABEL.get(row.metric, row.metric),
                      f"{row.value:.4f}", "-" if per_byte is None else f"{per_byte:.3f}",
                      str(row.details.get("n_texts", "")))
    return table


def _retrieval(models: list[str], target_bible: str | None, english_bible: str, *, layer: int | None,
               batch_size: int, device: str | None, json_out: Path | None) -> None:
    """SR-B for every model on the same verses, one table."""
    from transfer.errors import VocabTransferError
    from transfer.evaluate.srb import sentence_retrieval, srb_verses
    from transfer.source.loading import load_source, resolve_source

    try:
        if not target_bible:
            raise VocabTransferError("--task srb needs --target-bible (the target language's translation code)")
        for model in models:
            resolve_source(model)  # a missing path fails before any load
        target_texts, english_texts = srb_verses(target_bible, english_bible)
        rows = []
        with console.status("loading") as status:
            for name in models:
                status.update(f"encoding verses with {escape(name)}")
                model, tokenizer = load_source(name)
                result = sentence_retrieval(model, tokenizer, target_texts, english_texts, layer=layer,
                                            batch_size=batch_size, device=device)
                rows.append((name, result))
                del model, tokenizer
                gc.collect()
    except VocabTransferError as error:
        raise fail(error) from error
    table = Table(title=f"SR-B: {len(target_texts)} test verses, {target_bible} <-> {english_bible} "
                        "(higher is better)")
    for column in ("model", "layer", "->en top-1", "->en top-10", "en-> top-1", "en-> top-10"):
        table.add_column(column, justify="left" if column == "model" else "right",
                         no_wrap=column != "model", overflow="fold")
    names = short_names([name for name, _ in rows])
    for name, result in rows:
        there, back = result.target_to_english, result.english_to_target
        table.add_row(escape(names[name]), str(result.layer), f"{there['top1']:.3f}", f"{there['top10']:.3f}",
                      f"{back['top1']:.3f}", f"{back['top10']:.3f}")
    console.print(table)
    if json_out is not None:
        payload = {"task": "srb", "target_bible": target_bible, "english_bible": english_bible,
                   "rows": [{"model": name, **result.to_dict()} for name, result in rows]}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"JSON written to {escape(str(json_out))}")


def _harness_tasks(requests: list[str], target_bible: str | None, normalization: str):
    """The requested harness tasks, resolved and their data loaded once before any model
    (an unknown name or missing data is refused in seconds); the metadata their data
    functions get."""
    from transfer.engine.cache import default_cache_root
    from transfer.evaluate.lm_eval_tasks import load_tasks, resolve_tasks

    metadata = {"bible": target_bible, "normalization": normalization}
    tasks = resolve_tasks(requests, default_cache_root())
    load_tasks(tasks, metadata)
    return tasks, metadata


def _lm_eval_rows(models: list[str], tasks, metadata: dict[str, Any], *, limit: int | None, batch_size: int,
                  device: str | None) -> list[tuple[str, dict[str, float]]]:
    """Every model through the harness, one in memory at a time: (model, flat metrics)."""
    from transfer.evaluate.lm_eval_tasks import evaluate_model
    from transfer.source.loading import load_source

    rows = []
    with console.status("loading") as status:
        for name in models:
            status.update(f"lm-eval: {escape(name)}")
            model, tokenizer = load_source(name)
            scores, _ = evaluate_model(model, tokenizer, tasks, metadata=metadata, device=device,
                                       batch_size=batch_size, limit=limit)
            rows.append((name, scores))
            del model, tokenizer
            gc.collect()
    return rows


def _lm_eval_table(rows: list[tuple[str, dict[str, float]]], limit: int | None) -> Table:
    from transfer.publish.labels import task_metric_title

    metrics = list(dict.fromkeys(metric for _, scores in rows for metric in scores))
    table = Table(title="lm-evaluation-harness (higher is better)" + (f", first {limit} documents per task"
                                                                      if limit else ""))
    table.add_column("metric", overflow="fold")
    names = short_names([name for name, _ in rows])
    for name, _ in rows:
        table.add_column(escape(names[name]), justify="right", overflow="fold")
    for metric in metrics:
        table.add_row(escape(task_metric_title(metric)),
                      *("-" if metric not in scores else f"{scores[metric]:.4f}" for _, scores in rows))
    return table


def evaluate(
    models: list[str] = typer.Argument(
        ..., help="Models: 'smollm2', a .gguf file, a Hugging Face folder (an adapted model in "
                  "artifacts/models/ too) or a hub id; each is scored with its own tokenizer."),
    text_file: Path | None = typer.Option(None, "--text-file", help="UTF-8 file, one text per line (empty lines "
                                                                   "skipped); needed for --task bpb."),
    task: str = typer.Option("bpb", help="'bpb': bits per byte (masked-LM loss) on --text-file; 'srb': sentence "
                                         "retrieval on Bible verses (--target-bible) against English, top-1/top-10 "
                                         "accuracy both ways."),
    target_bible: str | None = typer.Option(None, help="--task srb: the target language's Bible translation "
                                                       "code (`vocab-transfer bibles`)."),
    english_bible: str = typer.Option("k", help="--task srb: the English translation retrieved against."),
    layer: int | None = typer.Option(None, help="--task srb: the hidden layer mean-pooled (default: the middle)."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Read JSON lines (default: when the file ends in .jsonl/.json)."),
    text_field: str = typer.Option("text", help="JSONL field holding the text."),
    max_texts: int | None = typer.Option(
        None, min=1, help=f"Score the first N texts (default: all, at most {DEFAULT_MAX_TEXTS:,}); the file is "
                          "streamed, so a huge file is read only that far."),
    batch_size: int = typer.Option(16, min=1, help="Texts per batch (speed only)."),
    device: str | None = typer.Option(None, help="'cpu' or 'cuda' (default: CUDA when present)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table as JSON to this file."),
    normalization: str = typer.Option(
        "NFC", help="Unicode normalization of the texts before scoring (NFC, NFKC, NFD, NFKD or none), as "
                    "an adaptation run applies it; compare models on one form."),
    lm_eval_task: list[str] | None = typer.Option(
        None, "--lm-eval-task", help="An lm-evaluation-harness task (a harness task, group or tag name, a task "
                                     "YAML file, or a task of configs/lm_eval/ such as bible_continuation, whose "
                                     "verses come from --target-bible); repeat for several. Needs the 'lm-eval' "
                                     "extra. Runs beside --text-file's bits per byte, or alone."),
    lm_eval_limit: int | None = typer.Option(
        None, "--lm-eval-limit", min=1, help="Score only the first N documents of each lm-eval task (a quick "
                                             "check: numbers compare only at the same N)."),
) -> None:
    """Score models on your texts: bits per byte (causal LMs) or masked-LM loss (masked
    LMs), the pipeline's own metric, in one table, best first."""
    from transfer.corpus.normalization import normalizer
    from transfer.errors import VocabTransferError
    from transfer.evaluate.texts import read_eval_texts

    harness = None
    if lm_eval_task:
        try:  # before any model is loaded: unknown names and missing data are refused in seconds
            harness = _harness_tasks(lm_eval_task, target_bible, normalization)
        except VocabTransferError as error:
            raise fail(error) from error
    if task == "srb":
        _retrieval(models, target_bible, english_bible, layer=layer, batch_size=batch_size, device=device,
                   json_out=json_out)
        if harness is not None:  # its rows join the SR-B JSON under "lm_eval"
            _run_harness(models, harness, limit=lm_eval_limit, batch_size=batch_size, device=device,
                         json_out=json_out, merge=True)
        return
    if task != "bpb":
        raise fail(VocabTransferError(f"--task {task!r}: expected 'bpb' or 'srb'"))
    if text_file is None and harness is not None:
        _run_harness(models, harness, limit=lm_eval_limit, batch_size=batch_size, device=device, json_out=json_out)
        return
    if text_file is None:
        raise fail(VocabTransferError("--task bpb needs --text-file (or give --lm-eval-task)"))
    try:
        try:
            norm = normalizer(normalization)
        except ValueError as error:
            raise VocabTransferError(f"--normalization: {error}") from error
        sample = read_eval_texts(text_file, jsonl=True if jsonl else None, text_field=text_field,
                                 max_texts=max_texts)
        sample.texts[:] = [norm(text) for text in sample.texts]
        if sample.truncated:
            console.print(f"[yellow]note:[/] {escape(str(text_file))} has more texts; scoring the first "
                          f"{len(sample.texts):,} (--max-texts sets how many)")
        with console.status("loading") as status:
            rows = score_models(models, sample.texts, batch_size=batch_size, device=device,
                                on_model=lambda name: status.update(f"scoring {escape(name)}"))
    except VocabTransferError as error:
        raise fail(error) from error
    console.print(_table(rows, f"{len(sample.texts):,} texts of {escape(str(text_file))} (lower is better)"))
    names = short_names([row.model for row in rows])
    for row in rows:  # the whole path once, below the table, where a short name stands for it
        if names[row.model] != row.model:
            console.print(f"{escape(names[row.model])}: {escape(row.model)}", soft_wrap=True)
    if len({row.metric for row in rows}) > 1:
        console.print("bits per byte and masked-LM loss are different metrics: compare rows of one metric only")
    lm_eval_rows = None
    if harness is not None:
        lm_eval_rows = _run_harness(models, harness, limit=lm_eval_limit, batch_size=batch_size, device=device,
                                    json_out=None)
    if json_out is not None:
        payload = {"text_file": str(text_file), "n_texts": len(sample.texts), "truncated": sample.truncated,
                   "rows": [asdict(row) for row in rows]}
        if lm_eval_rows is not None:  # beside each model's bits per byte
            payload["lm_eval"] = _lm_eval_payload(lm_eval_rows, lm_eval_task, lm_eval_limit)
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"JSON written to {escape(str(json_out))}")


def _lm_eval_payload(rows: list[tuple[str, dict[str, float]]], requests: list[str] | None,
                     limit: int | None) -> dict[str, Any]:
    from transfer.evaluate.lm_eval_tasks import harness_version

    return {"harness": harness_version(), "tasks": list(requests or []), "limit": limit,
            "rows": [{"model": name, "metrics": scores} for name, scores in rows]}


def _run_harness(models: list[str], harness, *, limit: int | None, batch_size: int, device: str | None,
                 json_out: Path | None, merge: bool = False) -> list[tuple[str, dict[str, float]]]:
    """The harness's tasks on every model, one table; ``json_out``: its rows under "lm_eval",
    added to the JSON another task just wrote there when ``merge``."""
    from transfer.errors import VocabTransferError

    tasks, metadata = harness
    try:
        for model in models:
            resolve_source_checked(model)
        rows = _lm_eval_rows(models, tasks, metadata, limit=limit, batch_size=batch_size, device=device)
    except VocabTransferError as error:
        raise fail(error) from error
    console.print(_lm_eval_table(rows, limit))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = json.loads(json_out.read_text()) if merge and json_out.is_file() else {}
        payload["lm_eval"] = _lm_eval_payload(rows, [t.request for t in tasks], limit)
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"JSON written to {escape(str(json_out))}")
    return rows


def resolve_source_checked(model: str) -> None:
    """A missing path or an unreachable hub id fails before any load."""
    from transfer.source.loading import resolve_hub_revision, resolve_source

    source = resolve_source(model)
    if source.kind == "hub":
        resolve_hub_revision(source.location, source.revision)
