"""Tokenizer fertility: how many tokens a tokenizer spends on a text.

Reported next to bits per byte: tokens per word (lower is better for a language) and UTF-8
bytes per token (higher means shorter sequences, so faster models). Special tokens are not
counted, so tokenizers with and without bos/eos compare fairly.

A word is a whitespace-separated chunk, except in scripts written without spaces (Han, kana,
Thai, Lao, Khmer, Myanmar, Tibetan), where no segmenter is assumed and each character counts
as a word: otherwise a Japanese verse would be one "word" and its fertility the tokens per
verse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import regex
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

from transfer.errors import CorpusError, VocabTransferError


@dataclass(frozen=True)
class Fertility:
    """Token, word and byte counts of one tokenizer over one set of texts."""

    n_texts: int
    n_words: int
    n_bytes: int
    n_tokens: int

    @property
    def tokens_per_word(self) -> float:
        """Tokens per word (see the module doc; NaN when there are no words)."""
        return self.n_tokens / self.n_words if self.n_words else math.nan

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token (NaN when there are no tokens)."""
        return self.n_bytes / self.n_tokens if self.n_tokens else math.nan

    def to_dict(self) -> dict[str, float | int]:
        """Counts plus the two ratios, for reports."""
        return {
            **asdict(self),
            "tokens_per_word": self.tokens_per_word,
            "bytes_per_token": self.bytes_per_token,
        }


# Scripts written without spaces between words: each character counts as a word.
_UNSPACED = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}]")


def count_words(text: str) -> int:
    """Whitespace-separated words; in a chunk with characters of an unspaced script, each of
    those characters is a word, plus one for whatever letters or digits the chunk has besides."""
    words = 0
    for chunk in text.split():
        unspaced = len(_UNSPACED.findall(chunk))
        if not unspaced:
            words += 1
        else:
            rest = _UNSPACED.sub("", chunk)
            words += unspaced + (1 if any(ch.isalnum() for ch in rest) else 0)
    return words


def _count_tokens(tokenizer: PreTrainedTokenizerBase | Tokenizer, batch: list[str]) -> int:
    """Tokens in a batch of texts, without special tokens, in one batched encode call."""
    if isinstance(tokenizer, Tokenizer):
        encodings = tokenizer.encode_batch(batch, add_special_tokens=False)
        return sum(len(encoding.ids) for encoding in encodings)
    ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
    return sum(len(row) for row in ids)


def measure_fertility(
    tokenizer: PreTrainedTokenizerBase | Tokenizer,
    texts: Sequence[str],
    batch_size: int = 1000,
) -> Fertility:
    """Count texts, whitespace-separated words, UTF-8 bytes and tokens over ``texts``."""
    if isinstance(texts, str):
        raise CorpusError("texts must be a sequence of strings, not a single string")
    if len(texts) == 0:
        raise CorpusError("texts: no texts to measure fertility on")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise VocabTransferError(f"batch_size={batch_size!r} must be an integer >= 1")
    n_words = n_bytes = n_tokens = 0
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        n_words += sum(count_words(text) for text in batch)
        n_bytes += sum(len(text.encode("utf-8")) for text in batch)
        n_tokens += _count_tokens(tokenizer, batch)
    return Fertility(n_texts=len(texts), n_words=n_words, n_bytes=n_bytes, n_tokens=n_tokens)


def compare_fertility(
    source_tok: PreTrainedTokenizerBase | Tokenizer,
    target_tok: PreTrainedTokenizerBase | Tokenizer,
    texts: Sequence[str],
) -> dict[str, Fertility]:
    """Fertility of the source and target tokenizers on the same texts."""
    return {
        "source": measure_fertility(source_tok, texts),
        "target": measure_fertility(target_tok, texts),
    }


def text_script(texts: Sequence[str]) -> str:
    """The script most letters of ``texts`` are written in, from their Unicode names
    (``LATIN``, ``CYRILLIC``, ``CJK``, ``HIRAGANA`` ...): read off the text, not the tag."""
    import unicodedata
    from collections import Counter

    counts: Counter[str] = Counter()
    for text in texts:
        for ch in text:
            if ch.isalpha():
                counts[unicodedata.name(ch, "UNKNOWN").split()[0]] += 1
    return counts.most_common(1)[0][0].title() if counts else "None"


def fertility_by_language(
    source_tok: PreTrainedTokenizerBase | Tokenizer,
    target_tok: PreTrainedTokenizerBase | Tokenizer,
    texts: dict[str, Sequence[str]],
) -> dict[str, dict[str, dict]]:
    """A run of several languages: both tokenizers' fertility on each language's texts
    (``languages``: language -> script, source, target) and summed per script (``scripts``:
    script -> languages, source, target), so a joint tokenizer's share of each script shows."""
    languages: dict[str, dict] = {}
    totals: dict[str, dict[str, list[Fertility]]] = {}
    names: dict[str, list[str]] = {}
    for lang, lang_texts in texts.items():
        if not lang_texts:
            continue
        measured = compare_fertility(source_tok, target_tok, lang_texts)
        script = text_script(lang_texts)
        languages[lang] = {"script": script, **{side: f.to_dict() for side, f in measured.items()}}
        names.setdefault(script, []).append(lang)
        for side, f in measured.items():
            totals.setdefault(script, {}).setdefault(side, []).append(f)
    scripts = {script: {"languages": names[script], **{
        side: Fertility(*(sum(getattr(f, name) for f in parts) for name in ("n_texts", "n_words", "n_bytes",
                                                                             "n_tokens"))).to_dict()
        for side, parts in sides.items()}} for script, sides in totals.items()}
    return {"languages": languages, "scripts": scripts}
