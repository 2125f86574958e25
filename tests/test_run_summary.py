"""One table of evaluation labels and one RunSummary per run: the CLI table, the Prefect
summary and metrics table, the model card, the registry metrics and the strategy
comparison all show the same rows, in the same order, under the same names."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import adapt_result
from transfer.publish.labels import (
    ADAPTED_STEP0,
    ADAPTED_TRAINED,
    EVALUATIONS,
    SOURCE_ON_TARGET,
    final_label,
    final_metric,
    in_label_order,
)
from transfer.publish.summary import RunSummary


def test_evaluations_in_label_order() -> None:
    values = {"adapted_trained": 2.0, "source_model_on_target": 2.7, "adapted_step0": 3.4, "other": 1.0,
              "source_model_on_source_language": 1.5}
    assert [k for k, _ in in_label_order(values)] == [
        "source_model_on_source_language", "source_model_on_target", "adapted_step0", "adapted_trained", "other"]
    assert len({label.key for label in EVALUATIONS}) == len(EVALUATIONS)


def test_final_metric_is_after_training_else_step0() -> None:
    assert final_metric({ADAPTED_STEP0: 3.0, ADAPTED_TRAINED: 2.5, SOURCE_ON_TARGET: 2.0}) == 2.5
    assert final_metric({ADAPTED_STEP0: 3.0, SOURCE_ON_TARGET: 2.0}) == 3.0
    assert final_metric({SOURCE_ON_TARGET: 2.0}) is None
    # the registry's flat metrics: a masked LM's loss never counts as its BPB
    assert final_metric({"bpb.adapted_step0": 3.0}, prefix="bpb.") == 3.0
    assert final_label({"mlm_loss.adapted_trained": 1.0}, prefix="bpb.") is None


def test_summary_rows_names_and_final(tmp_path: Path) -> None:
    summary = RunSummary.from_result(adapt_result(tmp_path))
    assert [row.label for row in summary.rows] == [
        "source_model_on_source_language", "source_model_on_target", ADAPTED_STEP0, ADAPTED_TRAINED]
    assert [row.model for row in summary.rows][2:] == [
        "adapted (wechsel), step 0 (initialization only)", "adapted (wechsel), after 20 training steps"]
    assert summary.final == summary.trained == 2.58126 and summary.step0 == 3.7421
    assert summary.gain_vs_source == 2.69 - 2.58126
    assert [row.adapted for row in summary.rows] == [False, False, True, True]
    untrained = RunSummary.from_result(adapt_result(tmp_path).model_copy(update={"scores": {ADAPTED_STEP0: 3.0}}))
    assert untrained.final == 3.0 and untrained.trained is None and untrained.gain_vs_source is None


def _rows_in(text: str, summary: RunSummary) -> list[int]:
    """Where each summary row (model title, then its value) appears in ``text``."""
    found = []
    for row in summary.rows:
        match = re.search(re.escape(row.model) + r"[^\n]*?" + re.escape(f"{row.value:.4f}"), text)
        assert match, (row, text)
        found.append(match.start())
    return found


def test_every_renderer_shows_the_same_rows_in_order(tmp_path: Path) -> None:
    from flows import cli_render as cli
    from flows.reports import metrics_rows, result_markdown
    from transfer.publish.comparison import row_of
    from transfer.publish.model_card import render_model_card
    from transfer.publish.registry_store import result_metrics

    result = adapt_result(tmp_path)
    summary = RunSummary.from_result(result)
    for name, text in {"card": render_model_card(result), "prefect": result_markdown(result)}.items():
        positions = _rows_in(text, summary)
        assert positions == sorted(positions), (name, text)  # the source model's rows first
    with cli.console.capture() as captured:
        cli.print_result(result)
    printed = captured.get()  # the terminal table may wrap long titles: check the values' order
    values = [printed.index(f"{row.value:.4f}") for row in summary.rows]
    assert values == sorted(values), printed

    table = metrics_rows(result)
    assert [r["metric"] for r in table][:4] == [f"bpb/{row.label}" for row in summary.rows]
    assert table[3]["evaluation"] == "adapted (wechsel), after 20 training steps on target language"
    metrics = result_metrics(result)
    assert {k: v for k, v in metrics.items() if k.startswith("bpb.") and "gain" not in k} == {
        f"bpb.{row.label}": row.value for row in summary.rows}

    strategy_row = row_of(result)
    assert (strategy_row.step0, strategy_row.trained, strategy_row.final) == (3.7421, 2.58126, 2.58126)
    assert strategy_row.stages_reused == summary.stages_reused
