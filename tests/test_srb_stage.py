"""SR-B as an opt-in pipeline setting (issue #30, item 2): with ``srb`` a run scores the
source model and the adapted model at step 0 and after training on the same test verses,
the numbers land in the result, the registry metrics, the model card and the comparison
table, the other stages keep their keys, and a language without a packaged Bible is
refused before the first stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import config
from transfer.errors import CorpusError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_METRICS = {"srb.to_en.top1", "srb.to_en.top10", "srb.from_en.top1", "srb.from_en.top10"}


def test_srb_scores_every_model_and_reaches_every_report(tmp_path: Path, tiny_source: Path,
                                                         tiny_corpus: Path) -> None:
    from transfer.corpus.bible import verse_pairs
    from transfer.corpus.splits import SplitFractions
    from transfer.evaluate.srb import sentence_retrieval
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation
    from transfer.publish.comparison import compare_strategies, comparison_rows
    from transfer.publish.registry_store import result_metrics
    from transfer.source.loading import load_source

    # a run on its own German file: SR-B takes the language's first packaged Bible ('e') and English 'k'
    cfg = config(tmp_path, tiny_source, tiny_corpus, train_steps=1, eval_texts=4, srb=True)
    plain = plan_adaptation(cfg.model_copy(update={"srb": False}))
    plan = plan_adaptation(cfg)
    srb_labels = [label for label in plan.labels if label.startswith("srb.")]
    assert srb_labels == ["srb.source_model", "srb.adapted_step0", "srb.adapted_trained"]
    # an opt-in stage kind: every other stage keeps its key
    assert {s.label: s.key for s in plain.stages} == {s.label: s.key for s in plan.stages if s.stage != "srb"}

    result = run_adaptation(plan)
    assert set(result.task_scores) == {"source_model", "adapted_step0", "adapted_trained"}
    for values in result.task_scores.values():
        assert set(values) == _METRICS
        assert 0.0 <= values["srb.to_en.top1"] <= values["srb.to_en.top10"] <= 1.0
    # the source model's number is SR-B on the run's test verses (its split fractions), 500 of them
    pairs = verse_pairs("k", "e", "test", fractions=SplitFractions(dev=0.1, test=0.1))[:500]
    model, tokenizer = load_source(str(tiny_source))
    direct = sentence_retrieval(model, tokenizer, [t for _, _, t in pairs], [e for _, e, _ in pairs], device="cpu")
    assert direct.n_verses == 500
    assert result.task_scores["source_model"]["srb.from_en.top10"] == pytest.approx(direct.english_to_target["top10"])

    metrics = result_metrics(result)  # the registry's: <metric>.<model>
    assert {"srb.to_en.top1.adapted_trained", "srb.from_en.top10.source_model"} <= set(metrics)
    card = (Path(result.model_dir) / "README.md").read_text()
    assert "## Task evaluations" in card and "500 held-out `test` verses of translation `e`" in card
    assert "SR-B top-10, English -> target" in card
    comparison = compare_strategies(cfg, ["mean"])  # every stage from the cache
    header, rows = comparison_rows(comparison, ("step0", "trained"))
    assert "SR-B top-1, target -> English" in header
    column = header.index("SR-B top-1, target -> English")
    assert [row[column] for row in rows] == [f"{result.task_scores[m]['srb.to_en.top1']:.4f}"
                                             for m in ("adapted_trained", "source_model")]
    # the Prefect summary and metrics artifacts, and the CLI's table, show them too
    from flows.cli_render import console, print_result
    from flows.reports import metrics_rows, result_markdown

    top10 = f"{result.task_scores['adapted_trained']['srb.from_en.top10']:.4f}"
    assert "SR-B top-10, English -> target" in result_markdown(result) and top10 in result_markdown(result)
    assert {r["metric"] for r in metrics_rows(result)} >= {"srb.to_en.top1/adapted_trained",
                                                           "srb.from_en.top10/source_model"}
    with console.capture() as captured:
        print_result(result)
    assert "SR-B top-10, English -> target" in captured.get() and top10 in captured.get()


def test_a_language_without_a_bible_is_refused_before_any_stage(tmp_path: Path, tiny_source: Path,
                                                               tiny_corpus: Path) -> None:
    from transfer.planning.plan import plan_adaptation

    cfg = config(tmp_path, tiny_source, tiny_corpus, target_language="eu", srb=True)
    with pytest.raises(CorpusError, match="srb: the packaged Bible has no translation in .*'eu'"):
        plan_adaptation(cfg)
    assert not Path(cfg.cache_dir).exists()


def test_cli_srb_reaches_the_plan(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from flows.cli import app

    config_file = tmp_path / "config.json"
    config_file.write_text(config(tmp_path, tiny_source, tiny_corpus).model_dump_json())
    dry = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--srb", "--srb-layer", "1", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "srb.source_model" in dry.output and "srb.adapted_trained" in dry.output
