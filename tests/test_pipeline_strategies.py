"""Strategies that need more than embeddings run through the pipeline with their data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import config
from transfer.errors import CorpusError
from transfer.init import needs
from transfer.pipeline import run_adaptation


def _run_as_planned(cfg):
    """Run ``cfg`` and check that the dry-run plan named exactly its stages and keys."""
    from transfer.planning.plan import plan_adaptation

    planned = {s.label: s.key for s in plan_adaptation(cfg, measure=False).stages}
    result = run_adaptation(cfg)
    assert set(planned) == set(result.stages_cached)
    for name, key in result.stage_keys.items():
        label = ("train" if "train" in planned else "init") if name == "final" else name
        assert planned[label] == key, name
    return result


def test_data_hungry_strategies_declare_their_data() -> None:
    assert {name: needs(name) for name in ("trans_tokenization", "focus", "wechsel", "ofa")} == {
        "trans_tokenization": {"parallel"}, "focus": {"target_corpus"},
        "wechsel": {"vectors"}, "ofa": {"vectors"}}


def test_focus_gets_the_target_train_text(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    # only whole-model steps: still a train stage
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="focus", train_steps=0, full_steps=1,
                  strategy_params={"fasttext_min_count": 1, "fasttext_dim": 16, "fasttext_epochs": 2})
    result = _run_as_planned(cfg)
    assert "train" in result.stages_cached
    counts = result.init_report["counts"]
    # measured (fixed seeds, one fastText thread): FOCUS copies the shared tokens and combines
    # the rest from them; tokens without a fastText vector fall back
    assert counts == {"special": 3, "byte": 256, "copied": 16, "computed": 44, "fallback": 34}, counts


def test_trans_tokenization_gets_train_verse_pairs(tmp_path: Path, tiny_source: Path) -> None:
    cfg = config(tmp_path, tiny_source, tiny_source, target_files=[], target_bible=["e"],
                  source_train_bible=["k"], parallel_max_pairs=300, train_steps=0, vocab_size=400)
    result = run_adaptation(cfg)
    counts = result.init_report["counts"]
    # every learned token was aligned in the verse pairs
    assert counts == {"special": 3, "byte": 256, "computed": 144}, counts
    assert result.stages_cached["init"] is False


def test_wechsel_trains_and_aligns_vectors(tmp_path: Path, tiny_source: Path) -> None:
    cfg = config(tmp_path, tiny_source, tiny_source, target_files=[], target_bible=["e"],
                  source_train_bible=["k"], vector_max_verses=1500, vector_dim=16, vector_epochs=2,
                  dictionary="ding", strategy="wechsel", train_steps=0, vocab_size=400)
    result = _run_as_planned(cfg)
    cached = result.stages_cached
    assert {"fasttext.source", "fasttext.target", "align"} <= set(cached)
    assert result.init_report["counts"] == {"special": 3, "byte": 256, "computed": 112, "fallback": 32}, \
        result.init_report


def test_parallel_strategy_without_bible_is_refused(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization")
    with pytest.raises(CorpusError, match="parallel corpus"):
        run_adaptation(cfg)


def test_ofa_exports_a_plain_model(tmp_path: Path, tiny_source: Path) -> None:
    cfg = config(tmp_path, tiny_source, tiny_source, target_files=[], target_bible=["e"],
                  source_train_bible=["k"], vector_max_verses=1500, vector_dim=16, vector_epochs=2,
                  dictionary="ding", strategy="ofa", strategy_params={"rank": 8}, train_steps=1,
                  vocab_size=400)
    result = run_adaptation(cfg)
    assert result.init_report["counts"] == {"special": 3, "byte": 256, "copied": 47, "computed": 92,
                                            "fallback": 5}, result.init_report
    assert set(result.scores) >= {"adapted_step0", "adapted_trained"}
