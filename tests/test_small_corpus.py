"""A target corpus too small to split is refused before any stage, saying what it splits into."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer.errors import CorpusError
from transfer.pipeline import run_adaptation
from transfer.settings.config import AdaptConfig


def test_a_two_line_corpus_is_refused_before_any_stage(tmp_path: Path, tiny_source: Path) -> None:
    corpus = tmp_path / "sw.csv"  # a suffix no test used: read as plain text, a document a line
    corpus.write_text("Habari ya asubuhi.\nNinapenda kusoma vitabu.\n", encoding="utf-8")
    cfg = AdaptConfig(source_model=str(tiny_source), target_language="sw", target_bible=[],
                      source_bible=[], target_files=[str(corpus)], strategy="mean",
                      cache_dir=tmp_path / "cache", output_dir=tmp_path / "models", register_model=False)
    with pytest.raises(CorpusError, match=r"2 documents split into train 2, dev 0, test 0 .* dev and test would be empty"):
        run_adaptation(cfg)
    # refused before the corpus stage started: no stage folder, no model
    assert not (tmp_path / "cache" / "corpus").exists()
    assert not (tmp_path / "models").exists()
