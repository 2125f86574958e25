"""Train/dev/test splits from a stable hash of a key.

The Bible translations are near-copies of each other, so splitting by text would leak a
held-out verse through its translations. We split by *key* instead: the verse key
(book, chapter, verse) for Bible text, a hash of the document for other corpora. The
split of a key depends only on sha256 of the key and the fractions, so it is the same on
every run, machine and Python version (``hash()`` is salted per process and is not).

Definition (tests recompute it independently)::

    u = int.from_bytes(sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    split = "test" if u < test else "dev" if u < test + dev else "train"
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal, cast

from transfer.errors import CorpusError

Split = Literal["train", "dev", "test"]
SPLITS: tuple[str, ...] = ("train", "dev", "test")
HELD_OUT_SPLITS: tuple[str, ...] = ("dev", "test")

_UNIT = 2**64  # 8 bytes of the digest give plenty of resolution for any fraction


@dataclass(frozen=True)
class SplitFractions:
    """Fractions of keys held out for dev (tuning, choosing) and test (reporting only).

    Train gets the rest, so the two must leave some room: ``dev + test < 1``.
    """

    dev: float = 0.05
    test: float = 0.05

    def __post_init__(self) -> None:
        for name in ("dev", "test"):
            value = getattr(self, name)
            # bool is an int subclass; a stray True would silently mean 100%.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CorpusError(f"SplitFractions.{name}: expected a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise CorpusError(
                    f"SplitFractions.{name}: must be a finite number >= 0, got {value!r}"
                )
        if self.dev + self.test >= 1:
            raise CorpusError(
                f"SplitFractions: dev + test must be < 1 so that train is not empty, "
                f"got dev={self.dev!r} + test={self.test!r} = {self.dev + self.test!r}"
            )

    @property
    def train(self) -> float:
        """Fraction of keys left for training."""
        return 1.0 - self.dev - self.test


# Shared default (frozen, so one instance is safe to reuse as a default argument).
DEFAULT_FRACTIONS = SplitFractions()


def check_split(split: str, parameter: str = "split") -> Split:
    """Return ``split`` typed as :data:`Split`, or raise naming the parameter."""
    if split not in SPLITS:
        raise CorpusError(f"{parameter}: unknown split {split!r}; expected one of {SPLITS}")
    return cast(Split, split)


def key_unit(key: str) -> float:
    """Map a key to a number in [0, 1), uniform over keys, stable everywhere."""
    if not isinstance(key, str):
        raise CorpusError(f"split key: expected a string, got {type(key).__name__}")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _UNIT


def split_of(key: str, fractions: SplitFractions = DEFAULT_FRACTIONS) -> Split:
    """The split a key belongs to: test below ``test``, dev below ``test + dev``, else train."""
    unit = key_unit(key)
    if unit < fractions.test:
        return "test"
    if unit < fractions.test + fractions.dev:
        return "dev"
    return "train"


def verse_key_string(book: int, chapter: int, verse: int) -> str:
    """Split key of a Bible verse, e.g. ``"1.1.1"`` for Genesis 1:1.

    The same key in every translation, so a held-out verse is held out in all of them and
    in every parallel pair built from them.
    """
    return f"{int(book)}.{int(chapter)}.{int(verse)}"


def document_key(text: str) -> str:
    """Split key of a non-Bible document: sha256 hex of its whitespace-normalized text.

    Whitespace is normalized so copies of a document that differ only in spacing or line
    ends land in the same split (duplicates across splits would leak held-out text).
    """
    normalized = " ".join(text.split())
    return hashlib.sha256(normalized.encode("utf-8", errors="surrogatepass")).hexdigest()


def pair_key(source: str, target: str) -> str:
    """Split key of a sentence pair of a user's parallel corpus: sha256 hex of both sides,
    whitespace-normalized, so a repeated pair lands in one split."""
    normalized = " ".join(source.split()) + "\t" + " ".join(target.split())
    return hashlib.sha256(normalized.encode("utf-8", errors="surrogatepass")).hexdigest()
