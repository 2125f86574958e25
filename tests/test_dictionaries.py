"""Bilingual dictionaries: Ding and MUSE parsing, coverage, the stable held-out split."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer.errors import DictionaryError
from transfer.vectors.dictionaries import (
    DING_DE_EN,
    coverage,
    held_out_split,
    load_dictionary,
)

DING_SAMPLE = """# Version :: test
# License :: GPL
Haus {n}; Gebäude {n} [arch.] | Häuser {pl} :: house; building | houses
gehen {vi} | gehend | gegangen :: to go | going | gone
das A und O [ugs.] :: the nuts and bolts [coll.]
Aal {m} (auf der Speisekarte) [cook.] :: eel (on a menu)
Straße {f} [Br.] :: street; road
"""


def test_ding_format(tmp_path: Path):
    path = tmp_path / "de-en"
    path.write_text(DING_SAMPLE, encoding="utf-8")
    d = load_dictionary(path)
    assert d.format == "ding"
    assert d.pairs == [
        ("Haus", "house"), ("Haus", "building"), ("Gebäude", "house"), ("Gebäude", "building"),
        ("Häuser", "houses"), ("gehen", "go"), ("gehend", "going"), ("gegangen", "gone"),
        ("Aal", "eel"), ("Straße", "street"), ("Straße", "road"),
    ]
    assert d.report["entries"] == 5
    assert d.reversed().pairs[0] == ("house", "Haus")
    assert ("straße", "road") in load_dictionary(path, lowercase=True).pairs


def test_muse_format_and_detection(tmp_path: Path):
    path = tmp_path / "en-de.txt"
    path.write_text("house Haus\nhouse Gebäude\nstreet Straße\nhouse Haus\n", encoding="utf-8")
    d = load_dictionary(path)
    assert d.format == "muse" and d.pairs == [("house", "Haus"), ("house", "Gebäude"), ("street", "Straße")]


def test_bad_dictionaries(tmp_path: Path):
    odd = tmp_path / "odd.txt"
    odd.write_text("this is not\na dictionary at all\n")
    with pytest.raises(DictionaryError, match="odd.txt: unknown dictionary format"):
        load_dictionary(odd)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Straße street\n".encode("latin-1"))
    with pytest.raises(DictionaryError, match="latin1.txt: not UTF-8"):
        load_dictionary(latin1)
    with pytest.raises(DictionaryError, match="no such"):
        load_dictionary(tmp_path / "missing")
    bad_muse = tmp_path / "bad.txt"
    bad_muse.write_text("a b\nc d e\n")
    with pytest.raises(DictionaryError, match="line 2"):
        load_dictionary(bad_muse, "muse")
    with pytest.raises(DictionaryError, match="unknown dictionary format 'xml'"):
        load_dictionary(bad_muse, "xml")  # type: ignore[arg-type]


def test_held_out_split_is_stable_and_disjoint():
    pairs = [(f"w{i}", f"v{i % 50}") for i in range(2000)]
    a, b = held_out_split(pairs), held_out_split(list(reversed(pairs)))
    assert set(a.test) == set(b.test) and set(a.train) == set(b.train)
    assert 0.05 < len(a.test) / len(pairs) < 0.15
    assert not {s for s, _ in a.train} & a.test_source_words
    assert not {t for _, t in a.train} & a.test_target_words
    assert a.excludes([("w1", "zzz"), ("new", "v3"), ("new", "fresh")])[-1] == ("new", "fresh")
    with pytest.raises(DictionaryError):
        held_out_split(pairs, 1.5)


def test_coverage_counts_both_sides():
    pairs = [("a", "x"), ("b", "y"), ("c", "z")]
    assert coverage(pairs, {"a", "b"}, {"x", "z"}) == {
        "pairs": 3, "source_covered": 2, "target_covered": 2, "both_covered": 1}


@pytest.mark.skipif(not DING_DE_EN.exists(), reason="Debian package trans-de-en is not installed")
def test_real_ding_dictionary():
    d = load_dictionary(DING_DE_EN)
    assert d.format == "ding" and len(d) > 250_000
    assert ("Haus", "house") in set(d.pairs)
