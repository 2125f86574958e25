"""One plan per run (issue #26): every path (library, CLI with and without Prefect, dry
run, comparison) validates a config once and walks the stage graph once; the library has
no import cycles."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import transfer.planning.plan
import transfer.planning.walk
import transfer.settings.validate
from tests.helpers import flow_config
from transfer.engine.code_version import REPO_ROOT, _imports

runner = CliRunner()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of ``validate_config`` and ``walk_stages`` calls (both still do their work)."""
    calls = {"validate": 0, "walk": 0}
    validate, walk = transfer.settings.validate.validate_config, transfer.planning.walk.walk_stages

    def counting_validate(cfg, **options):
        calls["validate"] += 1
        return validate(cfg, **options)

    def counting_walk(cfg, visit):
        calls["walk"] += 1
        return walk(cfg, visit)

    monkeypatch.setattr(transfer.settings.validate, "validate_config", counting_validate)
    monkeypatch.setattr(transfer.planning.plan, "walk_stages", counting_walk)
    return calls


def _config_file(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> Path:
    cfg = flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1, eval_texts=4)
    path = tmp_path / "config.json"
    path.write_text(cfg.model_dump_json())
    return path


def test_library_run_plans_once(counted, tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation

    cfg = flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1, eval_texts=4)
    run_adaptation(cfg)
    assert counted == {"validate": 1, "walk": 1}
    plan = plan_adaptation(cfg)
    run_adaptation(plan)  # a plan made by the caller is run as it is
    assert counted == {"validate": 2, "walk": 2}


def test_cli_without_prefect_and_dry_run_plan_once(counted, tmp_path: Path, tiny_source: Path,
                                                   tiny_corpus: Path) -> None:
    from flows.cli import app

    config_file = _config_file(tmp_path, tiny_source, tiny_corpus)
    dry = runner.invoke(app, ["adapt", "--config", str(config_file), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert counted == {"validate": 1, "walk": 1}
    ran = runner.invoke(app, ["adapt", "--config", str(config_file), "--no-prefect"])
    assert ran.exit_code == 0, ran.output
    assert counted == {"validate": 2, "walk": 2}


def test_cli_comparison_plans_each_strategy_once(counted, tmp_path: Path, tiny_source: Path,
                                                 tiny_corpus: Path) -> None:
    from flows.cli import app

    config_file = _config_file(tmp_path, tiny_source, tiny_corpus)
    ran = runner.invoke(app, ["adapt", "--config", str(config_file), "--no-prefect",
                              "--strategy", "mean", "--strategy", "random"])
    assert ran.exit_code == 0, ran.output
    assert counted == {"validate": 2, "walk": 2}


def test_prefect_run_from_the_cli_plans_once(counted, prefect_harness, tmp_path: Path, tiny_source: Path,
                                             tiny_corpus: Path) -> None:
    from flows.cli import app

    config_file = _config_file(tmp_path, tiny_source, tiny_corpus)
    ran = runner.invoke(app, ["adapt", "--config", str(config_file)])
    assert ran.exit_code == 0, ran.output
    assert counted == {"validate": 1, "walk": 1}


def test_flow_from_the_ui_plans_its_config_once(counted, prefect_harness, tmp_path: Path, tiny_source: Path,
                                                tiny_corpus: Path) -> None:
    from flows.adapt_flow import adapt_flow
    from flows.parameters import as_parameters

    cfg = flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1, eval_texts=4)
    adapt_flow(as_parameters(cfg))  # no plan given, as from the deployment's form
    assert counted == {"validate": 1, "walk": 1}


def test_plan_is_what_the_run_executes(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation

    cfg = flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1, eval_texts=4)
    plan = plan_adaptation(cfg)
    executed = []

    def record(spec, context):
        from transfer.engine.cache import StageCache
        from transfer.engine.stages import execute

        executed.append((spec.stage, spec.key))
        return execute(spec, StageCache(cfg.cache_dir), context)[0]

    result = run_adaptation(plan, execute_stage=record)
    assert executed == [(s.stage, s.key) for s in plan.stages]
    assert set(result.stages_cached) == set(plan.labels)
    assert result.code_version == plan.code_version


def _module_graph() -> dict[str, set[str]]:
    """Our modules and the modules of ours each imports by name (at any depth of the file,
    inside functions too; not under ``if TYPE_CHECKING:``)."""
    modules = {}
    for package in ("transfer", "tokenizer_builds", "flows"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return {name: {n for n in _imports(name, path) if n in modules and n != name}
            for name, path in modules.items()}


def test_no_import_cycles() -> None:
    graph = _module_graph()
    cycles = []
    for start in graph:
        # depth-first from each module: does any path lead back to it?
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "\n".join(sorted(set(cycles)))


def test_adapt_options_of_config_fields_say_what_the_field_says() -> None:
    # help texts exist once: an option that sets an AdaptConfig field shows its description
    from typer.main import get_command

    from flows.cli import app
    from transfer.settings.config import AdaptConfig

    adapt = get_command(app).commands["adapt"]
    descriptions = [f.description for f in AdaptConfig.model_fields.values() if f.description]
    for option in adapt.params:
        if option.name in ("config", "prefect", "dry_run"):
            continue
        assert any(option.help.startswith(d) for d in descriptions), option.name


def test_manifest_records_the_plan(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation
    from transfer.publish.manifest import MANIFEST_FILE, read_manifest

    cfg = flow_config(tmp_path, tiny_source, tiny_corpus, train_steps=1, eval_texts=4)
    plan = plan_adaptation(cfg)
    result = run_adaptation(plan)
    manifest = read_manifest(Path(result.model_dir) / MANIFEST_FILE)
    assert manifest.plan is not None
    assert [(s["stage"], s["key"]) for s in manifest.plan["stages"]] == [(s.stage, s.key) for s in plan.stages]
    assert manifest.plan["memory_estimate"]["total"] == plan.peak_memory_bytes > 0
