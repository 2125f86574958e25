"""Warnings about input that is valid but suspicious, given before any stage starts.

Validation (``transfer.settings.validate``) refuses what cannot work; these checks flag
what would run but probably not as meant, from a sample of the target corpus files (the
Bible texts are known to be what their codes say):

- **script**: the letters of the text are mostly in a script the target language is not
  written in (Latin text for ``ru``), by each letter's Unicode name; languages missing
  from the table (and a BCP 47 tag's script subtag, ``sr-Latn``) decide the expected
  scripts; an unknown language is never warned about.
- **word vectors without spaces**: a strategy that trains its own word vectors (WECHSEL,
  OFA) for a language written without spaces between words (Chinese, Japanese, Thai, ...):
  fastText's words would be whole clauses. Pretrained target vectors (``target_vectors``,
  trained on segmented text) lift it; ``combined``, ``fvt`` and FOCUS need no words.
- **another language's Bible**: ``target_bible`` codes of another language for a target
  language the packaged Bible lacks (a language that has its own is refused by validation).
- **language**: a target corpus file, an evaluation file, a side of a parallel corpus or
  of a dictionary file mostly not in its declared language, by a language identifier on a
  sample (``transfer.settings.language_id``; a parallel corpus whose sides look swapped is
  refused by validation); a language the identifier does not know is noted as not checked.
- **repetition and size**: a corpus that is mostly repeats of the same documents, and a
  corpus too small for the vocabulary asked. What a corpus can support is measured with
  the tokenizer algorithm itself: a byte-level BPE trained on its distinct documents,
  keeping merges seen at least twice (the builders' ``min_frequency``), stops at the
  number of tokens the text can justify; tokens beyond it would be seen once or never.
  Only a corpus read whole within the sample is judged (a larger one supports more).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig

#: Characters of the target corpus the checks read (a few tenths of a second of BPE).
SAMPLE_CHARS = 1 << 19
#: Below this share of letters in the language's scripts, the corpus is flagged.
SCRIPT_SHARE = 0.5
#: At least this many letters before the script is judged.
MIN_LETTERS = 200
#: A corpus whose distinct documents are fewer than this share of all is flagged.
DISTINCT_SHARE = 0.5
#: A corpus supporting fewer than this share of vocab_size is flagged.
VOCAB_SHARE = 0.9

_LATIN = ("Latin",)
#: Scripts each language is written in (ISO 639 code -> script names as in Unicode).
LANGUAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    **{code: _LATIN for code in (
        "af", "az", "bs", "ca", "cs", "cy", "da", "de", "en", "eo", "es", "et", "eu", "fi", "fil",
        "fr", "ga", "gl", "ha", "hr", "ht", "hu", "id", "ig", "is", "it", "la", "lb", "lt", "lv",
        "mg", "ms", "mt", "nb", "nl", "nn", "no", "ny", "om", "pl", "pt", "ro", "rw", "sk", "sl",
        "sn", "so", "sq", "st", "sv", "sw", "tl", "tn", "tr", "ts", "uz", "vi", "xh", "yo", "zu")},
    **{code: ("Cyrillic",) for code in ("be", "bg", "kk", "ky", "mk", "mn", "ru", "tg", "tt", "uk")},
    "sr": ("Cyrillic", "Latin"),
    **{code: ("Arabic",) for code in ("ar", "ckb", "fa", "ps", "sd", "ug", "ur")},
    **{code: ("Hebrew",) for code in ("he", "yi")},
    **{code: ("Devanagari",) for code in ("hi", "mr", "ne", "sa")},
    **{code: ("Bengali",) for code in ("as", "bn")},
    **{code: ("Ethiopic",) for code in ("am", "ti")},
    "el": ("Greek",), "pa": ("Gurmukhi",), "gu": ("Gujarati",), "or": ("Oriya",),
    "ta": ("Tamil",), "te": ("Telugu",), "kn": ("Kannada",), "ml": ("Malayalam",),
    "si": ("Sinhala",), "th": ("Thai",), "lo": ("Lao",), "km": ("Khmer",), "my": ("Myanmar",),
    "bo": ("Tibetan",), "ka": ("Georgian",), "hy": ("Armenian",), "dv": ("Thaana",),
    "zh": ("Han",), "ja": ("Han", "Kana"), "ko": ("Hangul", "Han"),
}
#: ISO 15924 script subtags of a language tag (``sr-Latn``) -> script names.
SCRIPT_SUBTAGS: dict[str, tuple[str, ...]] = {
    "latn": _LATIN, "cyrl": ("Cyrillic",), "arab": ("Arabic",), "grek": ("Greek",),
    "hebr": ("Hebrew",), "deva": ("Devanagari",), "hans": ("Han",), "hant": ("Han",),
    "jpan": ("Han", "Kana"), "kore": ("Hangul", "Han"), "hang": ("Hangul",), "ethi": ("Ethiopic",),
    "geor": ("Georgian",), "armn": ("Armenian",), "thai": ("Thai",), "beng": ("Bengali",),
}
# the first word of a letter's Unicode name that is not the script's name
_NAME_SCRIPTS = {"CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana", "HANGUL": "Hangul"}


#: checks that say what was not done rather than what looks wrong: "note:" in the run notes
NOTE_CHECKS = frozenset({"language_not_checked", "helper_width", "helper_objective", "mixed_scripts"})


@dataclass(frozen=True)
class InputWarning:
    """One suspicious input: which check, and what to tell the user."""

    check: str  # "script" | "unspaced" | "borrowed_bible" | "repetition" | "vocab_size" | "normalization" | "eval_overlap"
    # | "parallel_alignment" (transfer.corpus.parallel_alignment) | "source_tokenizer" (transfer.source.tokenizer_fit)
    # language identification (transfer.settings.language_id): "language" (a target corpus file),
    # "eval_language", "parallel_language", "dictionary_language", "vectors_language", "language_not_checked"
    message: str


def expected_scripts(language: str) -> tuple[str, ...] | None:
    """The scripts a language tag is written in, or None when the table does not know it."""
    parts = language.replace("_", "-").split("-")
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha() and part.lower() in SCRIPT_SUBTAGS:
            return SCRIPT_SUBTAGS[part.lower()]
    return LANGUAGE_SCRIPTS.get(parts[0].lower())


def letter_script(char: str) -> str | None:
    """The script of a letter, from its Unicode name (``CYRILLIC SMALL LETTER A``)."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    if not name:
        return None
    first = name.split(" ", 1)[0]
    return _NAME_SCRIPTS.get(first, first.title())


