"""Vocabulary extension in the pipeline (issue #17): ``vocab_mode='extend'`` keeps the
source tokenizer and its embedding rows exactly and lets the strategy fill only the
appended rows; the default (replacement) keeps its stage key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.tiny import ENGLISH, GERMAN
from transfer.init.base import InitReport, SourceEmbeddings, TargetEmbeddings
from transfer.init.extension import keep_source_rows
from transfer.pipeline import run_adaptation
from transfer.settings.config import AdaptConfig
from transfer.tokenizer.extension_record import read_first_new_id
from transfer.tokenizer.stage import tokenizer_spec


def _target(n: int, dim: int, *, untied: bool, bias: bool) -> TargetEmbeddings:
    report = InitReport("mean", {}, n, ["computed"] * n)
    return TargetEmbeddings(
        input=torch.full((n, dim), 7.0),
        output=torch.full((n, dim), 8.0) if untied else None,
        output_bias=torch.full((n,), 9.0) if bias else None,
        report=report,
    )


@pytest.mark.parametrize(("untied", "bias"), [(False, False), (True, True)])
def test_old_rows_are_the_source_rows_and_new_rows_the_strategy(untied: bool, bias: bool) -> None:
    torch.manual_seed(0)
    source = SourceEmbeddings(
        input=torch.randn(6, 4),
        output=torch.randn(6, 4) if untied else None,
        output_bias=torch.randn(6) if bias else None,
    )
    kept = keep_source_rows(_target(9, 4, untied=untied, bias=bias), source, 5)
    assert torch.equal(kept.input[:5], source.input[:5])
    assert torch.equal(kept.input[5:], torch.full((4, 4), 7.0))  # the strategy's rows
    if untied:
        assert torch.equal(kept.output[:5], source.output[:5])
        assert torch.equal(kept.output[5:], torch.full((4, 4), 8.0))
        assert torch.equal(kept.output_bias[:5], source.output_bias[:5])
        assert torch.equal(kept.output_bias[5:], torch.full((4,), 9.0))
    else:
        assert kept.output is None and kept.output_bias is None
    assert kept.report.labels == ["copied"] * 5 + ["computed"] * 4
    assert "extension" in kept.report.notes[-1]


def test_more_old_ids_than_source_rows_is_refused() -> None:
    from transfer.errors import VocabTransferError

    source = SourceEmbeddings(input=torch.zeros(3, 4))
    with pytest.raises(VocabTransferError, match="source input matrix has 3 rows"):
        keep_source_rows(_target(9, 4, untied=False, bias=False), source, 5)


def _config(tmp_path: Path, source: Path, corpus: Path, **overrides) -> AdaptConfig:
    values = {
        "source_model": str(source), "target_language": "de", "target_bible": [],
        "source_bible": [], "target_files": [str(corpus)], "vocab_size": 350, "train_steps": 0,
        "strategy": "fvt", "batch_size": 2, "block_size": 16, "eval_texts": 8,
        "dev_fraction": 0.1, "test_fraction": 0.1, "device": "cpu",
        "cache_dir": tmp_path / "cache", "output_dir": tmp_path / "models", "register_model": False,
    }
    values.update(overrides)
    return AdaptConfig(**values)


def test_replacement_keeps_its_tokenizer_key_parameters(tmp_path: Path) -> None:
    from transfer.engine.cache import StageOutput

    cfg = _config(tmp_path, tmp_path, tmp_path)
    fake = StageOutput(stage="corpus", key="0" * 16, path=tmp_path)
    params = tokenizer_spec(cfg, fake, fake).params
    assert params == {"vocab_size": 350, "min_frequency": 2, "fertility_texts": 8}
    extend = tokenizer_spec(cfg.model_copy(update={"vocab_mode": "extend", "added_tokens": 30}),
                            fake, fake).params
    assert extend == {"vocab_mode": "extend", "added_tokens": 30, "min_frequency": 2,
                      "fertility_texts": 8}


def test_extend_mode_end_to_end(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = _config(tmp_path, tiny_source, tiny_corpus, vocab_mode="extend", added_tokens=30)
    result = run_adaptation(cfg)
    source_tok = AutoTokenizer.from_pretrained(tiny_source)
    source_model = AutoModelForCausalLM.from_pretrained(tiny_source)
    tokenizer_dir = cfg.cache_dir / "tokenizer" / result.stage_keys["tokenizer"]
    n_old = read_first_new_id(tokenizer_dir)
    assert n_old == len(source_tok)
    record = json.loads((tokenizer_dir / "extension.json").read_text())
    assert 0 < record["n_new"] <= 30

    init_dir = cfg.cache_dir / "init" / result.stage_keys["init"] / "model"
    tokenizer = AutoTokenizer.from_pretrained(init_dir)
    model = AutoModelForCausalLM.from_pretrained(init_dir)
    assert len(tokenizer) == n_old + record["n_new"]
    assert tokenizer.convert_ids_to_tokens(list(range(n_old))) == source_tok.convert_ids_to_tokens(list(range(n_old)))
    old_rows = source_model.get_input_embeddings().weight
    new_rows = model.get_input_embeddings().weight
    assert new_rows.shape[0] >= n_old + record["n_new"]
    assert torch.equal(new_rows[:n_old], old_rows[:n_old])
    # FVT: a new token's row is the mean of the source rows of its split by the source model.
    backend = source_tok.backend_tokenizer.model
    for offset, token in enumerate(record["new_tokens"]):
        parts = [piece.id for piece in backend.tokenize(token)]
        assert len(parts) >= 2
        expected = old_rows[parts].mean(dim=0)
        # float64 mean rounded to float32 vs a float32 mean of a few rows: ~1e-7 relative
        assert torch.allclose(new_rows[n_old + offset], expected, atol=1e-5), token
    # The extended tokenizer spends fewer tokens on German and round-trips English.
    german = sum(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in GERMAN)
    assert german < sum(len(source_tok(s, add_special_tokens=False)["input_ids"]) for s in GERMAN)
    for text in ENGLISH + GERMAN:
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert result.fertility

    # The CLI's --mode extend --added-tokens N is the same run: every stage is cached.
    from typer.testing import CliRunner

    from flows.cli import app

    config_file = tmp_path / "replace.json"
    config_file.write_text(cfg.model_copy(update={"vocab_mode": "replace", "added_tokens": 8000})
                           .model_dump_json())
    runner = CliRunner()
    dry = runner.invoke(app, ["adapt", "--config", str(config_file), "--mode", "extend",
                              "--added-tokens", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "stages cached" in dry.output
    cached = dry.output.replace("\n", " ").split(" stages cached")[0].split()[-1]
    done, total = cached.split("/")
    assert done == total, dry.output
    bad = runner.invoke(app, ["adapt", "--config", str(config_file), "--mode", "bogus", "--dry-run"])
    assert bad.exit_code != 0 and "vocab_mode" in bad.output
