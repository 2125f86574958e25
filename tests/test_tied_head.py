"""One answer to "is the output head tied?" (``transfer.source.heads.is_tied``): the source
stage's record, the strategies' view of the source and OFA's factorization agree, also when
a checkpoint's config contradicts its weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
from transfer.engine.cache import StageCache
from transfer.engine.stages import execute
from transfer.init.factorized import FactorizedHead, factorize_model, factorized_summary
from transfer.init.surgery import get_source_embeddings
from transfer.settings.config import AdaptConfig
from transfer.source.heads import is_tied
from transfer.source.loading import load_source, save_model
from transfer.source.stage import source_spec


def test_config_says_tied_but_the_saved_head_differs(tmp_path: Path) -> None:
    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 300)
    model = tiny_llama(len(tokenizer), tie=True)
    with torch.no_grad():  # a head of its own, while the config still says tied
        model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone() + 1.0)
    folder = tmp_path / "untied-in-fact"
    save_model(model, tokenizer, folder)
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is True

    loaded, _ = load_source(str(folder))
    assert not torch.equal(loaded.lm_head.weight, loaded.model.embed_tokens.weight)  # transformers kept it
    cfg = AdaptConfig(source_model=str(folder), target_language="de", target_bible=[], source_bible=[],
                      target_files=[str(folder / "config.json")], cache_dir=tmp_path / "cache",
                      output_dir=tmp_path / "models", device="cpu")
    source, _ = execute(source_spec(cfg), StageCache(cfg.cache_dir))
    record = json.loads((source.path / "source.json").read_text())
    # the old record read config.tie_word_embeddings (True) while surgery saw an untied head
    assert record["tied"] is False
    assert is_tied(loaded) is False and get_source_embeddings(loaded).tied is False


def test_a_head_sharing_the_embedding_storage_is_tied_for_factorization_too() -> None:
    model = tiny_llama(40, tie=False)
    # separate Parameter objects over one storage: the old factorization check (identity
    # only) called this untied while surgery (storage) called it tied
    model.lm_head.weight = nn.Parameter(model.model.embed_tokens.weight.data)
    assert get_source_embeddings(model).tied and is_tied(model)
    factorize_model(model, rank=4)
    assert isinstance(model.get_output_embeddings(), FactorizedHead)
    assert factorized_summary(model)["tied_head"] is True and is_tied(model)


def test_a_truly_untied_head_stays_untied_everywhere() -> None:
    model = tiny_llama(40, tie=False)
    assert not is_tied(model) and not get_source_embeddings(model).tied
    factorize_model(model, rank=4)
    assert not isinstance(model.get_output_embeddings(), FactorizedHead)
    assert factorized_summary(model)["tied_head"] is False
