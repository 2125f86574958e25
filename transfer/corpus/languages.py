"""Several target languages in one run (OFA's "one for all"; issue #29).

``target_language`` may be a list: the config joins the canonical tags with ``_``
(``["sw", "id"]`` -> ``"sw_id"``), the one tag every folder, Prefect and registry name
uses, and ``cfg.target_languages`` gives the list back. Each language has its own corpus:

- ``target_bible`` not given: every packaged translation of each language that has no files
  of its own; given: each code belongs to the language it is written in
  (``bible_languages.BIBLE_LANGUAGES``); a code in none of the run's languages is refused;
- ``target_files`` and ``parallel_files`` entries name their language, ``lang=path``
  (``sw=cc100.sw.txt``); the config keeps the paths and records the languages in
  ``target_file_languages`` / ``parallel_file_languages``.

A run of one language keeps every field, key and name it had before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer.corpus.bible_languages import (
    BIBLE_LANGUAGES,
    bibles_of,
    default_target_bible,
    primary_language,
)
from transfer.settings.names import canonical_language_tag, check_language_tag

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig

JOIN = "_"  # the config's LANGUAGE_JOIN (this module does not import the config)


def joined_languages(codes: Sequence[str]) -> str:
    """The run's one tag for ``codes``: each checked and canonical, joined by ``_``; a language
    listed twice (in any spelling of its tag) is refused, naming it."""
    tags = [canonical_language_tag(check_language_tag(code, "target_language")) for code in codes]
    if not tags:
        raise ValueError("target_language: give at least one language")
    for i, tag in enumerate(tags):
        if tag in tags[:i]:
            raise ValueError(f"target_language {tag!r} is listed twice in {list(codes)}: give each language once")
    return JOIN.join(tags)


def _split_entries(entries: list[str], languages: list[str], field: str) -> tuple[list[str], list[str]]:
    """``lang=path`` entries -> (paths, languages), refusing an entry without one of ``languages``."""
    paths, langs = [], []
    for entry in entries:
        prefix, sep, rest = str(entry).partition("=")
        tag = canonical_language_tag(prefix) if sep else ""
        if tag not in languages or not rest:
            raise ValueError(f"{field} entry {str(entry)!r}: a run of several target languages {languages} needs "
                             f"each entry as 'lang=path' with lang one of them (e.g. '{languages[0]}={entry}')")
        paths.append(rest)
        langs.append(tag)
    return paths, langs


def split_language_entries(data: dict[str, Any]) -> dict[str, Any]:
    """A config's raw input with a list ``target_language`` joined (one element: that one)
    and, for several languages, its ``lang=path`` entries split into paths and languages."""
    language = data.get("target_language")
    if isinstance(language, (list, tuple)):
        data = {**data, "target_language": language[0] if len(language) == 1 else joined_languages(language)}
        language = data["target_language"]
    if isinstance(language, str) and JOIN not in language:
        return _strip_own_language(data, language)
    if not isinstance(language, str):
        return data
    languages = joined_languages(language.split(JOIN)).split(JOIN)
    for field, languages_field in (("target_files", "target_file_languages"),
                                   ("parallel_files", "parallel_file_languages")):
        entries = list(data.get(field) or [])
        if entries and not data.get(languages_field):
            paths, langs = _split_entries(entries, languages, field)
            data = {**data, field: paths, languages_field: langs}
    return data


def _strip_own_language(data: dict[str, Any], language: str) -> dict[str, Any]:
    """A run of one language given its files as ``lang=path`` (as a several-language run takes
    them): the run's own language is dropped from the entry, so the path is read; a file whose
    name holds a '=' and exists stays as it is."""
    for field in ("target_files", "parallel_files"):
        entries = list(data.get(field) or [])
        kept = []
        for entry in entries:
            prefix, sep, rest = str(entry).partition("=")
            own = (sep and rest and not Path(str(entry)).exists()
                   and canonical_language_tag(prefix) == canonical_language_tag(language))
            kept.append(rest if own else entry)
        if entries and kept != entries:
            data = {**data, field: kept}
    return data


def default_bibles(language: str, files: list[str] | None, file_languages: list[str] | None) -> list[str]:
    """``target_bible`` when not given: one language's rule (``default_target_bible``), or, for
    several, every packaged translation of each language that has no files of its own."""
    if JOIN not in language:
        return default_target_bible(language, files)
    with_files = set(file_languages or [])
    return [code for lang in language.split(JOIN) if lang not in with_files for code in bibles_of(lang)]


def check_entry_languages(cfg: AdaptConfig) -> None:
    """Every file of a run of several languages has one of them; a run of one has none."""
    languages = cfg.target_languages
    for field, entries, langs in (("target_files", cfg.target_files, cfg.target_file_languages),
                                  ("parallel_files", cfg.parallel_files, cfg.parallel_file_languages)):
        if not cfg.several_languages:
            if langs:
                raise ValueError(f"{field[:-1]}_languages is for a run of several target languages only")
            continue
        if len(langs) != len(entries) or any(lang not in languages for lang in langs):
            raise ValueError(f"{field}: each entry of a run of several target languages {languages} names its "
                             f"language as 'lang=path'")


@dataclass(frozen=True)
class LanguageCorpus:
    """One target language's own corpus in a run of several."""

    language: str
    bible: list[str]
    files: list[str]
    parallel: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "bible": self.bible, "files": self.files, "parallel": self.parallel}


