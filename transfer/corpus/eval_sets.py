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
