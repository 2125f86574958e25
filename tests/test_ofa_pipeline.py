"""OFA through the pipeline: init keeps the factorized embedding, training updates the
coordinates and primitives, and every folder still loads with plain ``transformers``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.helpers import config
from transfer.engine.cache import StageCache
from transfer.init.factorized import FACTORS_FILE, FactorizedEmbedding, load_factorized
from transfer.pipeline import run_adaptation

RANK = 8


def _model_folder(cfg, stage: str, key: str) -> Path:
    return StageCache(cfg.cache_dir).path(stage, key) / "model"


def _factors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / FACTORS_FILE))


def test_ofa_trains_coordinates_and_primitives(tmp_path: Path, tiny_source: Path) -> None:
    cfg = config(tmp_path, tiny_source, tiny_source, target_files=[], target_bible=["e"],
                  source_train_bible=["k"], vector_max_verses=1500, vector_dim=16, vector_epochs=2,
                  dictionary="ding", strategy="ofa", strategy_params={"rank": RANK}, train_steps=2,
                  full_steps=1, full_learning_rate=1e-3, vocab_size=400)
    result = run_adaptation(cfg)
    init_dir = _model_folder(cfg, "init", result.stage_keys["init"])
    trained_dir = _model_folder(cfg, "train", result.stage_keys["final"])
    assert (init_dir / FACTORS_FILE).is_file() and (trained_dir / FACTORS_FILE).is_file()

    plain = AutoModelForCausalLM.from_pretrained(trained_dir)  # no code of ours involved
    assert isinstance(plain.get_input_embeddings(), torch.nn.Embedding)
    n_rows, width = plain.get_input_embeddings().weight.shape
    summary = result.init_report["factorized"]
    assert summary["rank"] == RANK and summary["tied_head"] is True
    assert summary["embedding_parameters"] == RANK * (n_rows + width)
    assert summary["full_embedding_parameters"] == n_rows * width

    # the saved plain matrix is the product of the saved factors
    trained = _factors(trained_dir)
    product = trained["coordinates"] @ trained["primitives"]
    # the same float32 product of the same saved factors (rows of size < 0.1): ~1e-8
    assert torch.allclose(product, plain.get_input_embeddings().weight.detach(), atol=1e-6)
    # both factors moved during training
    initial = _factors(init_dir)
    assert not torch.equal(initial["coordinates"], trained["coordinates"])
    assert not torch.equal(initial["primitives"], trained["primitives"])

    log = json.loads((trained_dir.parent / "train_log.json").read_text())
    assert log["factorized"] is True
    assert log["embedding_trainable_parameters"] == RANK * (n_rows + width)
    assert result.train_log["factorized"] is True

    factorized, _ = load_factorized(trained_dir)
    assert isinstance(factorized.get_input_embeddings(), FactorizedEmbedding)
    ids = torch.randint(0, n_rows, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # the product inside the model vs saved: float32 logits of size < 1, ~1e-7
        assert torch.allclose(plain(ids).logits, factorized(ids).logits, atol=1e-5)

    # evaluation and export read the folders as plain Hugging Face models
    assert set(result.scores) >= {"adapted_step0", "adapted_trained"}
    # the trained score is the plain model's, recomputed here on the same test texts
    from transfer.corpus.stage import read_lines
    from transfer.evaluate.bpb import bits_per_byte
    from transfer.source.loading import load_source

    texts = read_lines(Path(cfg.cache_dir) / "corpus" / result.stage_keys["corpus"] / "test.target.txt",
                       cfg.eval_texts)
    # float32 logits, float64 sums: ~1e-7 relative
    assert result.scores["adapted_trained"] == pytest.approx(
        bits_per_byte(*load_source(str(trained_dir)), texts).bpb, rel=1e-5)
    exported = AutoModelForCausalLM.from_pretrained(result.model_dir)
    with torch.no_grad():
        # the export copies the same float32 weights: the same forward, logits of size < 1
        assert torch.allclose(exported(ids).logits, plain(ids).logits, atol=1e-6)


def test_other_strategies_save_no_factors(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="mean", train_steps=1)
    result = run_adaptation(cfg)
    init_dir = _model_folder(cfg, "init", result.stage_keys["init"])
    trained_dir = _model_folder(cfg, "train", result.stage_keys["final"])
    assert (init_dir / "model.safetensors").is_file() and not (init_dir / FACTORS_FILE).exists()
    assert (trained_dir / "model.safetensors").is_file() and not (trained_dir / FACTORS_FILE).exists()
    assert "factorized" not in result.init_report
    n_rows, width = AutoModelForCausalLM.from_pretrained(trained_dir).get_input_embeddings().weight.shape
    assert result.train_log["factorized"] is False
    assert result.train_log["embedding_trainable_parameters"] == n_rows * width
