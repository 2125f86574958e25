"""Bilingual dictionaries: the MUSE and Ding formats, coverage, and a stable held-out split.

Supervised cross-lingual alignment (Mikolov et al., 2013; Conneau et al., 2018, MUSE)
needs word pairs; bilingual lexicon induction (BLI) is scored on pairs never used for the
alignment. The held-out split here is a stable hash of the query word, so the *same* 10%
of the Ding pairs is held out whichever dictionary (Ding, eflomal-induced, both) aligned
the vectors.

Formats:

- MUSE: ``source target`` per line (whitespace separated), UTF-8.
- Ding (Debian ``trans-de-en``, ``/usr/share/trans/de-en``): ``German :: English``; each
  side has segments separated by `` | `` aligned by position (headword, plural, ...),
  synonyms in a segment separated by ``;``; annotations ``{f}``, ``[Br.]``, ``(etwas)``
  are stripped. English verbs are written ``to go``: the ``to`` is dropped. Only
  single-word terms are kept. Pairs come out as (German, English).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from transfer.errors import DictionaryError

Pair = tuple[str, str]
DING_DE_EN = Path("/usr/share/trans/de-en")
_ANNOTATION = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]|\([^()]*\)")
_SINGLE_WORD = re.compile(r"^\w+(?:['’\-]\w+)*$")


@dataclass
class Dictionary:
    """Word pairs (source, target) in file order, de-duplicated, with a report."""

    pairs: list[Pair]
    path: str = ""
    format: str = ""
    report: dict[str, int] = field(default_factory=dict)

    def reversed(self) -> Dictionary:
        return Dictionary([(t, s) for s, t in self.pairs], self.path, self.format, dict(self.report))

    def __len__(self) -> int:
        return len(self.pairs)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DictionaryError(f"{path}: no such dictionary file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DictionaryError(f"{path}: not UTF-8 text ({exc}); convert it with iconv first") from exc


def _dedupe(pairs: Iterable[Pair]) -> list[Pair]:
    return list(dict.fromkeys(pairs))


def parse_muse(text: str, path: Path) -> Dictionary:
    pairs: list[Pair] = []
    lines = skipped = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        lines += 1
        if len(parts) != 2:
            raise DictionaryError(f"{path}: line {lineno} is not `source target` (MUSE format): {line[:80]!r}")
        pairs.append((parts[0], parts[1]))
    unique = _dedupe(pairs)
    return Dictionary(unique, str(path), "muse", {"lines": lines, "pairs": len(unique), "skipped": skipped})


def _clean_term(term: str) -> str:
    previous = None
    while previous != term:  # nested annotations: strip inner ones first
        previous = term
        term = _ANNOTATION.sub(" ", term)
    return " ".join(term.split())


def _single_words(segment: str, *, english: bool) -> list[str]:
    words = []
    for term in segment.split(";"):
        term = _clean_term(term)
        if english and term.startswith("to ") and term.count(" ") == 1:
            term = term[3:]
        if term and _SINGLE_WORD.match(term):
            words.append(term)
    return words


def parse_ding(text: str, path: Path) -> Dictionary:
    pairs: list[Pair] = []
    entries = bad = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if " :: " not in line:
            bad += 1
            if bad > 10 and bad > entries:
                raise DictionaryError(f"{path}: line {lineno} has no ` :: `; not the Ding format")
            continue
        entries += 1
        german, english = line.split(" :: ", 1)
        de_segments, en_segments = german.split(" | "), english.split(" | ")
        for de_seg, en_seg in zip(de_segments, en_segments):
            de_words = _single_words(de_seg, english=False)
            en_words = _single_words(en_seg, english=True)
            pairs.extend((d, e) for d in de_words for e in en_words)
    if entries == 0:
        raise DictionaryError(f"{path}: no `German :: English` lines; not the Ding format")
    unique = _dedupe(pairs)
    return Dictionary(unique, str(path), "ding",
                      {"entries": entries, "malformed_lines": bad, "single_word_pairs": len(unique)})


def detect_format(text: str, path: Path) -> Literal["muse", "ding"]:
    lines = [ln for ln in text.splitlines()[:200] if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise DictionaryError(f"{path}: empty dictionary")
    if sum(" :: " in ln for ln in lines) > len(lines) // 2:
        return "ding"
    if all(len(ln.split()) == 2 for ln in lines):
        return "muse"
    raise DictionaryError(f"{path}: unknown dictionary format (neither `German :: English` "
                          f"lines of Ding nor `source target` lines of MUSE)")


def load_dictionary(path: Path | str, format: Literal["auto", "muse", "ding"] = "auto", *,
                    lowercase: bool = False) -> Dictionary:
    """Read a MUSE or Ding dictionary (``format="auto"`` sniffs it). Ding gives
    (German, English); use :meth:`Dictionary.reversed` for (English, German)."""
    path = Path(path)
    text = _read_text(path)
    if format == "auto":
        format = detect_format(text, path)
    if format == "muse":
        result = parse_muse(text, path)
    elif format == "ding":
        result = parse_ding(text, path)
    else:
        raise DictionaryError(f"{path}: unknown dictionary format {format!r}; use 'muse' or 'ding'")
    if lowercase:
        result.pairs = _dedupe((s.lower(), t.lower()) for s, t in result.pairs)
        result.report["lowercased_pairs"] = len(result.pairs)
    return result


def coverage(pairs: Sequence[Pair], source_words: Iterable[str] | object, target_words: Iterable[str] | object) -> dict[str, int]:
    """How many pairs each side's vocabulary covers, and both (``x in words`` lookups)."""
    src = source_words if hasattr(source_words, "__contains__") else set(source_words)
    tgt = target_words if hasattr(target_words, "__contains__") else set(target_words)
    s = sum(a in src for a, _ in pairs)
    t = sum(b in tgt for _, b in pairs)
    both = sum(a in src and b in tgt for a, b in pairs)
    return {"pairs": len(pairs), "source_covered": s, "target_covered": t, "both_covered": both}


def _test_hash(word: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\0{word}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class HeldOutSplit:
    """Train and test pairs; ``test_words`` are the test pairs' words on both sides."""

    train: list[Pair]
    test: list[Pair]
    test_source_words: set[str]
    test_target_words: set[str]

    def excludes(self, pairs: Iterable[Pair]) -> list[Pair]:
        """``pairs`` without any pair that touches a held-out word (so no dictionary used
        for alignment, induced or not, sees a test word)."""
        return [(s, t) for s, t in pairs if s not in self.test_source_words and t not in self.test_target_words]


def held_out_split(pairs: Sequence[Pair], test_fraction: float = 0.1, *, salt: str = "bli-test") -> HeldOutSplit:
    """Stable split by a hash of the query (source) word: all translations of a test word
    are test pairs. Train pairs also lose every pair sharing a word with a test pair."""
    if not 0 < test_fraction < 1:
        raise DictionaryError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    test = [p for p in pairs if _test_hash(p[0], salt) < test_fraction]
    split = HeldOutSplit([], test, {s for s, _ in test}, {t for _, t in test})
    split.train = split.excludes(pairs)
    return split
