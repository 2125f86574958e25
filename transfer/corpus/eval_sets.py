"""Evaluation sets beyond the held-out split: the user's own files, each scored apart.

A run scores the held-out split of its training corpus; a user who adapts for one domain
also wants text of that domain scored (and text of another, to see what the adaptation
costs). ``eval_files`` entries are ``path`` or ``name=path``; each becomes a set with a
name (the file's stem, made safe, unless given), read by the corpus stage into
``evalset.<name>.txt`` (normalized like every other text, at most ``MAX_EVAL_TEXTS``), and
scored at step 0 and after training, with the source model on its own tokenizer as the
line to beat. Their evaluations are labelled ``<model>_on_eval_<name>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from transfer.corpus.splits import SplitFractions

#: the models scored on every set, by the key their label starts with
SET_MODELS = ("source_model", "adapted_step0", "adapted_trained")
_LABEL = re.compile(r"^(source_model|adapted_step0|adapted_trained)_on_eval_(.+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class EvalSet:
    """One evaluation file and the name its scores go under."""

    name: str
    path: str


def _name_from(path: str) -> str:
    stem = Path(path).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:64] or "set"


def parse_eval_files(entries: list[str]) -> list[EvalSet]:
    """The sets of ``eval_files`` (``path`` or ``name=path``); ValueError for a bad or
    repeated name."""
    sets = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or "/" in name or not name:
            name, path = _name_from(entry), entry
        if not _NAME.fullmatch(name):
            raise ValueError(f"eval_files: set name {name!r} must be letters, digits, '_' or '-' (at most 64)")
        sets.append(EvalSet(name, path))
    names = [s.name for s in sets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"eval_files: the set names {repeated} are given twice; name them with name=path")
    return sets


def eval_set_file(name: str) -> str:
    """The corpus stage's file of a set's texts."""
    return f"evalset.{name}.txt"


def eval_set_label(model: str, name: str) -> str:
    """The evaluation label of ``model`` (one of :data:`SET_MODELS`) on set ``name``."""
    return f"{model}_on_eval_{name}"


def parse_eval_set_label(label: str) -> tuple[str, str] | None:
    """(model, set name) of an evaluation set's label, else None."""
    match = _LABEL.match(label)
    return (match.group(1), match.group(2)) if match else None


#: texts of an evaluation file compared, and corpus documents read per target file, for the
#: overlap warning: a sample, so the check costs well under a second at any corpus size
OVERLAP_EVAL_TEXTS = 2_000
OVERLAP_CORPUS_DOCS = 200_000


def overlap_share(eval_texts: list[str], corpus_docs: list[str]) -> float:
    """The share of ``eval_texts`` that also stand in ``corpus_docs`` (whitespace folded):
    held-out numbers on text the model trained on mislead."""
    if not eval_texts:
        return 0.0
    seen = {" ".join(doc.split()) for doc in corpus_docs}
    return sum(" ".join(text.split()) in seen for text in eval_texts) / len(eval_texts)


def overlap_warnings(eval_files: list[str], target_files: list[str], text_field: str, boundary: str,
                     bibles: list[str] | None = None, fractions: SplitFractions | None = None) -> list[str]:
    """A sentence per evaluation set whose sampled texts stand in the target corpus: its
    files, and the train split (by ``fractions``) of its packaged Bible translations
    ``bibles`` (an evaluation file of Bible verses the run trains on)."""
    from itertools import islice

    from transfer.corpus.bible import read_texts
    from transfer.corpus.readers import iter_documents
    from transfer.evaluate.texts import read_eval_texts

    if not eval_files or not (target_files or bibles):
        return []
    corpus = [doc for path in target_files
              for doc in islice(iter_documents(path, text_field, boundary), OVERLAP_CORPUS_DOCS)]
    for code in bibles or []:
        corpus += read_texts(code, "train", fractions=fractions or SplitFractions())
    found = []
    for eval_set in parse_eval_files(eval_files):
        texts = read_eval_texts(eval_set.path, max_texts=OVERLAP_EVAL_TEXTS).texts
        share = overlap_share(texts, corpus)
        if share > 0:
            found.append(f"evaluation set {eval_set.name!r} ({eval_set.path}): {share:.0%} of its sampled texts "
                         "are in the target corpus, so the model trains on them; scores on seen text mislead")
    return found
