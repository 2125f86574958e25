"""The size of the pipeline's opt-in task evaluations (issue #30): ``srb_verses`` (SR-B's
test verses, 500 by default) and ``lm_eval_limit`` (the harness's first N documents of each
task, all by default) reach their stages; the defaults keep the stages' parameters as
they were, and the other stages' keys never move."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(plan, stage: str) -> list[dict]:
    return [s.spec.params for s in plan.stages if s.stage == stage]


def test_defaults_and_limits_reach_the_stage_params(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (the 'lm-eval' extra)")
    from transfer.planning.plan import plan_adaptation

    cfg = config(tmp_path, tiny_source, tiny_corpus, train_steps=1, srb=True, lm_eval_tasks=["bible_continuation"])
    default = plan_adaptation(cfg)
    assert {p["max_verses"] for p in _params(default, "srb")} == {500}
    assert {p["limit"] for p in _params(default, "lm_eval")} == {None}
    small = plan_adaptation(cfg.model_copy(update={"srb_verses": 7, "lm_eval_limit": 5}))
    assert {p["max_verses"] for p in _params(small, "srb")} == {7}
    assert {p["limit"] for p in _params(small, "lm_eval")} == {5}
    keys = {s.label: s.key for s in default.stages}
    for s in small.stages:
        assert (s.key == keys[s.label]) == (s.stage not in ("srb", "lm_eval")), s.label


def test_srb_verses_sets_how_many_verses_are_retrieved(tmp_path: Path, tiny_source: Path,
                                                       tiny_corpus: Path) -> None:
    from transfer.corpus.bible import verse_pairs
    from transfer.corpus.splits import SplitFractions
    from transfer.evaluate.srb import sentence_retrieval
    from transfer.pipeline import run_adaptation
    from transfer.publish.result import stage_folder
    from transfer.source.loading import load_source

    cfg = config(tmp_path, tiny_source, tiny_corpus, train_steps=0, eval_texts=4, srb=True, srb_verses=30)
    result = run_adaptation(cfg)
    saved = json.loads((stage_folder(result, "srb.source_model") / "srb.json").read_text())
    assert saved["n_verses"] == 30
    # the first 30 test verses of the run's split, as SR-B scores them directly
    pairs = verse_pairs("k", "e", "test", fractions=SplitFractions(dev=0.1, test=0.1))[:30]
    model, tokenizer = load_source(str(tiny_source))
    direct = sentence_retrieval(model, tokenizer, [t for _, _, t in pairs], [e for _, e, _ in pairs], device="cpu")
    assert result.task_scores["source_model"]["srb.to_en.top10"] == pytest.approx(direct.target_to_english["top10"])
    with pytest.raises(ValueError):  # pydantic's ValidationError
        type(cfg)(**{**cfg.model_dump(), "srb_verses": 0})
