"""The packaged Bible's language table, checked against the texts, and what it decides: a
config's default target Bibles follow its target language, and another language's Bible
is refused (a run for Swahili once trained and aligned on the German default)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from transfer.corpus.bible import bible_db_path, clean_verse_text, translation_codes
from transfer.corpus.bible_languages import (
    BIBLE_LANGUAGES,
    LANGUAGE_NAMES,
    bibles_of,
    primary_language,
)
from transfer.errors import CorpusError
from transfer.settings.config import AdaptConfig
from transfer.settings.input_warnings import expected_scripts, run_notes, script_warning
from transfer.settings.validate import validate_config

N_VERSES = 1500


def _texts(code: str, n: int) -> list[str]:
    """The first ``n`` verses of the New Testament, raw (one query, not the whole cleaned book)."""
    with sqlite3.connect(bible_db_path()) as conn:
        rows = conn.execute("SELECT vText FROM bible WHERE bbName = ? AND bNumber >= 40 "
                            "ORDER BY bNumber, cNumber, vNumber LIMIT ?", (code, n)).fetchall()
    return [clean_verse_text(row[0] or "") for row in rows]


def _words(code: str) -> set[str]:
    return {w for text in _texts(code, N_VERSES) for w in re.findall(r"\w+", text.lower())}


def test_the_table_covers_the_database_and_names_every_language() -> None:
    assert sorted(BIBLE_LANGUAGES) == translation_codes()
    assert set(BIBLE_LANGUAGES.values()) <= set(LANGUAGE_NAMES)


@pytest.mark.parametrize("code", sorted(BIBLE_LANGUAGES))
def test_each_translation_is_written_in_its_languages_script(code: str) -> None:
    texts = _texts(code, 200)
    assert expected_scripts(BIBLE_LANGUAGES[code]) is not None
    assert script_warning(BIBLE_LANGUAGES[code], texts) is None


def test_translations_of_one_language_share_more_words_with_each_other_than_with_any_other() -> None:
    """The table from the texts alone: for every translation with a sibling in the table,
    the translation whose vocabulary overlaps its own most is one of those siblings."""
    words = {code: _words(code) for code in BIBLE_LANGUAGES}
    for code, language in BIBLE_LANGUAGES.items():
        siblings = set(bibles_of(language)) - {code}
        if not siblings:
            continue
        nearest = max((c for c in words if c != code),
                      key=lambda c: len(words[code] & words[c]) / len(words[code] | words[c]))
        assert nearest in siblings, (code, language, nearest, BIBLE_LANGUAGES[nearest])


def test_tags_are_compared_by_their_language() -> None:
    assert [primary_language(t) for t in ("pt-BR", "zh_Hans", "deu", "SW", "gsw")] == ["pt", "zh", "de", "sw", "gsw"]
    assert bibles_of("de") == ["e", "s"] and bibles_of("sw-KE") == ["h"] and bibles_of("fi") == []


def test_target_bible_not_given_follows_the_target_language() -> None:
    assert AdaptConfig().target_bible == ["e", "s"]  # the demo's German default is unchanged
    assert AdaptConfig(target_language="sw").target_bible == ["h"]
    assert AdaptConfig(target_language="fr").target_bible == ["5", "l", "o"]
    assert AdaptConfig(target_language="sw", target_files=["my.txt"]).target_bible == []
    assert AdaptConfig(target_language="sw", target_bible=["h"], target_files=["my.txt"]).target_bible == ["h"]
    # a Swahili run without its own text now aligns the Swahili Bible with the English ones
    assert AdaptConfig(target_language="sw").strategy == "combined"


def test_another_languages_bible_is_refused_before_any_stage(tmp_path: Path) -> None:
    cfg = AdaptConfig(target_language="sw", target_bible=["h", "e"], cache_dir=tmp_path / "cache")
    with pytest.raises(CorpusError, match=r"target_bible 'e' \(German\) is not in the target language "
                                          r"Swahili \(sw\): its packaged translations are \['h'\]"):
        validate_config(cfg)
    assert not (tmp_path / "cache").exists()


def test_a_language_without_a_bible_needs_its_own_corpus(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no target corpus for 'fi'.*no translation.*target_files"):
        validate_config(AdaptConfig(target_language="fi", cache_dir=tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_borrowing_a_close_languages_bible_is_allowed_and_said(tmp_path: Path) -> None:
    cfg = AdaptConfig(target_language="gsw", target_bible=["e", "s"], strategy="mean", cache_dir=tmp_path)
    notes = run_notes(cfg)
    assert any("German text" in n and "'gsw' has no packaged Bible" in n for n in notes)
    assert not any("no packaged Bible" in n for n in run_notes(AdaptConfig(strategy="mean", cache_dir=tmp_path)))


def test_languages_file_corpus_defaults_to_the_languages_bibles(tmp_path: Path) -> None:
    from flows.languages import LanguagesConfigError, load_languages

    def languages(body: str) -> Path:
        path = tmp_path / "languages.yaml"
        path.write_text("defaults: {source_model: smollm2}\nlanguages:\n" + body)
        return path

    loaded = load_languages(languages("  pt: {name: Portuguese}\n  sw: {name: Swahili, corpus: {files: [x.txt]}}\n"))
    assert loaded.parameters("pt").target_bible == ["a"]
    assert (loaded.parameters("sw").target_bible, loaded.parameters("sw").target_files) == ([], ["x.txt"])
    with pytest.raises(LanguagesConfigError, match=r"'fi' has no corpus.*give corpus: \{files"):
        load_languages(languages("  fi: {name: Finnish}\n"))
    with pytest.raises(LanguagesConfigError, match=r"'sw': corpus.bible 'e' \(German\) is not in .*Swahili.*\['h'\]"):
        load_languages(languages("  sw: {name: Swahili, corpus: {bible: [e]}}\n"))
