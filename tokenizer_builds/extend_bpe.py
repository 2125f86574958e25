"""Vocabulary extension for BPE sources: byte-level BPE (GPT-2, SmolLM2, Llama-3, Qwen) and
BPE with byte fallback (Llama-2, Mistral, Gemma).

The target text is cut into words by the source's own normalizer and pre-tokenizer (for
byte-fallback sources whose pre-tokenizer does not split words, by the split the family's
build trains with), each distinct word is segmented by the source's BPE model, and
:func:`tokenizer_builds.merge_learner.learn_merges` learns new merges on top of that
segmentation. The merges are appended after the source's (so they rank below every old
merge), their results get ids after the source's last id.

A byte-fallback vocabulary spells a character it lacks with ``<0xNN>`` pieces, which no
merge can join; such characters that the target text uses at least ``min_frequency`` times
are added first (as SentencePiece keeps a language's characters), then merges.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from tokenizers import Tokenizer

from tokenizer_builds.bpe_byte_fallback import training_pre_tokenizer
from tokenizer_builds.conventions import BYTE_FALLBACK_TOKENS
from tokenizer_builds.families import TokenizerFamily
from tokenizer_builds.merge_learner import concatenate, learn_merges

_BYTE_PIECES = frozenset(BYTE_FALLBACK_TOKENS)


def word_splitter(spec: dict[str, Any], family: TokenizerFamily) -> Tokenizer:
    """A model-less copy of the source pipeline that normalizes and pre-tokenizes text
    into the words merges are learned within."""
    pre_tokenizer: Any = spec.get("pre_tokenizer")
    if family is TokenizerFamily.BPE_BYTE_FALLBACK:
        choice = training_pre_tokenizer(spec)
        if choice != "source":
            pre_tokenizer = choice
    bare = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": spec.get("normalizer"), "pre_tokenizer": pre_tokenizer,
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {}, "unk_token": "<unk>"},
    }
    return Tokenizer.from_str(json.dumps(bare))


def word_counts(splitter: Tokenizer, texts: Iterable[str]) -> Counter[str]:
    """Frequency of each pre-tokenized word of ``texts`` (in the model's alphabet)."""
    counts: Counter[str] = Counter()
    normalizer, pre_tokenizer = splitter.normalizer, splitter.pre_tokenizer
    for text in texts:
        normalized = normalizer.normalize_str(text) if normalizer is not None else text
        if pre_tokenizer is None:
            counts[normalized] += 1
        else:
            counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalized))
    counts.pop("", None)
    return counts


def _regroup_bytes(tokens: list[str], characters: set[str]) -> list[str]:
    """Replace each run of byte pieces that spells one of ``characters`` by that character
    (what the extended model does once the character is in its vocabulary)."""
    result: list[str] = []
    pending: list[str] = []
    for token in tokens:
        if token not in _BYTE_PIECES:
            result.extend(pending)
            pending = []
            result.append(token)
            continue
        pending.append(token)
        raw = bytes(int(piece[3:5], 16) for piece in pending)
        try:
            char = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # an incomplete character: wait for its next byte
        result.extend([char] if char in characters else pending)
        pending = []
    result.extend(pending)
    return result


def new_characters(
    counts: Counter[str], vocab: dict[str, int], budget: int, min_frequency: int
) -> list[str]:
    """Characters the target words use at least ``min_frequency`` times that the source
    vocabulary lacks, most frequent first, at most ``budget``."""
    chars: Counter[str] = Counter()
    for word, count in counts.items():
        for char in word:
            chars[char] += count
    missing = [(c, n) for c, n in chars.items() if c not in vocab and n >= min_frequency]
    missing.sort(key=lambda item: (-item[1], item[0]))
    return [char for char, _ in missing[:budget]]


def extend_bpe_model(
    spec: dict[str, Any],
    backend: Tokenizer,
    family: TokenizerFamily,
    texts: Iterable[str],
    added_tokens: int,
    *,
    min_frequency: int,
    next_id: int,
) -> tuple[dict[str, Any], list[str]]:
    """The source's BPE model JSON with up to ``added_tokens`` new tokens (new characters
    for byte fallback, then learned merges) at ids from ``next_id``; returns the model and
    the new tokens in id order. ``backend`` is the source's `tokenizers` object (its model
    segments the words)."""
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    counts = word_counts(word_splitter(spec, family), texts)
    known = set(vocab) | {token["content"] for token in spec.get("added_tokens") or []}

    characters: list[str] = []
    if family is TokenizerFamily.BPE_BYTE_FALLBACK:
        characters = new_characters(counts, vocab, added_tokens, min_frequency)
    grouped = set(characters)
    segmented: Counter[tuple[str, ...]] = Counter()
    for word, count in counts.items():
        tokens = [token.value for token in backend.model.tokenize(word)]
        if grouped:
            tokens = _regroup_bytes(tokens, grouped)
        segmented[tuple(tokens)] += count

    join = concatenate(model.get("continuing_subword_prefix") or "")
    merges = learn_merges(
        segmented,
        added_tokens - len(characters),
        known=known | grouped,
        min_frequency=min_frequency,
        join=join,
        # Byte pieces and the unknown token spell no text a merge could join.
        mergeable=lambda token: token not in _BYTE_PIECES and token != model.get("unk_token"),
    )
    pairs = [(merge.left, merge.right) for merge in merges]
    return appended(model, characters, pairs, join, next_id)


def appended(
    model: dict[str, Any],
    characters: list[str],
    pairs: list[tuple[str, str]],
    join: Callable[[str, str], str],
    next_id: int,
) -> tuple[dict[str, Any], list[str]]:
    """``model`` with the new ``characters`` and the results of the new merges ``pairs``
    (in that order) at ids from ``next_id``, the merges after the old ones, in the
    source's merge format; returns the model and the new tokens in id order."""
    new_tokens = characters + [join(left, right) for left, right in pairs]
    extended_vocab = dict(model["vocab"])
    for offset, token in enumerate(new_tokens):
        extended_vocab[token] = next_id + offset
    old_merges: list[Any] = list(model.get("merges") or [])
    new_pairs: list[Any] = [[left, right] for left, right in pairs]
    if old_merges and isinstance(old_merges[0], str):
        if any(" " in part for pair in new_pairs for part in pair):
            # "a b" cannot hold a part with a space: switch the whole list to pairs.
            old_merges = [merge.split(" ", 1) for merge in old_merges]
        else:
            new_pairs = [" ".join(pair) for pair in new_pairs]
    extended = {**model, "vocab": extended_vocab, "merges": old_merges + new_pairs}
    return extended, new_tokens


def kept_target_merges(
    model: dict[str, Any],
    known: set[str],
    target: dict[str, Any],
    added_tokens: int,
    join: Callable[[str, str], str],
) -> tuple[list[str], list[tuple[str, str]]]:
    """The alternative to learning merges: walk a target BPE's characters and merges (in its
    order) and keep a merge when both parts exist already (in the source or among the kept
    ones) and its result is new; byte-fallback characters the source lacks come first.
    Returns (new characters, kept merges), at most ``added_tokens`` in all."""
    have = set(model["vocab"])
    characters = [token for token, _ in sorted(target["vocab"].items(), key=lambda item: item[1])
                  if len(token) == 1 and token not in known][:added_tokens]
    have.update(characters)
    taken = known | set(characters)
    kept: list[tuple[str, str]] = []
    for merge in target.get("merges") or []:
        if len(characters) + len(kept) >= added_tokens:
            break
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        token = join(left, right)
        if left in have and right in have and token not in taken:
            kept.append((left, right))
            have.add(token)
            taken.add(token)
    return characters, kept
