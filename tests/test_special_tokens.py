"""Special tokens map by role, byte tokens by byte value, across tokenizer families."""

from __future__ import annotations

import pytest
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast

from tests.tiny import (
    ENGLISH_SENTENCES,
    GERMAN_SENTENCES,
    tiny_byte_bpe_tokenizer,
    tiny_unigram_tokenizer,
    tiny_wordpiece_tokenizer,
)
from transfer.tokenizer.special_tokens import (
    BYTE_LEVEL,
    SENTENCEPIECE,
    WORDPIECE,
    FamilyInfo,
    byte_to_unicode,
    map_byte_tokens,
    map_special_tokens,
    special_token_ids,
    special_token_roles,
    token_surface,
    tokenizer_family,
)


@pytest.fixture(scope="module")
def smol_like() -> PreTrainedTokenizerFast:
    """Byte-level BPE with SmolLM2's roles: unk <|endoftext|>, bos <|im_start|>, eos <|im_end|>."""
    return tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 320)


@pytest.fixture(scope="module")
def unigram() -> PreTrainedTokenizerFast:
    return tiny_unigram_tokenizer(GERMAN_SENTENCES, 150)


def _tok(tok: PreTrainedTokenizerFast, idx: int) -> str:
    return tok.convert_ids_to_tokens(idx)


def test_roles(smol_like: PreTrainedTokenizerFast) -> None:
    assert special_token_roles(smol_like) == {
        "bos": "<|im_start|>",
        "eos": "<|im_end|>",
        "unk": "<|endoftext|>",
    }
    extra = tiny_byte_bpe_tokenizer(
        ENGLISH_SENTENCES, 320, specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>")
    )
    extra.add_special_tokens({"additional_special_tokens": [AddedToken("<tool>", special=True)]})
    roles = special_token_roles(extra)
    assert roles["added:<tool>"] == "<tool>"
    assert special_token_ids(extra) == {extra.get_vocab()[s] for s in roles.values()}
    wordpiece = tiny_wordpiece_tokenizer(GERMAN_SENTENCES)
    assert set(special_token_roles(wordpiece)) == {"pad", "unk", "mask", "cls", "sep"}


def test_special_tokens_map_by_role_not_string(smol_like: PreTrainedTokenizerFast) -> None:
    target = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 330, specials=("<unk>", "<s>", "</s>"))
    mapping = map_special_tokens(smol_like, target)
    named = {_tok(target, t): _tok(smol_like, s) for t, s in mapping.items()}
    assert named == {"<s>": "<|im_start|>", "</s>": "<|im_end|>", "<unk>": "<|endoftext|>"}


def test_cls_sep_stand_in_for_bos_eos(smol_like: PreTrainedTokenizerFast) -> None:
    wordpiece = tiny_wordpiece_tokenizer(GERMAN_SENTENCES)
    named = {
        _tok(wordpiece, t): _tok(smol_like, s)
        for t, s in map_special_tokens(smol_like, wordpiece).items()
    }
    assert named == {"[CLS]": "<|im_start|>", "[SEP]": "<|im_end|>", "[UNK]": "<|endoftext|>"}


def test_identical_string_and_multi_role_tokens(smol_like: PreTrainedTokenizerFast) -> None:
    # GPT-2 style: one token is bos, eos and unk; it keeps its own (identically spelled) row
    gpt2_like = tiny_byte_bpe_tokenizer(
        GERMAN_SENTENCES,
        330,
        specials=("<|endoftext|>", "<|im_end|>"),
        bos="<|endoftext|>",
        eos="<|endoftext|>",
        unk="<|endoftext|>",
    )
    gpt2_like.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    named = {
        _tok(gpt2_like, t): _tok(smol_like, s)
        for t, s in map_special_tokens(smol_like, gpt2_like).items()
    }
    # <|im_end|> has no shared role (source eos, target extra) but the same string
    assert named == {"<|endoftext|>": "<|endoftext|>", "<|im_end|>": "<|im_end|>"}


def test_byte_level_to_byte_level(smol_like: PreTrainedTokenizerFast) -> None:
    target = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 330)
    mapping = map_byte_tokens(smol_like, target)
    assert len(mapping) == 256
    assert all(_tok(target, t) == _tok(smol_like, s) for t, s in mapping.items())
    assert not set(mapping) & special_token_ids(target)
    assert not set(mapping.values()) & special_token_ids(smol_like)


