"""Fertility: hand-countable words, bytes and tokens."""

from __future__ import annotations

import json
import math

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from transfer.errors import CorpusError, VocabTransferError
from transfer.tokenizer.fertility import Fertility, compare_fertility, measure_fertility


def char_tokenizer() -> Tokenizer:
    """One token per non-space character; wraps every text in <s> ... </s>."""
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2}
    for char in "abcdefghijklmnopqrstuvwxyzäöüß":
        vocab[char] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split("", "isolated")]
    )
    backend.add_special_tokens(["<s>", "</s>"])
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)]
    )
    return backend


def word_tokenizer() -> Tokenizer:
    """One token per whitespace-separated word (unknown words become <unk>)."""
    backend = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return backend


TEXTS = ["ab cd", "  größe  ", "", "x y z"]
# words: 2 + 1 + 0 + 3 = 6; bytes: 5 + 11 (4 spaces, "ö" and "ß" take 2) + 0 + 5 = 21
# char tokens (no <s>/</s>): 4 + 5 + 0 + 3 = 12


def test_fertility_ratios_and_dict() -> None:
    fertility = Fertility(n_texts=2, n_words=4, n_bytes=30, n_tokens=10)
    assert fertility.tokens_per_word == 2.5
    assert fertility.bytes_per_token == 3.0
    assert fertility.to_dict() == {
        "n_texts": 2,
        "n_words": 4,
        "n_bytes": 30,
        "n_tokens": 10,
        "tokens_per_word": 2.5,
        "bytes_per_token": 3.0,
    }
    json.dumps(fertility.to_dict())


def test_ratios_without_words_or_tokens_are_nan() -> None:
    empty = Fertility(n_texts=1, n_words=0, n_bytes=0, n_tokens=0)
    assert math.isnan(empty.tokens_per_word)
    assert math.isnan(empty.bytes_per_token)


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_hand_counted_values_without_special_tokens(batch_size: int) -> None:
    fertility = measure_fertility(char_tokenizer(), TEXTS, batch_size=batch_size)
    assert fertility == Fertility(n_texts=4, n_words=6, n_bytes=21, n_tokens=12)
    assert fertility.tokens_per_word == 2.0
    assert fertility.bytes_per_token == pytest.approx(21 / 12)


def test_wrapped_tokenizer_counts_the_same() -> None:
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=char_tokenizer(), bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    assert measure_fertility(wrapped, TEXTS) == measure_fertility(char_tokenizer(), TEXTS)


def test_encodes_in_batches_not_per_text() -> None:
    calls: list[int] = []

    class Counting:
        """Stands in for a wrapped tokenizer and records batch sizes."""

        def __call__(self, batch: list[str], add_special_tokens: bool) -> dict:
            assert add_special_tokens is False
            calls.append(len(batch))
            return {"input_ids": [[0] * len(text.split()) for text in batch]}

    fertility = measure_fertility(Counting(), ["a b"] * 5, batch_size=2)  # type: ignore[arg-type]
    assert calls == [2, 2, 1]
    assert fertility.n_tokens == 10


def test_compare_fertility_keys_and_values() -> None:
    result = compare_fertility(char_tokenizer(), word_tokenizer(), TEXTS)
    assert set(result) == {"source", "target"}
    assert result["source"].n_tokens == 12
    assert result["target"] == Fertility(n_texts=4, n_words=6, n_bytes=21, n_tokens=6)
    assert result["target"].tokens_per_word == 1.0


def test_bad_inputs() -> None:
    with pytest.raises(CorpusError, match="no texts"):
        measure_fertility(char_tokenizer(), [])
    with pytest.raises(CorpusError, match="single string"):
        measure_fertility(char_tokenizer(), "ab cd")
    with pytest.raises(VocabTransferError, match="batch_size"):
        measure_fertility(char_tokenizer(), TEXTS, batch_size=0)


@pytest.mark.parametrize(("text", "words"), [
    ("Im Anfang schuf Gott die Himmel und die Erde.", 9),  # spaced: whitespace words, as always
    ("— und dann", 3),  # a chunk of punctuation still counts in a spaced text
    ("初めに、神が天と地を創造した。", 13),  # Japanese: each Han/kana character, not the punctuation
    ("起初，神创造天地。", 7),  # Chinese
    ("ในปฐมกาล พระเจ้าทรงสร้างฟ้าและแผ่นดิน", 36),  # Thai: characters (vowel signs included)
    ("GPT-4は日本語も話す", 8),  # mixed chunk: 7 unspaced characters plus the Latin part
])
def test_words_in_spaced_and_unspaced_scripts(text: str, words: int) -> None:
    from transfer.tokenizer.fertility import count_words

    assert count_words(text) == words


def test_japanese_fertility_is_per_character_not_per_verse() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # one token a character
    verse = "初めに、神が天と地を創造した。"
    fertility = measure_fertility(tokenizer, [verse])
    assert fertility.n_words == 13 and fertility.n_tokens == len(verse)
    assert fertility.tokens_per_word == pytest.approx(15 / 13)
