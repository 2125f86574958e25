"""One detection of a tokenizer's family: the token-surface rules
(``transfer.tokenizer.special_tokens.tokenizer_family``) answer from
``tokenizer_builds.families``, so overlap and byte mapping read a vocabulary the way the
tokenizer build does."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tests.tiny import (
    GERMAN_SENTENCES,
    tiny_bpe_byte_fallback_tokenizer,
    tiny_byte_bpe_tokenizer,
    tiny_unigram_tokenizer,
    tiny_wordpiece_tokenizer,
    tiny_xlmr_style_tokenizer,
)
from tokenizer_builds.families import detect_family
from transfer.errors import TokenizerBuildError
from transfer.tokenizer.special_tokens import (
    BYTE_LEVEL,
    OTHER,
    SENTENCEPIECE,
    SURFACE_STYLE,
    WORDPIECE,
    FamilyInfo,
    tokenizer_family,
)


def _trained(model: models.Model, trainer: trainers.Trainer, pre_tokenizer: object,
             decoder: object | None = None) -> PreTrainedTokenizerFast:
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizer
    if decoder is not None:
        tok.decoder = decoder
    tok.train_from_iterator(GERMAN_SENTENCES, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def _byte_fallback_bpe_with_byte_level_pre_tokenizer() -> PreTrainedTokenizerFast:
    """BPE with byte_fallback and a ByteLevel pre-tokenizer: the build treats it as a
    byte-fallback BPE (byte_fallback wins); the old surface rule saw "ByteLevel(" first."""
    return _trained(models.BPE(unk_token="<unk>", byte_fallback=True),
                    trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>"], show_progress=False),
                    pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel())


def _unigram_without_marker() -> PreTrainedTokenizerFast:
    """A Unigram model split on whitespace (no ``▁`` anywhere): a Unigram to the build, was
    "other" to the old surface rule."""
    return _trained(models.Unigram(),
                    trainers.UnigramTrainer(vocab_size=80, special_tokens=["<unk>"], unk_token="<unk>",
                                            show_progress=False),
                    pre_tokenizers.WhitespaceSplit())


def _word_level_with_byte_level_pre_tokenizer() -> PreTrainedTokenizerFast:
    """A WordLevel model: no supported family to the build, was byte-level to the old rule."""
    return _trained(models.WordLevel(unk_token="<unk>"),
                    trainers.WordLevelTrainer(special_tokens=["<unk>"], show_progress=False),
                    pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel())


def _style_from_families(tok: PreTrainedTokenizerFast) -> str:
    try:
        return SURFACE_STYLE[detect_family(tok)]
    except TokenizerBuildError:
        return OTHER


TOKENIZERS = {
    "byte_level_bpe": lambda: tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 300),
    "bpe_byte_fallback": lambda: tiny_bpe_byte_fallback_tokenizer(GERMAN_SENTENCES, 300),
    "unigram": lambda: tiny_unigram_tokenizer(GERMAN_SENTENCES),
    "unigram_xlmr_style": lambda: tiny_xlmr_style_tokenizer(GERMAN_SENTENCES),
    "wordpiece": lambda: tiny_wordpiece_tokenizer(GERMAN_SENTENCES),
    "byte_fallback_bpe_with_byte_level": _byte_fallback_bpe_with_byte_level_pre_tokenizer,
    "unigram_without_marker": _unigram_without_marker,
    "word_level": _word_level_with_byte_level_pre_tokenizer,
}


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_surface_rule_answers_from_families(name: str) -> None:
    tok = TOKENIZERS[name]()
    assert tokenizer_family(tok).family == _style_from_families(tok)


def test_the_cases_the_two_detections_disagreed_on() -> None:
    assert tokenizer_family(_byte_fallback_bpe_with_byte_level_pre_tokenizer()) == FamilyInfo(SENTENCEPIECE, "▁")
    assert tokenizer_family(_unigram_without_marker()) == FamilyInfo(SENTENCEPIECE, "▁")
    assert tokenizer_family(_word_level_with_byte_level_pre_tokenizer()) == FamilyInfo(OTHER)
    # the four supported families keep their markers
    assert tokenizer_family(TOKENIZERS["byte_level_bpe"]()) == FamilyInfo(BYTE_LEVEL, "Ġ")
    assert tokenizer_family(TOKENIZERS["wordpiece"]()) == FamilyInfo(WORDPIECE, "##")
