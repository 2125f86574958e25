"""Tokenizer families: which kind of subword model a source tokenizer is.

A target tokenizer must belong to the same family as the source one, so that byte tokens,
word-boundary markers and special tokens follow the same conventions. The family is read
from the backend tokenizer's JSON (model type, ByteLevel pre-tokenizer, byte_fallback);
this is the one place that decides it (``transfer.tokenizer.special_tokens`` asks here
how a vocabulary spells word starts and bytes).

This module also holds the input checks every family builder shares (vocabulary budget,
non-empty corpus), so that they fail before any training starts.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Any

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

from transfer.errors import TokenizerBuildError


class TokenizerFamily(str, Enum):
    """The subword families a target tokenizer can be built for."""

    BYTE_LEVEL_BPE = "byte_level_bpe"
    BPE_BYTE_FALLBACK = "bpe_byte_fallback"
    UNIGRAM = "unigram"
    WORDPIECE = "wordpiece"


def backend_json(tokenizer: PreTrainedTokenizerBase | Tokenizer) -> dict[str, Any]:
    """The `tokenizers` serialization of a tokenizer (its ``tokenizer.json`` content)."""
    if isinstance(tokenizer, Tokenizer):
        backend = tokenizer
    else:
        # Slow (pure Python) tokenizers have no `tokenizers` backend to read conventions from.
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise TokenizerBuildError(
                f"source tokenizer {type(tokenizer).__name__} has no `tokenizers` backend "
                "(a slow-only tokenizer); load or convert it as a fast tokenizer first"
            )
    return json.loads(backend.to_str())


_MODEL_FLAGS: tuple[str, ...] = (
    "byte_fallback", "continuing_subword_prefix", "end_of_word_suffix", "unk_token", "fuse_unk",
)


def pipeline_json(tokenizer: PreTrainedTokenizerBase | Tokenizer) -> dict[str, Any]:
    """The parts of the backend JSON that family detection reads (model type and flags,
    normalizer, pre-tokenizer, decoder), without serializing the vocabulary: for a 262k
    vocabulary with its merges that costs about a second each time."""
    backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        return backend_json(tokenizer)  # raises the slow-tokenizer error
    model = backend.model
    spec: dict[str, Any] = {"model": {"type": type(model).__name__}}
    for flag in _MODEL_FLAGS:
        value = getattr(model, flag, None)
        if value is not None:
            spec["model"][flag] = value
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        component = getattr(backend, part)
        spec[part] = None if component is None else json.loads(component.__getstate__())
    return spec


def contains_type(node: Any, type_name: str) -> bool:
    """Whether a component JSON (possibly a nested Sequence) has a part of ``type_name``."""
    if isinstance(node, dict):
        return node.get("type") == type_name or any(
            contains_type(value, type_name) for value in node.values()
        )
    if isinstance(node, list):
        return any(contains_type(item, type_name) for item in node)
    return False


def family_of_json(spec: dict[str, Any]) -> TokenizerFamily:
    """The family of a tokenizer given its backend JSON."""
    model = spec.get("model") or {}
    model_type = model.get("type")
    if model_type == "BPE":
        # byte_fallback wins: such vocabularies hold <0x..> tokens, not a byte alphabet.
        if model.get("byte_fallback"):
            return TokenizerFamily.BPE_BYTE_FALLBACK
        if contains_type(spec.get("pre_tokenizer"), "ByteLevel"):
            return TokenizerFamily.BYTE_LEVEL_BPE
        pre = (spec.get("pre_tokenizer") or {}).get("type")
        raise TokenizerBuildError(
            f"source tokenizer is a BPE model with neither a ByteLevel pre-tokenizer nor "
            f"byte_fallback (pre_tokenizer type: {pre}); no supported family matches it"
        )
    if model_type == "Unigram":
        return TokenizerFamily.UNIGRAM
    if model_type == "WordPiece":
        return TokenizerFamily.WORDPIECE
    supported = ", ".join(family.value for family in TokenizerFamily)
    raise TokenizerBuildError(
        f"source tokenizer has model type {model_type!r}, which belongs to no supported "
        f"family ({supported})"
    )


def detect_family(tokenizer: PreTrainedTokenizerBase | Tokenizer) -> TokenizerFamily:
    """Inspect a tokenizer's backend JSON and name its family."""
    return family_of_json(backend_json(tokenizer))


_DEFAULT_MARKER = "▁"


def word_marker(spec: dict[str, Any]) -> str:
    """The word-start marker: a Metaspace's replacement, else the content a normalizer
    ``Replace`` puts for a space (Llama-2), else ``▁``."""

    def search(node: Any) -> str | None:
        if isinstance(node, dict):
            if node.get("type") == "Metaspace" and node.get("replacement"):
                return str(node["replacement"])
            if node.get("type") == "Replace" and node.get("pattern") == {"String": " "}:
                return str(node.get("content") or "") or None
            for value in node.values():
                found = search(value)
                if found:
                    return found
        if isinstance(node, list):
            for item in node:
                found = search(item)
                if found:
                    return found
        return None

    for part in ("pre_tokenizer", "normalizer", "decoder"):
        found = search(spec.get(part))
        if found:
            return found
    return _DEFAULT_MARKER


def check_vocab_size(vocab_size: int, *, n_reserved: int, alphabet_size: int) -> None:
    """A vocabulary must hold the reserved tokens, the base alphabet and at least one merge."""
    minimum = n_reserved + alphabet_size + 1
    if not isinstance(vocab_size, int) or vocab_size < minimum:
        raise TokenizerBuildError(
            f"vocab_size={vocab_size!r} is too small: the minimum is {minimum} "
            f"({n_reserved} special/added tokens + {alphabet_size} alphabet symbols + 1)"
        )


def check_min_frequency(min_frequency: int) -> None:
    """Merges need a pair count threshold of at least one."""
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise TokenizerBuildError(f"min_frequency={min_frequency!r} must be an integer >= 1")


def require_texts(texts: Iterable[str]) -> Iterator[str]:
    """Peek at the first text (without losing it) so an empty corpus fails before training."""
    iterator = iter(texts)
    first = next(iterator, None)
    if first is None:
        raise TokenizerBuildError("texts: corpus is empty (no text to train the tokenizer on)")
    if not isinstance(first, str):
        raise TokenizerBuildError(f"texts must yield str, got {type(first).__name__}")
    return itertools.chain([first], iterator)
