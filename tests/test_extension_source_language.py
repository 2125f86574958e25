"""An extended vocabulary keeps the source's tokens, so an extension run also scores the
adapted model on the source language (the same held-out verses in English), at step 0 and
after training: what the model still knows is the point of extending. A replacement run
does not (its source-language score is not what it is for)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import config
from transfer.corpus.stage import read_lines
from transfer.evaluate.bpb import bits_per_byte
from transfer.pipeline import run_adaptation
from transfer.publish.labels import (
    ADAPTED_STEP0_ON_SOURCE_LANGUAGE,
    ADAPTED_TRAINED_ON_SOURCE_LANGUAGE,
)
from transfer.publish.summary import RunSummary
from transfer.source.loading import load_source


def test_extension_scores_the_adapted_model_on_the_source_language(tmp_path: Path, tiny_source: Path) -> None:
    cfg = config(tmp_path, tiny_source, tmp_path, target_files=[], target_bible=["e"], source_bible=["k"],
                  vocab_mode="extend", added_tokens=40, strategy="fvt", train_steps=1, curve_texts=0)
    result = run_adaptation(cfg)
    assert {ADAPTED_STEP0_ON_SOURCE_LANGUAGE, ADAPTED_TRAINED_ON_SOURCE_LANGUAGE} <= set(result.scores)
    texts = read_lines(cfg.cache_dir / "corpus" / result.stage_keys["corpus"] / "test.source.txt", cfg.eval_texts)
    assert len(texts) == cfg.eval_texts
    init_dir = cfg.cache_dir / "init" / result.stage_keys["init"] / "model"
    # the stage's own bits_per_byte on the same weights: float32 logits, float64 sums, ~1e-7
    assert result.scores[ADAPTED_STEP0_ON_SOURCE_LANGUAGE] == pytest.approx(
        bits_per_byte(*load_source(str(init_dir)), texts).bpb, rel=1e-5)
    assert result.scores[ADAPTED_TRAINED_ON_SOURCE_LANGUAGE] == pytest.approx(
        bits_per_byte(*load_source(result.model_dir), texts).bpb, rel=1e-5)
    rows = {row.label: row for row in RunSummary.from_result(result).rows}
    assert rows[ADAPTED_TRAINED_ON_SOURCE_LANGUAGE].texts == "source language"
    assert rows[ADAPTED_TRAINED_ON_SOURCE_LANGUAGE].adapted

    # the plan walks the same stages as the run: a replacement plans no such evaluation
    from transfer.planning.plan import plan_adaptation

    planned = {s.label for s in plan_adaptation(cfg, measure=False).stages}
    assert {f"evaluate.{ADAPTED_STEP0_ON_SOURCE_LANGUAGE}", f"evaluate.{ADAPTED_TRAINED_ON_SOURCE_LANGUAGE}"} <= planned
    replaced = {s.label for s in plan_adaptation(cfg.model_copy(update={"vocab_mode": "replace"}),
                                                 measure=False).stages}
    assert not any("on_source_language" in label and "adapted" in label for label in replaced)
    assert "evaluate.source_model_on_source_language" in replaced
