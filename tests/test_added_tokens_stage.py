"""The tokenizer stage keeps the added tokens something needs and says why
(``special_tokens.json``); ``keep_tokens`` asks for more (issue #18)."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

from tests.tiny import ENGLISH_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
from transfer.corpus.stage import corpus_spec
from transfer.engine.cache import StageCache
from transfer.engine.stages import execute
from transfer.settings.config import AdaptConfig
from transfer.source.loading import save_model
from transfer.source.stage import source_spec
from transfer.tokenizer.stage import tokenizer_spec

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|reserved_0|>", "<|reserved_1|>"]


def test_stage_reports_kept_and_dropped_added_tokens(tmp_path: Path, tiny_corpus: Path) -> None:
    tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 400, specials=SPECIALS)
    source = tmp_path / "source"
    save_model(tiny_llama(len(tokenizer)), tokenizer, source)
    cfg = AdaptConfig(source_model=str(source), target_language="de", target_bible=[],
                      source_bible=[], target_files=[str(tiny_corpus)], vocab_size=300,
                      eval_texts=8, dev_fraction=0.1, test_fraction=0.1, device="cpu",
                      keep_tokens=["<|reserved_1|>"], cache_dir=tmp_path / "cache")
    cache = StageCache(tmp_path / "cache")
    corpus, _ = execute(corpus_spec(cfg), cache)
    model, _ = execute(source_spec(cfg), cache)
    stage, _ = execute(tokenizer_spec(cfg, corpus, model), cache)

    report = json.loads((stage.path / "special_tokens.json").read_text())
    assert report["source_added_tokens"] == 5
    assert report["kept_tokens"] == {"<|endoftext|>": "special role", "<|im_start|>": "special role",
                                     "<|im_end|>": "special role", "<|reserved_1|>": "asked"}
    assert report["dropped"] == 1 and report["dropped_examples"] == ["<|reserved_0|>"]
    target = AutoTokenizer.from_pretrained(stage.path / "tokenizer")
    assert report["target_tokens"] == len(target) == 300 + 4  # learned + bytes, added on top
    assert "<|reserved_0|>" not in target.get_vocab()
