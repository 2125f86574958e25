"""End to end on the real assets: SmolLM2-135M (packaged GGUF) -> German Bible, small budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from transfer.config import AdaptConfig
from transfer.pipeline import run_adaptation


@pytest.mark.slow
def test_smollm2_to_german_small_budget(tmp_path: Path) -> None:
    cfg = AdaptConfig(
        target_bible=["e"], source_bible=["k"], vocab_size=1000, strategy="overlap",
        train_steps=3, batch_size=2, block_size=64, learning_rate=1e-3, eval_texts=12, device="cpu",
        cache_dir=tmp_path / "cache", output_dir=tmp_path / "models",
        register_model=False,  # registration is tested on tiny models; this copy would be 540 MB
    )
    result = run_adaptation(cfg)
    bpb = result.bpb
    # the source model knows English far better than German (DESIGN: ~2.69 on German)
    assert 0.5 < bpb["source_model_on_source_language"] < bpb["source_model_on_target"] < 4.0
    # a 1k German tokenizer: overlap copies many rows, the rest fall back to the mean
    counts = result.init_report["counts"]
    assert counts.get("copied", 0) > 300 and counts.get("special", 0) >= 3
    assert result.fertility["target"]["n_tokens"] > 0
    assert bpb["adapted_trained"] < bpb["adapted_step0"]

    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    assert model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    prompt = tokenizer("Im Anfang schuf Gott", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > prompt.input_ids.shape[1]
    assert model.generation_config.eos_token_id is not None
