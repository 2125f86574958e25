"""The static word-vector type: words, their matrix and fastText's subword n-grams.

fastText (Bojanowski et al., 2017, "Enriching Word Vectors with Subword Information")
represents a word as the mean of its own vector and the vectors of its character n-grams
(``<word>`` with boundary symbols, lengths ``minn..maxn``), each n-gram hashed (FNV-1a) into
one of ``bucket`` rows. That composition gives vectors to words never seen in training and
to subword tokens (WECHSEL's first token method), so :class:`StaticVectors` keeps the
n-gram table (:class:`NgramTable`) next to the word matrix when one exists.

Also :func:`tokenize_words`, the one definition of a word shared by fastText training,
word alignment and dictionary lookups. Reading and writing files is in
:mod:`transfer.vectors.vector_formats`, training in :mod:`transfer.vectors.fasttext_training`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from transfer.errors import VectorsError

_WORD_RE = re.compile(r"\w+(?:['’\-]\w+)*")


def tokenize_words(text: str, *, lowercase: bool = False) -> list[str]:
    """Words of ``text`` (Unicode letters/digits, inner apostrophes and hyphens kept);
    punctuation dropped. The same tokenization is used for fastText training, word
    alignment and dictionary lookups, so all of them agree on what a word is."""
    words = _WORD_RE.findall(text)
    return [w.lower() for w in words] if lowercase else words


# ---------------------------------------------------------------------------------------
# fastText character n-grams


def _fnv1a(data: bytes) -> int:
    """fastText's hash: 32-bit FNV-1a over bytes read as *signed* chars (a quirk of its
    C++ code: bytes >= 0x80 are sign-extended before the xor)."""
    h = 2166136261
    for byte in data:
        h ^= byte if byte < 0x80 else (byte | 0xFFFFFF00)
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def char_ngrams(word: str, minn: int, maxn: int) -> list[str]:
    """fastText's n-grams of ``<word>`` (lengths in characters, ``minn..maxn``; a lone
    boundary symbol is never an n-gram)."""
    wrapped = f"<{word}>"
    grams = []
    size = len(wrapped)
    for i in range(size):
        for n in range(1, maxn + 1):
            if i + n > size:
                break
            if n >= minn and not (n == 1 and (i == 0 or i + n == size)):
                grams.append(wrapped[i : i + n])
    return grams


@dataclass
class NgramTable:
    """fastText's hashed n-gram rows: all ``bucket`` rows (``ids is None``) or only the
    rows listed in the sorted ``ids``."""

    minn: int
    maxn: int
    bucket: int
    rows: np.ndarray
    ids: np.ndarray | None = None
    # ``rows`` may be a view into a loaded fastText model's own matrix (no copy of a
    # multi-GB table); the model must then live as long as the view
    owner: Any = field(default=None, repr=False, compare=False)

    def bucket_ids(self, text: str) -> list[int]:
        if self.maxn <= 0 or self.bucket <= 0:
            return []
        return [_fnv1a(g.encode("utf-8")) % self.bucket for g in char_ngrams(text, self.minn, self.maxn)]

    def compose(self, text: str, extra: np.ndarray | None = None) -> np.ndarray | None:
        """Mean of the n-gram rows of ``text`` (plus ``extra``, the word's own row, as
        fastText does for in-vocabulary words); None when no row is known."""
        ids = np.asarray(self.bucket_ids(text), dtype=np.int64)
        if self.ids is None:
            found = self.rows[ids] if ids.size else self.rows[:0]
        else:
            pos = np.searchsorted(self.ids, ids)
            pos = np.minimum(pos, max(len(self.ids) - 1, 0))
            hit = self.ids[pos] == ids if len(self.ids) else np.zeros(len(ids), bool)
            found = self.rows[pos[hit]]
        if found.shape[0] == 0 and extra is None:
            return None
        total = found.astype(np.float32).sum(axis=0)
        if extra is not None:
            total = total + extra.astype(np.float32)
        # Buckets left out of a compact table were never trained (zero in fastText's own
        # matrix), so they still count in the mean, as fastText counts them.
        return total / (len(ids) + (extra is not None))

    def restricted_to(self, words: Iterable[str]) -> NgramTable:
        """Only the buckets that the n-grams of ``words`` use (compact storage)."""
        needed = sorted({b for w in words for b in self.bucket_ids(w)})
        ids = np.asarray(needed, dtype=np.int64)
        if self.ids is None:
            rows = self.rows[ids]
        else:
            pos = np.searchsorted(self.ids, ids)
            pos = np.minimum(pos, max(len(self.ids) - 1, 0))
            keep = self.ids[pos] == ids
            ids, rows = ids[keep], self.rows[pos[keep]]
        return NgramTable(self.minn, self.maxn, self.bucket, np.ascontiguousarray(rows, np.float32), ids)


# ---------------------------------------------------------------------------------------
# the vectors


def _apply_ops(vec: np.ndarray, ops: Sequence[tuple[str, np.ndarray | None]]) -> np.ndarray:
    # every op below makes a new array, so the input is never changed: no copy up front
    out = np.asarray(vec, dtype=np.float32)
    for name, arg in ops:
        if name == "unit":
            norm = np.linalg.norm(out, axis=-1, keepdims=True)
            out = out / np.where(norm > 0, norm, 1.0)
        elif name == "center":
            out = out - arg
        elif name == "linear":
            out = out @ arg
        else:  # pragma: no cover - ops are built only by the methods below
            raise ValueError(f"unknown vector operation {name!r}")
    return out.astype(np.float32, copy=False)


@dataclass
class StaticVectors:
    """Word vectors (``matrix`` rows follow ``words``), optionally with fastText's n-gram
    table so that any string gets a vector. ``ops`` are the transformations (unit length,
    centring, linear maps) already applied to ``matrix``; they are applied to every later
    n-gram composition too, so composed vectors land in the same space."""

    words: list[str]
    matrix: np.ndarray
    ngrams: NgramTable | None = None
    ops: tuple[tuple[str, np.ndarray | None], ...] = ()
    source: str = ""
    lowercase: bool = False  # trained on lowercased text: look words up lowercased
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.ascontiguousarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.words):
            raise VectorsError(
                f"{self.source or 'vectors'}: matrix shape {self.matrix.shape} does not match "
                f"{len(self.words)} words"
            )

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    @cached_property
    def index(self) -> dict[str, int]:
        """word -> row (the first row of a word listed twice)."""
        found: dict[str, int] = {}
        for i, word in enumerate(self.words):
            found.setdefault(word, i)
        return found

    def _key(self, word: str) -> str:
        return word.lower() if self.lowercase else word

    def __contains__(self, word: str) -> bool:
        return self._key(word) in self.index

    def ngram_vector(self, text: str) -> np.ndarray | None:
        """fastText composition of an arbitrary string from its character n-grams (no
        word row), in this object's space; None without an n-gram table, when no n-gram
        row is known, or when the composition is all zero (not a direction)."""
        if self.ngrams is None or not text:
            return None
        raw = self.ngrams.compose(self._key(text))
        if raw is None or not np.any(raw):
            return None
        return _apply_ops(raw, self.ops)

    def vector(self, word: str) -> np.ndarray | None:
        """The word's row when in the vocabulary, else its n-gram composition; None when
        neither exists or the vector is all zero."""
        row = self.index.get(self._key(word))
        if row is not None:
            vec = self.matrix[row]
            return vec.copy() if np.any(vec) else None
        return self.ngram_vector(word)

    def _derive(self, matrix: np.ndarray, op: tuple[str, np.ndarray | None]) -> StaticVectors:
        return StaticVectors(list(self.words), matrix, self.ngrams, self.ops + (op,), self.source,
                             self.lowercase, dict(self.meta))

    def transformed(self, W: np.ndarray) -> StaticVectors:
        """Apply the linear map ``x -> x @ W`` to every vector, now and when composed."""
        W = np.asarray(W, dtype=np.float32)
        if W.ndim != 2 or W.shape[0] != self.dim:
            raise VectorsError(f"{self.source or 'vectors'}: map of shape {W.shape} does not fit dim {self.dim}")
        return self._derive(self.matrix @ W, ("linear", W))

    def unit_normalized(self) -> StaticVectors:
        return self._derive(_apply_ops(self.matrix, [("unit", None)]), ("unit", None))

    def centered(self, mean: np.ndarray | None = None) -> StaticVectors:
        mean = self.matrix.mean(axis=0) if mean is None else np.asarray(mean, np.float32)
        return self._derive(self.matrix - mean, ("center", mean.astype(np.float32)))

    def restricted(self, limit: int) -> StaticVectors:
        """The first ``limit`` words (files are usually sorted by frequency)."""
        return StaticVectors(self.words[:limit], self.matrix[:limit], self.ngrams, self.ops,
                             self.source, self.lowercase, dict(self.meta))
