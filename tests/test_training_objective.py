"""Causal vs masked is decided in one place (``transfer.source.objective``), and the train
stage's learning curve is scored by the same metric as the evaluate stage: dev BPB for a
causal model, the masked-LM loss for a masked LM (not BPB computed as if it were causal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
)

from tests.tiny import (
    ENGLISH,
    tiny_bert,
    tiny_gpt2,
    tiny_llama,
    tiny_roberta,
    tiny_wordpiece_tokenizer,
)
from transfer.corpus.stage import corpus_spec
from transfer.engine.cache import StageCache
from transfer.engine.stages import execute
from transfer.errors import ModelLoadError
from transfer.evaluate.stage import evaluate_spec
from transfer.init.stage import init_spec
from transfer.settings.config import AdaptConfig
from transfer.source.loading import save_model
from transfer.source.objective import auto_model_class, model_objective
from transfer.source.stage import source_spec
from transfer.tokenizer.stage import tokenizer_spec
from transfer.train.stage import train_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_one_function_tells_models_and_checkpoints_apart() -> None:
    assert model_objective(tiny_bert(30)) == model_objective(tiny_roberta(30)) == "masked"
    assert model_objective(tiny_llama(30)) == model_objective(tiny_gpt2(30)) == "causal"
    # a checkpoint's config: its architectures first, then its model type
    assert model_objective(BertConfig()) == "masked"
    assert model_objective(BertConfig(is_decoder=True)) == "causal"  # BERT as a decoder
    assert model_objective(BertConfig(architectures=["BertLMHeadModel"], is_decoder=True)) == "causal"
    assert model_objective(LlamaConfig(architectures=["LlamaForCausalLM"])) == "causal"
    assert auto_model_class(BertConfig()) is AutoModelForMaskedLM
    assert auto_model_class(GPT2Config()) is AutoModelForCausalLM
    with pytest.raises(ModelLoadError, match="causal or a masked LM"):
        model_objective(PretrainedConfig(architectures=["SomethingElse"]))


@pytest.fixture(scope="module")
def tiny_bert_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = tiny_wordpiece_tokenizer(ENGLISH, 200)
    out = tmp_path_factory.mktemp("src") / "tiny-bert"
    save_model(tiny_bert(len(tokenizer), pad_token_id=tokenizer.pad_token_id), tokenizer, out)
    return out


@pytest.mark.parametrize(("source", "vocab_size"), [("tiny_source", 350), ("tiny_bert_source", 150)])
def test_train_stage_curve_uses_the_evaluate_stage_metric(source: str, vocab_size: int, request: pytest.FixtureRequest,
                                                          tmp_path: Path, tiny_corpus: Path) -> None:
    source_dir: Path = request.getfixturevalue(source)
    cfg = AdaptConfig(
        source_model=str(source_dir), target_language="de", target_bible=[], source_bible=[],
        target_files=[str(tiny_corpus)], vocab_size=vocab_size, min_frequency=1, strategy="mean",
        train_steps=2, batch_size=2, block_size=16, eval_every=2, curve_texts=5, eval_texts=8,
        dev_fraction=0.1, test_fraction=0.1, device="cpu", cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "models",
    )
    cache = StageCache(cfg.cache_dir)
    corpus, _ = execute(corpus_spec(cfg), cache)
    source_out, _ = execute(source_spec(cfg), cache)
    tokenizer, _ = execute(tokenizer_spec(cfg, corpus, source_out), cache)
    init, _ = execute(init_spec(cfg, source_out, tokenizer), cache)
    trained, _ = execute(train_spec(cfg, init, corpus), cache)
    # the evaluate stage on the curve's own texts (the first curve_texts dev texts)
    evaluated, _ = execute(evaluate_spec(cfg, init, corpus, "target", split="dev", n_texts=cfg.curve_texts), cache)
    metrics = json.loads(evaluated.file("metrics.json").read_text())

    curve = json.loads(trained.file("curve.json").read_text())
    log = json.loads(trained.file("train_log.json").read_text())
    expected = {"tiny_source": ("bpb", "causal"), "tiny_bert_source": ("mlm_loss", "masked")}[source]
    assert (metrics["metric"], log["objective"]) == expected
    assert curve["metric"] == metrics["metric"] == log["curve"]["metric"]
    points = curve["points"]
    assert [p["step"] for p in points] == [0, 2]
    column = "dev_bpb" if metrics["metric"] == "bpb" else "dev_loss"
    # step 0 is the init model: the curve's first point is the evaluate stage's number
    # the same score_model call (batch 16) on the same weights and texts, on the CPU: equal
    assert points[0][column] == pytest.approx(metrics["value"], rel=1e-9)
    # a BPB at every point of a causal LM's curve, none for a masked LM's
    assert [p["dev_bpb"] is None for p in points] == [metrics["metric"] == "mlm_loss"] * 2
