"""The CLI: --help everywhere, the dry-run plan (keys equal to a real run's, cache state),
and the batch plan from a languages file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import flow_config, languages_file

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["adapt"], ["batch"], ["serve"], ["strategies"], ["bibles"]])
def test_help_everywhere(command: list[str]) -> None:
    from flows.cli import app

    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_strategies_lists_parameters_and_data() -> None:
    from flows.cli import app

    result = runner.invoke(app, ["strategies"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "wechsel" in result.output and "temperature = 0.1" in result.output
    assert "parallel" in result.output and "rank = 100" in result.output


def test_plan_matches_the_run_and_sees_the_cache(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from flows.cli import app
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation

    cfg = flow_config(tmp_path, tiny_source, tiny_corpus)
    before = plan_adaptation(cfg, measure=True)
    assert before.stages and not any(s.cached for s in before.stages)
    # the size read from the source's file headers is the model's own
    from transfer.source.loading import load_source

    model, _ = load_source(str(tiny_source))
    assert before.source.parameters == sum(p.numel() for p in model.parameters())
    assert before.seconds == pytest.approx(sum(s.seconds for s in before.stages))
    assert all(s.seconds > 0 for s in before.stages)  # every stage is still to build

    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    dry = runner.invoke(app, ["adapt", "--config", str(config_file), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "to build" in dry.output and "0/" in dry.output
    assert not Path(cfg.cache_dir).exists() or not any(Path(cfg.cache_dir).rglob(".complete"))

    result = run_adaptation(cfg)
    planned = {s.label: s.key for s in before.stages}
    for name in ("corpus", "source", "tokenizer", "init"):
        assert planned[name] == result.stage_keys[name]
    assert planned["train"] == result.stage_keys["final"]
    assert set(result.stages_cached) <= set(planned)

    after = plan_adaptation(cfg, measure=False)
    assert all(s.cached for s in after.stages)
    again = runner.invoke(app, ["adapt", "--config", str(config_file), "--dry-run"])
    assert f"{len(after.stages)}/{len(after.stages)} stages cached" in again.output.replace("\n", " ")


def test_batch_dry_run_and_bad_language(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from flows.cli import app

    languages = languages_file(tmp_path, tiny_corpus, tiny_source)
    plan = runner.invoke(app, ["batch", "--languages", str(languages), "--only", "de", "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "German (de)" in plan.output and "to build" in plan.output
    unknown = runner.invoke(app, ["batch", "--languages", str(languages), "--only", "zz", "--dry-run"])
    assert unknown.exit_code == 2 and "zz" in unknown.output


def test_adapt_refuses_a_bad_strategy_naming_the_field(tmp_path: Path) -> None:
    from flows.cli import app

    result = runner.invoke(app, ["adapt", "--strategy", "nope", "--dry-run"])
    assert result.exit_code == 2
    assert "strategy" in result.output and "nope" in result.output


def test_adapt_refuses_bad_input_before_starting_prefect(tmp_path: Path, monkeypatch) -> None:
    """A Prefect run's bad input is refused by the CLI itself: no server start, no failed
    flow run with a traceback, no cache folder."""
    import gzip

    # both flow modules imported before either attribute is patched: compare_flow binds
    # adapt_flow at import, and must not keep the stand-in after this test
    import flows.adapt_flow
    import flows.compare_flow
    from flows.cli import app

    def no_flow(*args, **kwargs):
        raise AssertionError("the flow started on input that validation refuses")

    monkeypatch.setattr(flows.adapt_flow, "adapt_flow", no_flow)
    empty = tmp_path / "empty.txt.gz"
    empty.write_bytes(gzip.compress(b""))
    result = runner.invoke(app, ["adapt", "--target-file", str(empty), "--target-language", "fi",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    assert "no text" in result.output and "empty.txt.gz" in result.output
    assert not (tmp_path / "cache").exists()
    monkeypatch.setattr(flows.compare_flow, "compare_flow", no_flow)
    compared = runner.invoke(app, ["adapt", "--target-file", str(empty), "--target-language", "fi", "--strategy",
                                   "mean", "--strategy", "fvt", "--cache-dir", str(tmp_path / "cache")])
    assert compared.exit_code == 2 and "no text" in compared.output, compared.output
    assert not (tmp_path / "cache").exists()


def test_bibles_lists_every_code_with_its_language() -> None:
    from flows.cli import app
    from transfer.corpus.bible import translation_codes

    result = runner.invoke(app, ["bibles"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Swahili (sw)" in result.output and "Schlachter 1951" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == len(translation_codes()) and not any("│ ?" in row for row in rows)


def test_parallel_max_pairs_reaches_the_config_and_the_plan(tmp_path: Path, monkeypatch) -> None:
    import transfer.planning.plan
    from flows.cli import app
    from transfer.planning.estimates import parallel_pairs_estimate

    seen = []

    def record(cfg, **_):  # the config the dry run would plan; no stage is planned or run
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(transfer.planning.plan, "plan_adaptation", record)
    result = runner.invoke(app, ["adapt", "--parallel-max-pairs", "2500", "--strategy", "combined", "--dry-run",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert seen[0].parallel_max_pairs == 2500
    assert parallel_pairs_estimate(seen[0]) == 3 * 2500  # the plan's links estimate follows it
    refused = runner.invoke(app, ["adapt", "--parallel-max-pairs", "0", "--dry-run"])
    assert refused.exit_code == 2 and "parallel-max-pairs" in refused.output
