"""Stable hash splits: definition, stability, fractions, validation."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from transfer.corpus.splits import (
    SPLITS,
    SplitFractions,
    check_split,
    document_key,
    key_unit,
    split_of,
    verse_key_string,
)
from transfer.errors import CorpusError


def _reference_split(key: str, dev: float = 0.05, test: float = 0.05) -> str:
    """The documented definition, recomputed here without the module's helpers."""
    unit = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    if unit < test:
        return "test"
    if unit < test + dev:
        return "dev"
    return "train"


def test_splits_constant() -> None:
    assert SPLITS == ("train", "dev", "test")


def test_hard_coded_splits_are_stable() -> None:
    # Values fixed once; a change here means every held-out set moved.
    assert split_of("1.1.1") == "train"
    assert split_of("1.1.6") == "test"
    assert split_of("1.3.7") == "dev"
    # an integer over 2**64, one IEEE division: the same double everywhere (1e-15 is ~10 ulps)
    assert key_unit("1.1.1") == pytest.approx(0.7713191851703791, abs=1e-15)


def test_split_matches_definition() -> None:
    keys = [
        verse_key_string(b, c, v) for b in (1, 19, 66) for c in range(1, 6) for v in range(1, 40)
    ]
    keys += ["", "ü-ñ", document_key("some text")]
    for fractions in (SplitFractions(), SplitFractions(dev=0.2, test=0.1)):
        for key in keys:
            assert split_of(key, fractions) == _reference_split(key, fractions.dev, fractions.test)


def test_fractions_roughly_respected() -> None:
    keys = [f"doc-{i}" for i in range(20000)]
    counts = Counter(split_of(k, SplitFractions(dev=0.1, test=0.2)) for k in keys)
    # statistical: binomial fractions of 20,000 keys, sd 0.0028 (test) and 0.0021 (dev): >= 5 sd
    assert counts["test"] / len(keys) == pytest.approx(0.2, abs=0.015)
    assert counts["dev"] / len(keys) == pytest.approx(0.1, abs=0.015)


def test_zero_fractions_put_everything_in_train() -> None:
    fractions = SplitFractions(dev=0.0, test=0.0)
    assert fractions.train == 1.0
    assert {split_of(f"k{i}", fractions) for i in range(500)} == {"train"}


def test_nested_fractions_only_move_keys_out_of_train() -> None:
    # Growing test keeps every earlier test key in test (test is a prefix of [0, 1)).
    small, large = SplitFractions(dev=0.0, test=0.05), SplitFractions(dev=0.0, test=0.1)
    for i in range(2000):
        if split_of(f"k{i}", small) == "test":
            assert split_of(f"k{i}", large) == "test"


@pytest.mark.parametrize(
    ("dev", "test"),
    [
        (-0.1, 0.05),
        (0.05, -0.01),
        (0.5, 0.5),
        (0.9, 0.2),
        (float("nan"), 0.0),
        (True, 0.0),
        ("0.1", 0.0),
    ],
)
def test_bad_fractions_rejected(dev: object, test: object) -> None:
    with pytest.raises(CorpusError, match="SplitFractions"):
        SplitFractions(dev=dev, test=test)  # type: ignore[arg-type]


def test_check_split() -> None:
    assert check_split("dev") == "dev"
    with pytest.raises(CorpusError, match="split.*'validation'"):
        check_split("validation")


def test_verse_key_string() -> None:
    assert verse_key_string(1, 1, 1) == "1.1.1"
    assert verse_key_string(43, 3, 16) == "43.3.16"


def test_document_key_stable_and_whitespace_insensitive() -> None:
    expected = hashlib.sha256(b"Guten Tag, Welt.").hexdigest()
    assert document_key("Guten Tag, Welt.") == expected
    assert document_key("  Guten   Tag,\tWelt.\n") == expected
    assert document_key("Guten Tag, Welt!") != expected
