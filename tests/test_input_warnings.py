"""Valid but suspicious input is warned about before any work starts (issue 16, item 3):
text whose script does not match the language, a corpus that is mostly repeats, and a
corpus too small for the vocabulary asked (with the size it supports)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.helpers import three_step_config
from tests.tiny import ENGLISH_SENTENCES, GERMAN_SENTENCES
from transfer.settings.input_warnings import (
    expected_scripts,
    input_warnings,
    script_warning,
    size_warnings,
    supported_vocab_size,
)

RUSSIAN = [
    "В начале сотворил Бог небо и землю.",
    "Земля же была безвидна и пуста, и тьма над бездною.",
    "И сказал Бог: да будет свет. И стал свет.",
    "И увидел Бог свет, что он хорош, и отделил Бог свет от тьмы.",
]
# distinct documents that share few words: a corpus too small for thousands of tokens
SMALL = [f"{s} number {i} of {n}" for n, s in enumerate(GERMAN_SENTENCES + ENGLISH_SENTENCES)
         for i in range(2)]


def test_expected_scripts_from_the_tag() -> None:
    assert expected_scripts("ru") == ("Cyrillic",)
    assert expected_scripts("sr") == ("Cyrillic", "Latin")
    assert expected_scripts("sr-Latn") == ("Latin",)  # the script subtag decides
    assert expected_scripts("zh-Hant") == ("Han",)
    assert expected_scripts("xx") is None  # not in the table: never warned about


def test_script_mismatch_is_warned_and_matches_are_not() -> None:
    latin = [f"{s} ({i})" for i in range(5) for s in GERMAN_SENTENCES]
    warning = script_warning("ru", latin)
    assert warning is not None and warning.check == "script"
    assert "0% of its" in warning.message and "Cyrillic" in warning.message and "100% are Latin" in warning.message
    assert script_warning("ru", RUSSIAN * 5) is None
    assert script_warning("de", latin) is None
    assert script_warning("xx", latin) is None
    assert script_warning("ru", ["Hallo Welt"]) is None  # too few letters to judge
    japanese = ["吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"] * 10
    assert script_warning("ja", japanese) is None
    assert script_warning("ko", japanese) is not None


def test_repeats_and_a_corpus_too_small_for_the_vocabulary() -> None:
    supported = supported_vocab_size(SMALL, 3000)
    assert 256 < supported < 1000
    warnings = {w.check: w.message for w in size_warnings(3000, SMALL)}
    assert set(warnings) == {"vocab_size"}
    assert f"support about {supported} tokens" in warnings["vocab_size"]
    assert f"Use vocab_size={supported} or less" in warnings["vocab_size"]
    assert size_warnings(supported, SMALL) == []  # what it supports is not warned about

    repeated = {w.check: w.message for w in size_warnings(300, SMALL[:4] * 10)}
    assert "36 of its 40 documents repeat another (4 distinct)" in repeated["repetition"]


def test_cli_prints_the_warnings_before_the_plan(tmp_path: Path, tiny_source: Path) -> None:
    from flows.cli import app

    corpus = tmp_path / "ru.txt"  # German text, declared Russian, for a vocabulary it cannot fill
    corpus.write_text("\n".join(f"{s} ({i})" for i in range(12) for s in GERMAN_SENTENCES) + "\n")
    cfg = three_step_config(tmp_path, tiny_source, corpus, target_language="ru", vocab_size=3000)
    assert [w.check for w in input_warnings(cfg)] == ["script", "vocab_size"]
    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    dry = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    text = " ".join(dry.output.split())  # the console wraps long lines
    assert text.count("warning: target corpus:") == 2
    assert "target_language 'ru'" in text and "fewer than vocab_size=3000" in text
    assert text.rindex("warning:") < text.index("to build")  # before the plan, before any work
    assert not Path(cfg.cache_dir).exists() or not any(Path(cfg.cache_dir).rglob(".complete"))


def test_a_prefect_run_from_the_cli_shows_each_note_once(prefect_harness, tmp_path: Path, tiny_source: Path,
                                                        monkeypatch) -> None:
    """A Prefect flow run logs the notes itself (the UI's users see them there, and its log
    reaches the terminal), so the CLI prints them only for a dry run or a run without Prefect."""
    import flows.cli
    from flows.cli import app

    corpus = tmp_path / "ru.txt"
    corpus.write_text("\n".join(f"{s} ({i})" for i in range(12) for s in GERMAN_SENTENCES) + "\n")
    cfg = three_step_config(tmp_path, tiny_source, corpus, target_language="ru", vocab_size=3000, train_steps=0)
    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    printed: list[object] = []
    monkeypatch.setattr(flows.cli, "print_notes", printed.append)
    run = CliRunner().invoke(app, ["adapt", "--config", str(config_file)])
    assert run.exit_code == 0, run.output
    assert printed == []  # left to the flow run's log
    dry = CliRunner().invoke(app, ["adapt", "--config", str(config_file), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert len(printed) == 1  # no flow run: the CLI prints them


def test_own_word_vectors_for_an_unspaced_language_are_warned_about(tmp_path: Path) -> None:
    from transfer.settings.config import AdaptConfig
    from transfer.settings.input_warnings import unspaced_vectors_warning

    base = AdaptConfig(target_language="ja", target_bible=["j"], cache_dir=tmp_path)
    warning = unspaced_vectors_warning(base.model_copy(update={"strategy": "wechsel"}))
    assert warning is not None and warning.check == "unspaced"
    assert "'ja' is written without spaces" in warning.message and "'wechsel'" in warning.message
    # the same for OFA and Chinese/Thai; pretrained target vectors, other strategies and
    # spaced languages (Korean writes spaces) are not warned about
    assert unspaced_vectors_warning(base.model_copy(update={"strategy": "ofa", "target_language": "zh"}))
    assert unspaced_vectors_warning(base.model_copy(update={"strategy": "wechsel", "target_language": "th"}))
    for strategy in ("combined", "fvt", "focus", "auto"):
        assert unspaced_vectors_warning(base.model_copy(update={"strategy": strategy})) is None
    vectors = base.model_copy(update={"strategy": "wechsel", "target_vectors": str(tmp_path / "cc.ja.300.bin")})
    assert unspaced_vectors_warning(vectors) is None
    for spaced in ("ko", "de", "ru"):
        assert unspaced_vectors_warning(base.model_copy(update={"strategy": "wechsel", "target_language": spaced})) is None
    # a Bible-only run gets it too (no corpus file is sampled)
    assert [w.check for w in input_warnings(base.model_copy(update={"strategy": "wechsel"}))] == ["unspaced"]
