"""Byte-level BPE builds: train a target BPE that keeps the source tokenizer's conventions.

The idea: start from the source's own backend JSON, so its normalizer, pre-tokenizer,
decoder and BPE flags carry over unchanged, empty the vocabulary, and let the `tokenizers`
trainer learn merges from target-language text. The full 256-symbol byte alphabet is
seeded so any text round-trips, the source's special tokens keep their strings, flags and
order at the first ids, and the post-processor's token ids are remapped by string.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tokenizer_builds.conventions import (
    added_token,
    finish,
    prepare_build,
    remap_token_ids,
    untrained_backend,
    wrapper_settings,
)
from tokenizer_builds.families import (
    TokenizerFamily,
)

#: Every byte as the printable symbol ByteLevel maps it to (GPT-2's byte-to-unicode table).
BYTE_ALPHABET: tuple[str, ...] = tuple(sorted(pre_tokenizers.ByteLevel.alphabet()))

__all__ = ["BYTE_ALPHABET", "affix_settings", "remap_token_ids", "train_byte_level_bpe",
           "wrapper_settings"]


def train_byte_level_bpe(
    source: PreTrainedTokenizerFast,
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
    keep_tokens: Iterable[str] = (),
    eos_token_ids: Sequence[int] = (),
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` with the source tokenizer's conventions.

    ``vocab_size`` counts the learned tokens and the 256-symbol byte alphabet; the kept
    special and added tokens come on top. A small corpus may give fewer.
    """
    layout, corpus = prepare_build(source, TokenizerFamily.BYTE_LEVEL_BPE, texts, vocab_size, min_frequency,
                                   alphabet_size=lambda _: len(BYTE_ALPHABET),
                                   keep_tokens=keep_tokens, eos_token_ids=eos_token_ids)

    backend = untrained_backend(layout, {**layout.model, "vocab": {}, "merges": []})
    trainer = trainers.BpeTrainer(
        # The trainer counts its special tokens in its budget: they come on top of
        # vocab_size (learned tokens and the byte alphabet), like the added tokens.
        vocab_size=vocab_size + len(layout.specials),
        min_frequency=min_frequency,
        show_progress=show_progress,
        # The trainer puts these at ids 0..n-1, in this order, keeping their flags.
        special_tokens=[added_token(token) for token in layout.specials],
        initial_alphabet=list(BYTE_ALPHABET),
        **affix_settings(layout.model),
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    return finish(backend, layout, source)


def affix_settings(model: dict[str, Any]) -> dict[str, str]:
    """The source BPE's subword prefix/suffix, so learned merges use the same markers."""
    # The trainer rejects None, and "" means "no marker" in the model JSON.
    keys = ("continuing_subword_prefix", "end_of_word_suffix")
    return {key: model[key] for key in keys if model.get(key)}
