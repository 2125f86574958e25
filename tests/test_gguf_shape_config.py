"""The memory estimate's GGUF config, read from the header alone, is the config
transformers' own GGUF loader builds, for every architecture transformers maps from GGUF
(issue #28, item 4: a Gemma-3 GGUF was read as the multimodal Gemma-3 with a default-sized
text model, and a 270M model was refused as needing 28 GiB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoConfig
from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

from transfer.settings.memory_budget import GGUF_ARCH_NAMES, gguf_model_config, gguf_shape_config

#: transformers' name -> the llama.cpp name its GGUF files carry
# (llama.cpp writes UMT5 as "t5", told apart only by general.name: the same shapes)
LLAMA_CPP_NAMES = {**{hf: cpp for cpp, hf in GGUF_ARCH_NAMES.items()}, "umt5": "t5"}
ARCHITECTURES = sorted(set(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"})
#: small, distinct values for the keys a config reads
VALUES = {"context_length": 64, "block_count": 3, "embedding_length": 48, "feed_forward_length": 96,
          "attention.head_count": 6, "attention.head_count_kv": 2, "rope.freq_base": 10000.0,
          "attention.layer_norm_rms_epsilon": 1e-6, "attention.layer_norm_epsilon": 1e-5,
          "vocab_size": 120, "attention.key_length": 8, "attention.value_length": 8,
          "expert_count": 4, "expert_used_count": 2}
COMPARED = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
            "num_key_value_heads", "vocab_size", "tie_word_embeddings")


def _tiny_gguf(folder: Path, model_type: str, *, untied: bool = False) -> Path:
    import gguf

    arch = LLAMA_CPP_NAMES.get(model_type, model_type)
    path = folder / f"{model_type}.gguf"
    writer = gguf.GGUFWriter(str(path), arch)
    for key in GGUF_CONFIG_MAPPING[model_type]:
        if key in VALUES:
            value = VALUES[key]
            (writer.add_float32 if isinstance(value, float) else writer.add_uint32)(f"{arch}.{key}", value)
    writer.add_tensor("token_embd.weight", np.ones((VALUES["vocab_size"], 4), dtype=np.float32))
    if untied:
        writer.add_tensor("output.weight", np.ones((VALUES["vocab_size"], 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _shape(config) -> dict:
    return {name: getattr(config, name, None) for name in COMPARED}


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_header_config_is_transformers_config(tmp_path: Path, model_type: str) -> None:
    path = _tiny_gguf(tmp_path, model_type)
    try:
        theirs = AutoConfig.from_pretrained(str(tmp_path), gguf_file=path.name)
    except Exception as error:  # noqa: BLE001 - an architecture transformers needs more keys for
        pytest.skip(f"transformers cannot build a {model_type} config from the tiny file: {error}")
    assert _shape(gguf_model_config(path)) == _shape(theirs)


def test_gemma3_is_its_text_model(tmp_path: Path) -> None:
    config = gguf_shape_config(_tiny_gguf(tmp_path, "gemma3"))
    assert config.model_type == "gemma3_text" and config.hidden_size == 48 and config.num_hidden_layers == 3
    assert not hasattr(config, "vision_config")


def test_untied_head_is_read_from_the_tensor_table(tmp_path: Path) -> None:
    assert gguf_shape_config(_tiny_gguf(tmp_path, "llama")).tie_word_embeddings
    (tmp_path / "untied").mkdir()
    assert not gguf_shape_config(_tiny_gguf(tmp_path / "untied", "llama", untied=True)).tie_word_embeddings
