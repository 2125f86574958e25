"""Warnings about well-formed but suspicious input that need no language model (issue #31
and #30): a corpus in decomposed or mixed Unicode forms is noted before the first stage,
and an evaluation file that overlaps the training corpus is warned with its share."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from tests.helpers import config
from tests.tiny import GERMAN_SENTENCES
from transfer.settings.input_warnings import input_warnings

UMLAUTS = [f"{s} Über die Brücke gehen Mädchen ({i})." for i in range(8) for s in GERMAN_SENTENCES]


def _checks(cfg) -> dict[str, str]:
    return {w.check: w.message for w in input_warnings(cfg)}


def test_a_decomposed_corpus_is_noted(tmp_path: Path, tiny_source: Path) -> None:
    nfd = tmp_path / "nfd.txt"
    nfd.write_text("\n".join(unicodedata.normalize("NFD", s) for s in UMLAUTS) + "\n")
    nfc = tmp_path / "nfc.txt"
    nfc.write_text("\n".join(UMLAUTS) + "\n")
    assert "mostly decomposed" in _checks(config(tmp_path, tiny_source, nfd))["normalization"]
    assert "normalization" not in _checks(config(tmp_path, tiny_source, nfc))


def test_an_evaluation_file_from_the_training_corpus_is_warned(tmp_path: Path, tiny_source: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(UMLAUTS) + "\n")
    seen = tmp_path / "seen.txt"
    seen.write_text("\n".join(UMLAUTS[:3] + ["Ein ganz neuer Satz, den das Korpus nicht hat."]) + "\n")
    fresh = tmp_path / "fresh.txt"
    fresh.write_text("Ein ganz neuer Satz, den das Korpus nicht hat.\n")
    warned = _checks(config(tmp_path, tiny_source, corpus, eval_files=[str(seen), str(fresh)]))
    assert "'seen'" in warned["eval_overlap"] and "75% of its sampled texts" in warned["eval_overlap"]
    assert "'fresh'" not in warned["eval_overlap"]
