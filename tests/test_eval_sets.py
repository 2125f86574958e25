"""Several evaluation sets (issue #30, item 1): each user file is scored on its own at step
0 and after training, the source model on its own tokenizer too, beside the held-out split;
the comparison table gets a column per set, the registry a metric per set, and a bad file
is refused before the first stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import config
from tests.tiny import ENGLISH_SENTENCES, GERMAN_SENTENCES
from transfer.corpus.eval_sets import parse_eval_files
from transfer.errors import CorpusError


def _files(tmp_path: Path) -> tuple[Path, Path]:
    german = tmp_path / "docs-de.txt"
    german.write_text("\n".join(s.upper() for s in GERMAN_SENTENCES[:6]) + "\n")
    english = tmp_path / "english.jsonl"
    english.write_text("".join(json.dumps({"text": s}) + "\n" for s in ENGLISH_SENTENCES[:5]))
    return german, english


def test_set_names() -> None:
    sets = parse_eval_files(["a/docs-de.txt", "news=b/x.jsonl.gz"])
    assert [(s.name, s.path) for s in sets] == [("docs-de", "a/docs-de.txt"), ("news", "b/x.jsonl.gz")]
    with pytest.raises(ValueError, match="given twice"):
        parse_eval_files(["a/x.txt", "b/x.txt"])


def test_each_set_is_scored_for_every_model(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.evaluate.bpb import bits_per_byte
    from transfer.pipeline import run_adaptation
    from transfer.publish.comparison import compare_strategies, comparison_rows
    from transfer.source.loading import load_source

    german, english = _files(tmp_path)
    cfg = config(tmp_path, tiny_source, tiny_corpus, train_steps=1, eval_texts=4,
                 eval_files=[str(german), f"en={english}"])
    result = run_adaptation(cfg)
    for name in ("docs-de", "en"):
        for model in ("source_model", "adapted_step0", "adapted_trained"):
            assert f"{model}_on_eval_{name}" in result.scores, (model, name)
    # the source model's number is bits per byte on the file's texts (the first eval_texts)
    source = bits_per_byte(*load_source(str(tiny_source)), [s.upper() for s in GERMAN_SENTENCES[:4]])
    assert result.scores["source_model_on_eval_docs-de"] == pytest.approx(source.bpb, rel=1e-6)
    assert result.scores["source_model_on_target"] != result.scores["source_model_on_eval_docs-de"]
    from transfer.publish.registry_store import result_metrics

    metrics = result_metrics(result)  # what the registry records: a metric per model and set
    assert {"bpb.source_model_on_eval_en", "bpb.adapted_trained_on_eval_en"} <= set(metrics)
    comparison = compare_strategies(cfg, ["mean", "random"])
    header, rows = comparison_rows(comparison, ("step0", "trained"))
    assert header[-2:] == ["eval set docs-de", "eval set en"]
    assert all(cell for row in rows for cell in row[-2:])  # every strategy and the source model


def test_bad_eval_files_are_refused_before_any_stage(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.planning.plan import plan_adaptation

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    for files, message in (([str(tmp_path / "missing.txt")], "does not exist"), ([str(empty)], "has no texts")):
        cfg = config(tmp_path, tiny_source, tiny_corpus, eval_files=files)
        with pytest.raises(CorpusError, match=f"eval_files .*{message}"):
            plan_adaptation(cfg)
        assert not Path(cfg.cache_dir).exists()


def test_cli_eval_file_reaches_the_plan(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from flows.cli import app

    german, _ = _files(tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(config(tmp_path, tiny_source, tiny_corpus).model_dump_json())
    dry = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--eval-file", f"docs={german}",
                                   "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "evaluate.source_model_on_eval_docs" in dry.output and "evaluate.adapted_trained_on_eval_docs" in dry.output
