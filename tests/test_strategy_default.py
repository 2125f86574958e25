"""``strategy: auto`` (the default): the measured best strategy, or the best whose data the
run has, and a sentence saying which and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.parameters import AdaptParameters
from transfer.init.registry import needs
from transfer.publish.comparison import Comparison
from transfer.settings.config import AdaptConfig
from transfer.settings.strategy_choice import MEASURED_ORDER, choose_strategy, missing_data


def test_the_default_is_the_measured_best_when_its_data_is_there() -> None:
    cfg = AdaptConfig()  # the demo: German Bible, English Bible as the parallel side
    assert cfg.strategy == MEASURED_ORDER[0]
    assert cfg.strategy_choice == f"auto: {MEASURED_ORDER[0]}, the measured best strategy"
    assert AdaptParameters().strategy == MEASURED_ORDER[0]  # the Prefect form's default too


def test_without_parallel_text_auto_falls_back_and_says_why() -> None:
    cfg = AdaptConfig(target_bible=[], target_files=["corpus.txt"])
    skipped = [s for s in MEASURED_ORDER if "parallel" in needs(s)]
    assert skipped, "the measured order starts with strategies that need parallel text"
    expected = next(s for s in MEASURED_ORDER if "parallel" not in needs(s) and "vectors" not in needs(s))
    assert cfg.strategy == expected
    for name in skipped:
        assert f"{name} needs a parallel corpus" in cfg.strategy_choice
    # given parallel files, the best one runs again
    with_pairs = AdaptConfig(target_bible=[], target_files=["corpus.txt"], parallel_files=["pairs.tsv"])
    assert with_pairs.strategy == MEASURED_ORDER[0]


def test_the_walk_always_ends_in_a_strategy_that_needs_nothing() -> None:
    bare = AdaptConfig(strategy="mean", target_bible=[], target_files=["c.txt"], source_train_bible=[],
                       dictionary="induced")
    assert missing_data(bare, MEASURED_ORDER[-1]) is None
    strategy, reason = choose_strategy(bare)
    assert missing_data(bare, strategy) is None and strategy in reason


def test_a_named_strategy_is_kept_and_auto_takes_no_parameters() -> None:
    cfg = AdaptConfig(strategy="mean")
    assert cfg.strategy == "mean" and cfg.strategy_choice is None
    with pytest.raises(ValidationError, match="strategy_params need a named strategy"):
        AdaptConfig(strategy_params={"k": 3})


def test_a_resolved_config_round_trips() -> None:
    cfg = AdaptConfig()
    again = AdaptConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg


def test_a_comparison_may_name_auto_beside_the_baseline() -> None:
    from transfer.publish.comparison import ComparisonError, strategy_configs

    cfg = AdaptConfig(strategy="mean")
    auto, mean = strategy_configs(cfg, ["auto", "mean"])
    assert (auto.strategy, mean.strategy) == (MEASURED_ORDER[0], "mean")
    assert auto.strategy_choice and MEASURED_ORDER[0] in auto.strategy_choice and mean.strategy_choice is None
    with pytest.raises(ComparisonError, match="more than once"):
        strategy_configs(cfg, ["auto", MEASURED_ORDER[0]])


def test_the_run_says_which_strategy_auto_chose(tmp_path) -> None:
    from transfer.settings.input_warnings import run_notes

    assert run_notes(AdaptConfig()) == [f"Strategy auto: {MEASURED_ORDER[0]}, the measured best strategy"]
    assert run_notes(AdaptConfig(strategy="mean")) == []
    latin = tmp_path / "ru.txt"  # Russian in Latin letters: the choice, then the script warning
    latin.write_text("\n".join(f"Eto predlozhenie nomer {i} na russkom yazyke." for i in range(200)) + "\n")
    notes = run_notes(AdaptConfig(target_language="ru", target_bible=[], target_files=[str(latin)]))
    assert notes[0].startswith("Strategy auto: ") and "parallel corpus" in notes[0]
    assert any(note.startswith("warning: ") and "Cyrillic" in note for note in notes[1:])


# ------------------------------------------------ the defaults follow the measurements

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
MEASURED_LANGUAGES = ("de", "fr", "sw")


def _dev_results() -> dict[str, Comparison]:
    found = {}
    for code in MEASURED_LANGUAGES:
        path = RESULTS / f"strategies_{code}_dev.json"
        if path.exists():
            found[code] = Comparison.model_validate(json.loads(path.read_text())["comparison"])
    return found


def _ranking(comparisons: list[Comparison]) -> list[str]:
    """Best first by the mean over languages of BPB after training / mean's (recomputed here
    from the recorded comparisons, independently of the benchmark script)."""
    ratios: dict[str, list[float]] = {}
    for comparison in comparisons:
        final = {row.strategy: row.final for row in comparison.rows}
        for name, value in final.items():
            ratios.setdefault(name, []).append(value / final["mean"])
    common = [name for name, values in ratios.items() if len(values) == len(comparisons)]
    return sorted(common, key=lambda name: sum(ratios[name]) / len(ratios[name]))


def test_the_measured_order_is_the_recorded_ranking() -> None:
    results = _dev_results()
    assert results, f"no strategies_<lang>_dev.json in {RESULTS}: run benchmarks/strategy_languages.py"
    ranking = _ranking(list(results.values()))
    # the order as far as it goes: up to the first strategy that needs no data
    cut = next(i for i, name in enumerate(ranking) if not needs(name)) + 1
    assert list(MEASURED_ORDER) == ranking[:cut], ranking


def test_languages_file_and_readme_name_the_winners() -> None:
    from flows.languages import load_languages

    results = _dev_results()
    languages = load_languages(RESULTS.parents[1] / "configs" / "languages.yaml").languages
    readme = (RESULTS.parents[1] / "README.md").read_text()
    for code, entry in languages.items():
        if code in results:  # its own measured winner, named
            winner = results[code].ranked()[0].strategy
            assert entry.strategy == winner, (code, entry.strategy, winner)
            assert f"winner on dev: **{winner}**" in readme, code
        else:  # the winner across the measured languages ('auto' resolves to it)
            assert entry.strategy in ("auto", MEASURED_ORDER[0]), (code, entry.strategy)
    assert f"overall winner: **{MEASURED_ORDER[0]}**" in readme
