"""Token vectors: every token of a vocabulary placed in the static-vector space.

WECHSEL (Minixhofer et al., 2022) gives subword tokens static vectors in two ways:

- ``ngram``: fastText's character n-gram composition of the token's surface string
  (word-boundary markers ``Ġ``/``▁``/``##`` stripped). Special tokens, bare byte tokens
  (``<0x0A>``, byte-level characters that are not a whole UTF-8 character) and tokens that
  are only whitespace get none.
- ``word_average``: the frequency-weighted mean of the vectors of the words whose
  tokenization contains the token. The word list is tokenized in batches (one tokenizer
  call per chunk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import sparse
from transformers import PreTrainedTokenizerBase

from transfer.errors import VectorsError
from transfer.tokenizer.special_tokens import (
    BYTE_LEVEL,
    fallback_byte,
    special_token_ids,
    token_surface,
    tokenizer_family,
)
from transfer.vectors.static_vectors import StaticVectors


@dataclass
class TokenVectors:
    """Rows follow token ids (``len(tokenizer)``); rows without a vector are zero."""

    matrix: np.ndarray
    has_vector: np.ndarray
    coverage: dict[str, Any] = field(default_factory=dict)


def token_surfaces(tokenizer: PreTrainedTokenizerBase) -> list[str | None]:
    """Surface string of every token id (markers stripped); None for special tokens,
    byte-fallback tokens, partial UTF-8 bytes and whitespace-only tokens."""
    info = tokenizer_family(tokenizer)
    specials = special_token_ids(tokenizer)
    surfaces: list[str | None] = [None] * len(tokenizer)
    for token, idx in tokenizer.get_vocab().items():
        if idx >= len(surfaces) or idx in specials or fallback_byte(token) is not None:
            continue
        raw, _ = token_surface(token, info)
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            continue  # a bare byte: part of a character, no meaning of its own
        if text:
            surfaces[idx] = text
    return surfaces


def _ngram_matrix(tokenizer: PreTrainedTokenizerBase, vectors: StaticVectors) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    surfaces = token_surfaces(tokenizer)
    matrix = np.zeros((len(tokenizer), vectors.dim), dtype=np.float32)
    has = np.zeros(len(tokenizer), dtype=bool)
    in_vocab = composed = 0
    for idx, text in enumerate(surfaces):
        if text is None:
            continue
        vec = vectors.vector(text)
        if vec is not None:
            matrix[idx], has[idx] = vec, True
            if text in vectors:
                in_vocab += 1
            else:
                composed += 1
    counts = {"no_surface": sum(s is None for s in surfaces), "whole_word_rows": in_vocab,
              "ngram_composed": composed}
    return matrix, has, counts


def _word_average_matrix(tokenizer: PreTrainedTokenizerBase, vectors: StaticVectors, words: Sequence[str],
                         freqs: Sequence[float], batch_size: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    specials = special_token_ids(tokenizer)
    prefix = " " if tokenizer_family(tokenizer).family == BYTE_LEVEL else ""  # word as seen mid-text
    rows, cols, vals = [], [], []
    word_vecs: list[np.ndarray] = []
    used = 0
    for start in range(0, len(words), batch_size):
        chunk = list(words[start : start + batch_size])
        chunk_vecs = [vectors.vector(w) for w in chunk]
        keep = [k for k, v in enumerate(chunk_vecs) if v is not None and freqs[start + k] > 0]
        if not keep:
            continue
        encoded = tokenizer([prefix + chunk[k] for k in keep], add_special_tokens=False)["input_ids"]
        for k, ids in zip(keep, encoded):
            for tid in set(ids):
                if tid not in specials:
                    rows.append(tid)
                    cols.append(used)
                    vals.append(float(freqs[start + k]))
            word_vecs.append(chunk_vecs[k])
            used += 1
    V = len(tokenizer)
    matrix = np.zeros((V, vectors.dim), dtype=np.float32)
    if used:
        weights = sparse.csr_matrix((vals, (rows, cols)), shape=(V, used), dtype=np.float64)
        totals = np.asarray(weights.sum(axis=1)).ravel()
        summed = weights @ np.stack(word_vecs).astype(np.float64)
        has = totals > 0
        matrix[has] = (summed[has] / totals[has, None]).astype(np.float32)
    else:
        has = np.zeros(V, dtype=bool)
    has &= np.any(matrix != 0, axis=1)
    return matrix, has, {"words_given": len(words), "words_with_vector": used}


def token_vectors(
    tokenizer: PreTrainedTokenizerBase,
    vectors: StaticVectors,
    *,
    method: Literal["ngram", "word_average"],
    words: Sequence[str] | None = None,
    word_frequencies: Sequence[float] | None = None,
    batch_size: int = 10_000,
) -> TokenVectors:
    """Vectors for every token id of ``tokenizer`` in ``vectors``' space (see module doc).

    ``word_average`` uses ``words`` (default: the vectors' vocabulary) weighted by
    ``word_frequencies`` (default: 1 each)."""
    if method == "ngram":
        if vectors.ngrams is None:
            raise VectorsError(f"{vectors.source}: method 'ngram' needs fastText vectors with an n-gram "
                               f"table (a .bin model or trained vectors), not plain word vectors")
        matrix, has, counts = _ngram_matrix(tokenizer, vectors)
    elif method == "word_average":
        words = list(vectors.words) if words is None else list(words)
        freqs = [1.0] * len(words) if word_frequencies is None else list(word_frequencies)
        if len(freqs) != len(words):
            raise VectorsError(f"word_frequencies has {len(freqs)} entries for {len(words)} words")
        if batch_size < 1:
            raise VectorsError(f"batch_size={batch_size} must be >= 1")
        matrix, has, counts = _word_average_matrix(tokenizer, vectors, words, freqs, batch_size)
    else:
        raise VectorsError(f"unknown token-vector method {method!r}; use 'ngram' or 'word_average'")
    coverage = {"method": method, "tokens": len(has), "with_vector": int(has.sum()),
                "fraction": float(has.mean()) if len(has) else 0.0, **counts}
    return TokenVectors(matrix, has, coverage)