def test_byte_fallback_target_from_byte_level_source(
    smol_like: PreTrainedTokenizerFast, unigram: PreTrainedTokenizerFast
) -> None:
    mapping = map_byte_tokens(smol_like, unigram)
    assert len(mapping) == 256
    newline = unigram.convert_tokens_to_ids("<0x0A>")
    assert _tok(smol_like, mapping[newline]) == "Ċ" == byte_to_unicode()[0x0A]
    assert _tok(smol_like, mapping[unigram.convert_tokens_to_ids("<0xC3>")]) == "Ã"


def test_byte_level_target_from_byte_fallback_source(
    smol_like: PreTrainedTokenizerFast, unigram: PreTrainedTokenizerFast
) -> None:
    mapping = map_byte_tokens(unigram, smol_like)
    assert len(mapping) == 256
    assert _tok(unigram, mapping[smol_like.convert_tokens_to_ids("Ċ")]) == "<0x0A>"
    # a printable byte prefers the source's own character token over <0xNN>
    source_chars = set(unigram.get_vocab())
    assert "G" in source_chars
    assert _tok(unigram, mapping[smol_like.convert_tokens_to_ids("G")]) == "G"
    assert _tok(unigram, mapping[smol_like.convert_tokens_to_ids("Ġ")]) == "<0x20>"


def test_no_byte_tokens_in_wordpiece(smol_like: PreTrainedTokenizerFast) -> None:
    assert map_byte_tokens(smol_like, tiny_wordpiece_tokenizer(GERMAN_SENTENCES)) == {}


def test_families_and_surfaces(
    smol_like: PreTrainedTokenizerFast, unigram: PreTrainedTokenizerFast
) -> None:
    assert tokenizer_family(smol_like).family == BYTE_LEVEL
    assert tokenizer_family(unigram) == FamilyInfo(SENTENCEPIECE, "▁")
    assert tokenizer_family(tiny_wordpiece_tokenizer(GERMAN_SENTENCES)) == FamilyInfo(
        WORDPIECE, "##"
    )

    byte_level, sp, wp = (
        FamilyInfo(BYTE_LEVEL, "Ġ"),
        FamilyInfo(SENTENCEPIECE, "▁"),
        FamilyInfo(WORDPIECE, "##"),
    )
    assert token_surface("Ġhaus", byte_level) == (b"haus", True)
    assert token_surface("haus", byte_level) == (b"haus", False)
    assert token_surface("GrÃ¼n", byte_level) == ("Grün".encode(), False)
    assert token_surface("Ġ", byte_level) == (b" ", False)
    assert token_surface("▁haus", sp) == (b"haus", True)
    assert token_surface("▁", sp) == (b" ", False)
    assert token_surface("<0x0A>", sp) == (b"\n", False)
    assert token_surface("##haus", wp) == (b"haus", False)
    assert token_surface("haus", wp) == (b"haus", True)


def test_llama2_style_and_xlmr_style_families_and_bytes(unigram) -> None:
    """Llama-2's normalizer-only pipeline is SentencePiece-style; a byte-fallback target
    takes a character-level source's row for the same byte (XLM-R has no byte pieces)."""
    from tests.tiny import tiny_bpe_byte_fallback_tokenizer, tiny_xlmr_style_tokenizer

    llama2 = tiny_bpe_byte_fallback_tokenizer(ENGLISH_SENTENCES, 300)
    assert tokenizer_family(llama2) == FamilyInfo(SENTENCEPIECE, "▁")
    assert token_surface("▁Haus", tokenizer_family(llama2)) == (b"Haus", True)
    xlmr_like = tiny_xlmr_style_tokenizer(ENGLISH_SENTENCES, 120)
    assert tokenizer_family(xlmr_like) == FamilyInfo(SENTENCEPIECE, "▁")
    mapping = map_byte_tokens(xlmr_like, unigram)
    byte_a = unigram.convert_tokens_to_ids("<0x41>")
    assert mapping[byte_a] == xlmr_like.convert_tokens_to_ids("A")
    assert unigram.convert_tokens_to_ids("<0x0A>") not in mapping  # no newline in the source
    # and between two byte-fallback vocabularies every byte maps to its twin
    both = map_byte_tokens(llama2, unigram)
    assert len(both) == 256
    assert all(
        _tok(unigram, t) == _tok(llama2, s) for t, s in both.items()
    )
