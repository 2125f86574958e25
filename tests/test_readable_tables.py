"""The command line's tables read at 80 columns (issue #31): `strategies` becomes a list
when narrow, and `evaluate` names each model by a unique short name with its full path
below the table."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flows.cli_evaluate import short_names

runner = CliRunner()


def test_strategies_at_80_columns_keep_their_sentences_whole(monkeypatch) -> None:
    from flows import cli_render
    from flows.cli import app

    monkeypatch.setattr(cli_render.console, "_width", 80)
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    # a table at this width wrapped the description one word per line; the list does not
    assert not any(line.strip() in {"the", "of", "source"} for line in lines)
    assert any(line.startswith("fvt  (needs the two tokenizers)") for line in lines)


def test_short_names_are_unique_and_as_short_as_they_can_be() -> None:
    models = ["artifacts/models/smollm2-de-combined", "runs/a/smollm2-de-mean", "runs/b/smollm2-de-mean",
              "smollm2"]
    assert short_names(models) == {
        "artifacts/models/smollm2-de-combined": "smollm2-de-combined",
        "runs/a/smollm2-de-mean": "a/smollm2-de-mean", "runs/b/smollm2-de-mean": "b/smollm2-de-mean",
        "smollm2": "smollm2"}


def test_evaluate_table_tells_two_models_apart_at_80_columns(tmp_path: Path, monkeypatch) -> None:
    import shutil

    from flows import cli_render
    from flows.cli import app
    from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
    from transfer.source.loading import save_model

    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300)
    first = tmp_path / "a" / "artifacts" / "models" / "smollm2-de-combined-with-a-long-name"
    save_model(tiny_llama(len(tokenizer), seed=0), tokenizer, first)
    second = tmp_path / "b" / "artifacts" / "models" / first.name
    shutil.copytree(first, second)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(ENGLISH_SENTENCES[:4]) + "\n")
    monkeypatch.setattr(cli_render.console, "_width", 80)
    result = runner.invoke(app, ["evaluate", str(first), str(second), "--text-file", str(texts), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert max(len(row) for row in rows) <= 80
    assert "…" not in "".join(rows)  # nothing cut short: a long name folds in its cell
    cells = [row.split("│")[2].strip() for row in rows if row.split("│")[1].strip() in {"1", "2"}]
    assert sorted(cell[:2] for cell in cells) == ["a/", "b/"]  # the two rows tell the models apart
    assert f"{first}" in result.output and f"{second}" in result.output  # full paths below
