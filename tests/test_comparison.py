"""Several strategies on one pair: shared stages built once, one table, one overlaid plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import flow_artifacts, flow_config
from transfer.errors import UnknownStrategyError
from transfer.publish.comparison import (
    ComparisonError,
    compare_strategies,
    comparison_folder,
    comparison_markdown,
    strategy_configs,
    write_comparison,
)


def test_each_strategy_gets_the_parameters_it_takes(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    params = {"covariance_scale": 0.0, "k": 3, "fallback_covariance_scale": 0.5}
    cfg = flow_config(tmp_path, tiny_source, tiny_corpus, strategy_params=params)
    configs = strategy_configs(cfg, ["mean", "wechsel", "overlap", "random"])
    assert [c.strategy for c in configs] == ["mean", "wechsel", "overlap", "random"]
    by_name = {c.strategy: c.strategy_params for c in configs}
    assert by_name["mean"] == {"covariance_scale": 0.0}
    assert by_name["wechsel"] == {"k": 3, "fallback_covariance_scale": 0.5}
    assert by_name["overlap"] == {"fallback_covariance_scale": 0.5}
    assert by_name["random"] == {}
    assert cfg.strategy == "mean" and cfg.strategy_params == params  # untouched

    with pytest.raises(ComparisonError, match=r"\['temperatur'\] is taken by none"):
        strategy_configs(cfg.model_copy(update={"strategy_params": {"temperatur": 0.1}}), ["mean", "wechsel"])
    with pytest.raises(ComparisonError, match="more than once"):
        strategy_configs(cfg, ["mean", "random", "mean"])
    with pytest.raises(ComparisonError, match="at least one"):
        strategy_configs(cfg, [])
    with pytest.raises(UnknownStrategyError, match="no-such"):
        strategy_configs(cfg, ["mean", "no-such"])


def test_compare_shares_stages_and_ranks(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=2, eval_every=1, curve_texts=4)
    results = []
    comparison = compare_strategies(cfg, ["mean", "random"], on_result=results.append)
    assert [r.config.strategy for r in results] == ["mean", "random"]
    second = results[1].stages_cached
    assert second["corpus"] and second["source"] and second["tokenizer"]
    assert second["evaluate.source_model_on_target"] and not second["init"]
    assert comparison.source_model == results[0].scores["source_model_on_target"]
    for row, result in zip(comparison.rows, results):
        assert row.step0 == result.scores["adapted_step0"] and row.trained == result.scores["adapted_trained"]
        assert row.curve_file and Path(row.curve_file).is_file()
    ranked = comparison.ranked()
    assert [r.trained for r in ranked] == sorted(r.trained for r in comparison.rows)
    assert results[1].stages_cached["evaluate.source_model_on_curve_texts"]
    assert comparison.rows[1].stages_reused.startswith("5/")  # corpus, source, tokenizer, 2 source evaluations
    # the plot's line to beat is the source model on the curves' own texts (4 dev texts)
    from transfer.corpus.stage import read_lines
    from transfer.evaluate.bpb import bits_per_byte
    from transfer.source.loading import load_source

    model, tokenizer = load_source(str(tiny_source))
    dev = read_lines(Path(cfg.cache_dir) / "corpus" / results[0].stage_keys["corpus"] / "dev.target.txt", 4)
    # float32 logits (a few ulps apart if batched otherwise), float64 sums: ~1e-7 relative
    assert comparison.source_model_on_curves == pytest.approx(bits_per_byte(model, tokenizer, dev).bpb, rel=1e-5)
    assert comparison.source_model_on_curves != comparison.source_model

    paths = write_comparison(comparison, comparison_folder(cfg, ["mean", "random"]))
    assert paths["json"].parent == tmp_path / "reports" / paths["json"].parent.name
    assert "-de-mean-random-" in paths["json"].parent.name
    other = comparison_folder(cfg.model_copy(update={"vector_epochs": 3}), ["mean", "random"])
    assert other != paths["json"].parent  # other shared settings, another folder
    assert json.loads(paths["json"].read_text())["rows"][1]["strategy"] == "random"
    table = paths["markdown"].read_text()
    assert table == comparison_markdown(comparison)
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in lines[1:]] == [
        r.strategy for r in ranked] + ["source model, own tokenizer"]
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_bad_strategy_is_refused_before_any_run(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    """The second strategy needs a parallel corpus the config lacks: nothing runs at all."""
    cfg = flow_config(tmp_path, tiny_source, tiny_corpus)
    ran = []
    with pytest.raises(Exception, match="parallel corpus"):
        compare_strategies(cfg, ["mean", "trans_tokenization"], run=ran.append)
    assert ran == []


def test_cli_compares_with_repeated_strategy(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from flows.cli import app

    cfg = flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1)
    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    runner = CliRunner()
    args = ["adapt", "--config", str(config_file), "--strategy", "mean", "--strategy", "overlap", "--no-prefect"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "plan of" in dry.output and dry.output.count("plan of") == 2
    done = runner.invoke(app, args, terminal_width=200)
    assert done.exit_code == 0, done.output
    output = " ".join(done.output.split())
    assert "best first" in output and "│ overlap " in output and "│ source model," in output, output
    folder = comparison_folder(cfg, ["mean", "overlap"])
    assert (folder / "comparison.md").is_file() and (folder / "comparison.json").is_file()
    bad = runner.invoke(app, ["adapt", "--config", str(config_file), "--strategy", "mean", "--strategy", "mean",
                              "--no-prefect"])
    assert bad.exit_code == 2 and "more than once" in bad.output


def test_compare_flow_runs_each_strategy_as_a_sub_run(prefect_harness, tmp_path: Path, tiny_source: Path,
                                                      tiny_corpus: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from flows.compare_flow import compare_flow
    from flows.parameters import as_parameters

    cfg = as_parameters(flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1))
    state = compare_flow(cfg, ["mean", "random"], return_state=True)
    assert state.is_completed(), state.message
    comparison = state.result()
    assert [row.strategy for row in comparison.rows] == ["mean", "random"]
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
    names = sorted(run.name for run in children)
    assert names == ["de-mean", "de-random"], names
    artifacts = {a.key: a for a in flow_artifacts(run_id)}
    table = artifacts["compare-de-mean-random-table"]
    assert "| mean |" in table.data and "| random |" in table.data
    assert "compare-de-mean-random-curves" in artifacts
