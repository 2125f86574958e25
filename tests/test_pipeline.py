"""The whole path on a tiny model and a tiny corpus: stages, caching, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.helpers import config
from transfer.errors import (
    CorpusError,
    TokenizerBuildError,
    UnknownStrategyError,
    VocabTransferError,
)
from transfer.pipeline import run_adaptation


def test_end_to_end_then_everything_cached(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = config(tmp_path, tiny_source, tiny_corpus)
    first = run_adaptation(cfg)
    assert not any(first.stages_cached.values())
    assert set(first.scores) == {"source_model_on_target", "adapted_step0", "adapted_trained",
                              "source_model_on_curve_texts"}
    # the reported numbers are the metric recomputed here on the same test texts
    from transfer.corpus.stage import read_lines
    from transfer.evaluate.bpb import bits_per_byte
    from transfer.source.loading import load_source

    texts = read_lines(Path(cfg.cache_dir) / "corpus" / first.stage_keys["corpus"] / "test.target.txt", 8)
    assert len(texts) == 8
    # the stage's own bits_per_byte on the same weights: float32 logits, float64 sums, ~1e-7
    assert first.scores["source_model_on_target"] == pytest.approx(
        bits_per_byte(*load_source(str(tiny_source)), texts).bpb, rel=1e-5)
    assert first.scores["adapted_trained"] == pytest.approx(
        bits_per_byte(*load_source(first.model_dir), texts).bpb, rel=1e-5)
    assert first.init_report["counts"]["special"] >= 1
    assert len(first.train_log["losses"]) == 2

    second = run_adaptation(cfg)
    assert all(second.stages_cached.values()), second.stages_cached
    assert second.scores == first.scores

    # the exported model is a plain Hugging Face folder with the target tokenizer
    model = AutoModelForCausalLM.from_pretrained(first.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(first.model_dir)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.config.vocab_size == len(tokenizer)
    ids = tokenizer("Im Anfang war das Wort", return_tensors="pt").input_ids
    assert torch.isfinite(model(ids).logits).all()
    record = json.loads((Path(first.model_dir) / "adaptation.json").read_text())
    assert record["scores"] == first.scores


def test_changed_parameter_reruns_only_downstream(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    run_adaptation(config(tmp_path, tiny_source, tiny_corpus))
    second = run_adaptation(config(tmp_path, tiny_source, tiny_corpus, strategy="random"))
    cached = second.stages_cached
    assert cached["corpus"] and cached["source"] and cached["tokenizer"]
    assert cached["evaluate.source_model_on_target"]
    assert not cached["init"] and not cached["train"]


def test_scoring_the_other_split_reuses_the_trained_model(
        tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    # choose on dev, report on test: only the evaluations are new
    dev = run_adaptation(config(tmp_path, tiny_source, tiny_corpus, eval_split="dev"))
    test = run_adaptation(config(tmp_path, tiny_source, tiny_corpus, eval_split="test"))
    cached = test.stages_cached
    assert cached["tokenizer"] and cached["init"] and cached["train"], cached
    assert not cached["evaluate.source_model_on_target"]
    assert test.scores["adapted_trained"] != dev.scores["adapted_trained"]
    # fertility is reported on the split that was scored
    assert test.fertility != dev.fertility and test.fertility["target"]["n_texts"] == 8


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"strategy": "no-such-strategy"}, UnknownStrategyError, "no-such-strategy"),
        ({"target_files": ["/does/not/exist.txt"]}, CorpusError, "/does/not/exist.txt"),
        ({"source_model": "/does/not/exist-model"}, VocabTransferError, "/does/not/exist-model"),
        ({"target_bible": ["Q"]}, CorpusError, "'Q'"),
        # a misspelt strategy parameter, refused before the corpus and tokenizer are built
        ({"strategy": "mean", "strategy_params": {"covariance": 0.5}}, VocabTransferError,
         "'mean' does not take covariance; it takes: covariance_scale"),
    ],
)
def test_bad_input_is_refused_before_work(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                          overrides: dict, error: type, message: str) -> None:
    cfg = config(tmp_path, tiny_source, tiny_corpus, **overrides)
    with pytest.raises(error, match=message):
        run_adaptation(cfg)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.complete"))


def test_empty_corpus_and_tiny_vocab(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="empty"):
        run_adaptation(config(tmp_path, tiny_source, empty))
    with pytest.raises(TokenizerBuildError, match="vocab"):
        run_adaptation(config(tmp_path, tiny_source, tiny_corpus, vocab_size=100))
    # the failed tokenizer stage left no entry, no temporary folder
    tokenizer_dir = tmp_path / "cache" / "tokenizer"
    assert not tokenizer_dir.exists() or list(tokenizer_dir.iterdir()) == []


def test_curve_reference_is_the_main_evaluation_when_the_texts_coincide(
        tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.planning.plan import plan_adaptation

    same = config(tmp_path, tiny_source, tiny_corpus, eval_split="dev", eval_texts=4, curve_texts=4)
    plan = plan_adaptation(same, measure=False)
    keys = [(s.stage, s.key) for s in plan.stages]
    assert len(keys) == len(set(keys)) and "evaluate.source_model_on_curve_texts" not in [s.label for s in plan.stages]
    result = run_adaptation(same)
    assert result.scores["source_model_on_curve_texts"] == result.scores["source_model_on_target"]
    # other texts for the curve: a stage of its own, another number
    other = run_adaptation(config(tmp_path, tiny_source, tiny_corpus, eval_split="dev", eval_texts=4, curve_texts=2))
    assert other.stages_cached["evaluate.source_model_on_target"]
    assert not other.stages_cached["evaluate.source_model_on_curve_texts"]
    assert other.scores["source_model_on_curve_texts"] != other.scores["source_model_on_target"]