def script_counts(texts: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        for char in text:
            script = letter_script(char)
            if script is not None:
                counts[script] += 1
    return counts


def _sample(cfg: AdaptConfig) -> tuple[list[str], bool]:
    """The first documents of the target files, up to ``SAMPLE_CHARS``; the bool says
    whether they are the whole corpus."""
    from transfer.corpus.readers import iter_documents

    def documents() -> Iterator[str]:
        for entry in cfg.target_files:
            yield from iter_documents(entry, cfg.text_field, cfg.document_boundary)

    texts, total = [], 0
    for text in documents():
        if total >= SAMPLE_CHARS:
            return texts, False
        texts.append(text)
        total += len(text)
    return texts, True


def script_warning(language: str, texts: list[str]) -> InputWarning | None:
    expected = expected_scripts(language)
    counts = script_counts(texts)
    letters = sum(counts.values())
    if expected is None or letters < MIN_LETTERS:
        return None
    share = sum(counts[s] for s in expected) / letters
    if share >= SCRIPT_SHARE:
        return None
    top, top_count = counts.most_common(1)[0]
    return InputWarning("script", (
        f"target corpus: only {share:.0%} of its {letters} sampled letters are {' or '.join(expected)}, "
        f"the script of target_language {language!r}; {top_count / letters:.0%} are {top}. Is it the "
        f"right file, or the right target_language?"))


#: Scripts written without spaces between words.
UNSPACED_SCRIPTS = frozenset({"Han", "Kana", "Thai", "Lao", "Khmer", "Myanmar", "Tibetan"})


def unspaced_vectors_warning(cfg: AdaptConfig) -> InputWarning | None:
    """A strategy that trains word vectors on the target text, for an unspaced language."""
    from transfer.errors import UnknownStrategyError
    from transfer.init.registry import needs

    try:
        kinds = needs(cfg.strategy)
    except UnknownStrategyError:  # 'auto' before it is resolved; validation refuses others
        return None
    scripts = expected_scripts(cfg.target_language)
    if "vectors" not in kinds or cfg.target_vectors or not scripts or not set(scripts) <= UNSPACED_SCRIPTS:
        return None
    return InputWarning("unspaced", (
        f"target_language {cfg.target_language!r} is written without spaces between words, and strategy "
        f"{cfg.strategy!r} trains fastText word vectors on the target text: its 'words' would be whole "
        f"clauses and its matches poor. Give pretrained target_vectors (trained on segmented text), "
        f"segment the corpus first, or use 'combined', 'fvt' or 'focus', which need no words"))


def supported_vocab_size(texts: list[str], vocab_size: int) -> int:
    """Tokens a byte-level BPE learns from ``texts`` keeping merges seen at least twice
    (256 byte tokens plus the merges), trained up to ``vocab_size``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer.get_vocab_size()


def size_warnings(vocab_size: int, texts: list[str]) -> list[InputWarning]:
    """Repeated documents, and a vocabulary larger than the distinct text supports."""
    out = []
    documents = [t for t in texts if t.strip()]
    distinct = list(dict.fromkeys(documents))
    if documents and len(distinct) < DISTINCT_SHARE * len(documents):
        out.append(InputWarning("repetition", (
            f"target corpus: {len(documents) - len(distinct)} of its {len(documents)} documents repeat "
            f"another ({len(distinct)} distinct): the model would train on the same text again and "
            f"again, and its dev/test texts may repeat training texts")))
    if distinct:
        supported = supported_vocab_size(distinct, vocab_size)
        if supported < VOCAB_SHARE * vocab_size:
            chars = sum(len(t) for t in distinct)
            out.append(InputWarning("vocab_size", (
                f"target corpus: its {len(distinct)} distinct documents ({chars} characters) support "
                f"about {supported} tokens (a byte-level BPE keeping merges seen at least twice stops "
                f"there), fewer than vocab_size={vocab_size}: the other tokens would be seen once or "
                f"never. Use vocab_size={supported} or less, or more text")))
    return out


def mixed_scripts_note(cfg: AdaptConfig) -> InputWarning | None:
    """A run of several languages written in more than one script: fine (one tokenizer for
    all), said once; the tokenizer stage's ``fertility.json`` gives fertility per script."""
    by_script: dict[str, list[str]] = {}
    for lang in cfg.target_languages:
        scripts = expected_scripts(lang)
        by_script.setdefault(scripts[0] if scripts else "unknown script", []).append(lang)
    if len(by_script) < 2:
        return None
    described = "; ".join(f"{script}: {', '.join(langs)}" for script, langs in by_script.items())
    return InputWarning("mixed_scripts", (
        f"the target languages are written in {len(by_script)} scripts ({described}): one tokenizer shares its "
        f"vocabulary among them; the tokenizer stage reports fertility per language and per script "
        f"(fertility.json, 'languages' and 'scripts')"))


def input_warnings(cfg: AdaptConfig) -> list[InputWarning]:
    """Every warning about this run's strategy for its language and its target corpus files;
    reads at most ``SAMPLE_CHARS`` of text. Call it after ``validate_config``."""
    from transfer.corpus.bible_languages import borrowed_bible_note

    unspaced = unspaced_vectors_warning(cfg) if not cfg.several_languages else None
    found = [unspaced] if unspaced is not None else []
    if cfg.several_languages:  # a language with under 1% of the text; scripts of the languages
        from transfer.corpus.languages import small_language_warnings

        found.extend(InputWarning("small_language", message) for message in small_language_warnings(cfg))
        scripts = mixed_scripts_note(cfg)
        if scripts is not None:
            found.append(scripts)
    borrowed = borrowed_bible_note(cfg.target_bible, cfg.target_language)
    if borrowed is not None:
        found.append(InputWarning("borrowed_bible", borrowed))
    from transfer.corpus.parallel_alignment import alignment_messages
    from transfer.settings.language_id import run_language_messages

    # parallel files whose lines do not look aligned (well-formed, in the right languages)
    found.extend(InputWarning("parallel_alignment", message) for message in alignment_messages(cfg))

    # each file's language from a sample (target, evaluation, parallel sides, dictionary)
    languages = [InputWarning(check, message) for check, message in run_language_messages(cfg)]
    from transfer.settings.helper_checks import helper_warnings
    from transfer.source.loading import resolve_source
    from transfer.source.tokenizer_fit import tokenizer_fit_warning

    source = resolve_source(cfg.source_model, cfg.source_revision)
    fit = tokenizer_fit_warning(source.location) if source.kind == "folder" else None
    if fit is not None:  # the folder's tokenizer ends text with an id its config does not know
        found.append(InputWarning("source_tokenizer", fit))

    # a given target tokenizer and the helper model
    found.extend(InputWarning(check, message) for check, message in helper_warnings(cfg))
    from transfer.corpus.eval_sets import overlap_warnings
    from transfer.corpus.splits import SplitFractions

    found.extend(InputWarning("eval_overlap", message) for message in overlap_warnings(
        cfg.eval_files, cfg.target_files, cfg.text_field, cfg.document_boundary, cfg.target_bible,
        SplitFractions(dev=cfg.dev_fraction, test=cfg.test_fraction)))
    if not cfg.target_files:
        return found + languages
    from transfer.corpus.normalization import normalization_note

    texts, whole = _sample(cfg)
    note = normalization_note(cfg.normalization, texts)
    if note is not None:
        found.append(InputWarning("normalization", note))
    # a run of several languages: its texts mix their scripts (each file's language is checked above)
    script = script_warning(cfg.target_language, texts) if not cfg.several_languages else None
    if script is not None:
        found.append(script)
        # text in another script is not the language either: said once, by the script check
        languages = [warning for warning in languages if warning.check != "language"]
    if whole and not cfg.target_bible:
        found.extend(size_warnings(cfg.vocab_size, texts))
    return found + languages


def run_notes(cfg: AdaptConfig) -> list[str]:
    """What a run says before it starts, wherever it runs (CLI, Prefect logs): which strategy
    ``auto`` chose and why, then each input warning. A file the warnings cannot read is left
    to validation, which refuses it with its own message."""
    from transfer.errors import VocabTransferError

    notes = [f"Strategy {cfg.strategy_choice}"] if cfg.strategy_choice else []
    try:
        notes += [f"{'note' if warning.check in NOTE_CHECKS else 'warning'}: {warning.message}"
                  for warning in input_warnings(cfg)]
    except VocabTransferError:
        pass
    return notes