def bible_language(code: str, languages: Sequence[str]) -> str | None:
    """Which of ``languages`` a packaged translation is written in (None: none of them)."""
    written = BIBLE_LANGUAGES.get(code)
    return next((lang for lang in languages if primary_language(lang) == written), None)


def language_corpora(cfg: AdaptConfig) -> list[LanguageCorpus]:
    """Each target language's Bibles, files and parallel files, in the order listed."""
    languages = cfg.target_languages
    if not cfg.several_languages:
        return [LanguageCorpus(languages[0], list(cfg.target_bible), list(cfg.target_files), list(cfg.parallel_files))]
    return [LanguageCorpus(
        lang,
        [code for code in cfg.target_bible if bible_language(code, languages) == lang],
        [path for path, owner in zip(cfg.target_files, cfg.target_file_languages) if owner == lang],
        [entry for entry, owner in zip(cfg.parallel_files, cfg.parallel_file_languages) if owner == lang],
    ) for lang in languages]


def parallel_language(cfg: AdaptConfig, index: int) -> str:
    """The target language of ``cfg.parallel_files[index]`` (its Moses suffix and JSONL field)."""
    return cfg.parallel_file_languages[index] if cfg.several_languages else cfg.target_language


def stray_bibles(cfg: AdaptConfig) -> list[str]:
    """``target_bible`` codes written in none of a run's several languages."""
    if not cfg.several_languages:
        return []
    return [code for code in cfg.target_bible if bible_language(code, cfg.target_languages) is None]


def several_languages_problem(cfg: AdaptConfig) -> str | None:
    """Why the corpora of a run of several languages cannot be used, naming the language:
    a Bible in none of them, or a language without any corpus. None: each has its own."""
    from transfer.corpus.bible_languages import (
        LANGUAGE_NAMES,
        describe_language,
        target_corpus_problem,
    )

    stray = stray_bibles(cfg)
    if stray:
        described = ", ".join(f"{c!r} ({LANGUAGE_NAMES.get(BIBLE_LANGUAGES.get(c, ''), 'unknown language')})"
                              for c in stray)
        return (f"target_bible {described}: in none of the run's target languages {cfg.target_languages}; give "
                f"each language its own Bibles (or leave target_bible out: every packaged Bible of each language)")
    for corpus in language_corpora(cfg):
        problem = target_corpus_problem(corpus.bible, corpus.files, corpus.language,
                                        files_field=f"target_files entries '{corpus.language}=path'")
        if problem:
            return f"target language {describe_language(corpus.language)} of {cfg.target_languages}: {problem}"
    return None


#: a language with less than this share of a run's target text is warned about
SMALL_SHARE = 0.01


def corpus_bytes(corpus: LanguageCorpus, fractions: tuple[float, float] | None = None) -> int:
    """About how many bytes of text a language's corpus holds, before any stage: its Bibles'
    verses (read from the database, cached) and its files' sizes on disk (compressed files
    count as stored: an estimate for the share warning, not the stage's count)."""
    import os

    from transfer.corpus.bible import read_verses
    from transfer.corpus.readers import corpus_files

    total = sum(len(v.text.encode()) + 1 for code in corpus.bible for v in read_verses(code))
    for path in corpus.files:
        total += sum(os.path.getsize(f) for f in corpus_files(path))
    return total


def small_language_warnings(cfg: AdaptConfig) -> list[str]:
    """A language with under 1% of a run's target text (before sampling), with its share."""
    if not cfg.several_languages:
        return []
    sizes = {corpus.language: corpus_bytes(corpus) for corpus in language_corpora(cfg)}
    total = sum(sizes.values()) or 1
    return [(f"target language {lang!r} has {n / total:.2%} of the run's target text ({n} of {total} bytes): "
             f"sampling with alpha={cfg.language_sampling_alpha} repeats it to about "
             f"{_share(sizes, lang, cfg.language_sampling_alpha):.1%} of the training text, its few distinct texts "
             f"seen many times; give it more text, or leave it out")
            for lang, n in sizes.items() if n / total < SMALL_SHARE]


def _share(sizes: dict[str, int], lang: str, alpha: float) -> float:
    from transfer.corpus.many_languages import sampling_shares

    return sampling_shares(sizes, alpha)[lang]
