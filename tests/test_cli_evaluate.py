"""`vocab-transfer evaluate MODEL... --text-file F` on tiny models saved as folders: the
numbers are the metric computed directly, the same as the pipeline's evaluate stage gives,
and bad input gets a clear error and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.tiny import (
    ENGLISH_SENTENCES,
    GERMAN_SENTENCES,
    tiny_bert,
    tiny_byte_bpe_tokenizer,
    tiny_gpt2,
    tiny_wordpiece_tokenizer,
)
from transfer.engine.stages import BuildContext, StageSpec, builder_of
from transfer.evaluate.bpb import bits_per_byte
from transfer.evaluate.masked_lm import masked_lm_loss
from transfer.source.loading import load_source, save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
TEXTS = [*GERMAN_SENTENCES, *ENGLISH_SENTENCES]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_source: Path) -> dict[str, Path]:
    """Two causal models and one masked model, each with its own tokenizer, each saved as
    ``<stage folder>/model`` (the layout the evaluate stage reads)."""
    root = tmp_path_factory.mktemp("eval-models")
    gpt2_tokenizer = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 330)
    bert_tokenizer = tiny_wordpiece_tokenizer(TEXTS, 250)
    save_model(tiny_gpt2(len(gpt2_tokenizer), seed=3), gpt2_tokenizer, root / "gpt2" / "model")
    save_model(tiny_bert(len(bert_tokenizer), seed=4), bert_tokenizer, root / "bert" / "model")
    save_model(*load_source(str(tiny_source)), root / "llama" / "model")
    return {name: root / name / "model" for name in ("llama", "gpt2", "bert")}


@pytest.fixture()
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    # an empty and a blank line are skipped, not scored
    path.write_text("\n".join(GERMAN_SENTENCES) + "\n\n   \n" + "\n".join(ENGLISH_SENTENCES) + "\n", encoding="utf-8")
    return path


def _invoke(*args: str):
    from flows.cli import app

    result = runner.invoke(app, ["evaluate", *args], env={"COLUMNS": "200"})
    result.flat = " ".join(result.output.split())  # rich wraps long lines
    return result


def test_scores_equal_the_metric_computed_directly(models: dict[str, Path], text_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    result = _invoke(*(str(p) for p in models.values()), "--text-file", str(text_file),
                     "--device", "cpu", "--json", str(out))
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert table["n_texts"] == len(TEXTS) and not table["truncated"]
    rows = {Path(row["model"]).parent.name: row for row in table["rows"]}
    assert {name: row["metric"] for name, row in rows.items()} == {"llama": "bpb", "gpt2": "bpb", "bert": "mlm_loss"}
    for name in ("llama", "gpt2"):
        direct = bits_per_byte(*load_source(str(models[name])), TEXTS, device="cpu")
        assert rows[name]["value"] == direct.bpb
        assert rows[name]["details"] == direct.to_dict()
    masked = masked_lm_loss(*load_source(str(models["bert"])), TEXTS, device="cpu")
    assert rows["bert"]["value"] == masked.loss and rows["bert"]["details"]["n_masked"] == masked.n_masked
    # best first: the causal rows by value, then the masked-LM row; the table says which metric
    ordered = [Path(row["model"]).parent.name for row in table["rows"]]
    assert ordered[2] == "bert"
    assert rows[ordered[0]]["value"] < rows[ordered[1]]["value"]
    assert "bits per byte" in result.flat and "masked-LM loss" in result.flat
    assert result.flat.index(str(models[ordered[0]])) < result.flat.index(str(models[ordered[1]]))


def test_command_and_evaluate_stage_give_identical_numbers(models: dict[str, Path], tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "test.target.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    text_file = corpus / "test.target.txt"
    out = tmp_path / "scores.json"
    result = _invoke(str(models["gpt2"]), str(models["bert"]), "--text-file", str(text_file),
                     "--device", "cpu", "--json", str(out))
    assert result.exit_code == 0, result.output
    by_model = {row["model"]: row for row in json.loads(out.read_text())["rows"]}
    for name in ("gpt2", "bert"):
        spec = StageSpec(stage="evaluate", params={"texts": "target", "split": "test", "n_texts": 300},
                         upstream={"model": str(models[name].parent), "corpus": str(corpus)},
                         runtime={"device": "cpu", "batch_size": 16})
        stage_out = tmp_path / f"stage-{name}"
        stage_out.mkdir()
        builder_of("evaluate")(spec, stage_out, BuildContext())
        metrics = json.loads((stage_out / "metrics.json").read_text())
        row = by_model[str(models[name])]
        assert (metrics["metric"], metrics["value"]) == (row["metric"], row["value"])
        assert metrics["n_texts"] == row["details"]["n_texts"] == len(TEXTS)


def test_jsonl_field_and_max_texts_read_only_a_prefix(models: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": i, "content": t}) + "\n" for i, t in enumerate(TEXTS))
                    + "{ this line is never read\n", encoding="utf-8")
    out = tmp_path / "scores.json"
    result = _invoke(str(models["gpt2"]), "--text-file", str(path), "--text-field", "content",
                     "--max-texts", "3", "--device", "cpu", "--json", str(out))
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert (table["n_texts"], table["truncated"]) == (3, True)
    assert "scoring the first 3" in result.flat
    direct = bits_per_byte(*load_source(str(models["gpt2"])), TEXTS[:3], device="cpu")
    assert table["rows"][0]["value"] == direct.bpb


def test_bad_inputs_are_named_with_exit_code_2(models: dict[str, Path], text_file: Path, tmp_path: Path) -> None:
    model = str(models["gpt2"])
    missing = tmp_path / "nowhere.txt"
    result = _invoke(model, "--text-file", str(missing))
    assert result.exit_code == 2 and f"text file '{missing}' does not exist" in result.flat

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Grüße\n".encode() + "Straße in München\n".encode("latin-1"))
    result = _invoke(model, "--text-file", str(latin1))
    assert result.exit_code == 2
    assert str(latin1) in result.flat and "line 2: not valid UTF-8" in result.flat

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n", encoding="utf-8")
    result = _invoke(model, "--text-file", str(empty))
    assert result.exit_code == 2 and f"text file '{empty}' has no texts" in result.flat

    no_model = tmp_path / "no-such-model"
    result = _invoke(model, str(no_model), "--text-file", str(text_file))
    assert result.exit_code == 2 and str(no_model) in result.flat and "neither an existing file" in result.flat

    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "fine"}\n{"body": "no text field"}\n', encoding="utf-8")
    result = _invoke(model, "--text-file", str(bad_json))
    assert result.exit_code == 2 and "line 2: no field 'text'" in result.flat
