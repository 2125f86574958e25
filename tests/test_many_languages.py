"""Several target languages in one run (issue #29, OFA's one-for-all): the config's list and
its joined tag, the sampled train text (p_i proportional to n_i^alpha), evaluation per
language with the byte-weighted mean, refusals and warnings naming the language, and the
CLI, the languages file and the Prefect form taking a list."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import config
from tests.tiny import ENGLISH_SENTENCES, GERMAN_SENTENCES
from transfer.corpus.many_languages import repeat_rates, sampling_shares
from transfer.corpus.splits import key_unit
from transfer.errors import CorpusError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """German four times the size of the second language (English text, tagged 'en')."""
    folder = tmp_path_factory.mktemp("many")
    de = folder / "de.txt"
    de.write_text("".join(f"{s} ({i})\n" for i in range(16) for s in GERMAN_SENTENCES))
    en = folder / "en.txt"
    en.write_text("".join(f"{s} [{i}]\n" for i in range(4) for s in ENGLISH_SENTENCES))
    return {"de": de, "en": en}


def two_languages(tmp_path: Path, source: Path, corpora: dict[str, Path], **overrides):
    return config(tmp_path, source, corpora["de"], target_language=["de", "en"],
                  target_files=[f"de={corpora['de']}", f"en={corpora['en']}"], **overrides)


def test_a_list_is_one_joined_tag_and_round_trips(tmp_path: Path, tiny_source: Path, corpora) -> None:
    from transfer.settings.config import AdaptConfig

    cfg = two_languages(tmp_path, tiny_source, corpora)
    assert cfg.target_language == "de_en" and cfg.target_languages == ["de", "en"] and cfg.several_languages
    assert cfg.target_files == [str(corpora["de"]), str(corpora["en"])] and cfg.target_file_languages == ["de", "en"]
    assert "-de_en-" in cfg.model_name()
    again = AdaptConfig.model_validate(cfg.model_dump(mode="json"))
    assert again.target_language == "de_en" and again.target_file_languages == ["de", "en"]
    single = config(tmp_path, tiny_source, corpora["de"], target_language=["de"])
    assert single.target_language == "de" and not single.several_languages and single.target_file_languages == []
    # not given: every packaged Bible of each language
    assert AdaptConfig(target_language=["sw", "id"]).target_bible == ["h", "6"]


def test_sampling_shares_follow_the_exponent() -> None:
    sizes = {"a": 9000, "b": 1000}
    shares = sampling_shares(sizes, 0.3)
    expected_a = 9000 ** 0.3 / (9000 ** 0.3 + 1000 ** 0.3)
    assert shares["a"] == pytest.approx(expected_a) and shares["b"] == pytest.approx(1 - expected_a)
    rates = repeat_rates(sizes, 0.3)
    assert sum(rates[k] * n for k, n in sizes.items()) == pytest.approx(10_000)  # the same total size
    assert sampling_shares(sizes, 1.0) == pytest.approx({"a": 0.9, "b": 0.1})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_source: Path, corpora):
    from transfer.pipeline import run_adaptation
    from transfer.planning.plan import plan_adaptation

    tmp = tmp_path_factory.mktemp("run")
    plan = plan_adaptation(two_languages(tmp, tiny_source, corpora, eval_texts=4))
    return plan, run_adaptation(plan)


def _folder(plan, label: str) -> Path:
    target = plan.labels[label]
    return Path(next(p for p in plan.stages if p.label == target).path)


def test_train_text_is_sampled_per_language(run) -> None:
    plan, _ = run
    corpus = _folder(plan, "corpus")
    record = json.loads((corpus / "languages.json").read_text())["languages"]
    sizes = {lang: record[lang]["train_bytes"] for lang in ("de", "en")}
    shares = sampling_shares(sizes, 0.3)
    rates = repeat_rates(sizes, 0.3)
    lines = {"de": 0, "en": 0}
    for lang in lines:
        own = (corpus / f"train.{lang}.txt").read_text().splitlines()
        whole, frac = math.floor(rates[lang]), rates[lang] - math.floor(rates[lang])
        # the definition, recomputed: floor(r) copies, then the lines whose key unit is below frac
        lines[lang] = whole * len(own) + sum(key_unit(f"0:{lang}:{i}") < frac for i in range(len(own)))
        assert record[lang]["target_share"] == pytest.approx(shares[lang])
        # the written share is the target share up to whole lines
        assert abs(record[lang]["sampled_share"] - shares[lang]) < 0.05
    assert shares["en"] > sizes["en"] / sum(sizes.values())  # the small language is sampled up
    assert len((corpus / "train.txt").read_text().splitlines()) == lines["de"] + lines["en"]
    sections = json.loads((corpus / "corpus.json").read_text())["sections"]["train.txt"]
    assert sum(n for _, n in sections) == lines["de"] + lines["en"]
    # held-out text stays per language: no train line of a language is in its test file
    for lang in lines:
        test = set((corpus / f"test.target.{lang}.txt").read_text().splitlines())
        assert test and not test & set((corpus / f"train.{lang}.txt").read_text().splitlines())


def test_evaluation_per_language_and_byte_weighted_mean(run) -> None:
    plan, result = run
    for model in ("source_model", "adapted_step0", "adapted_trained"):
        for lang in ("de", "en"):
            assert f"{model}_on_{lang}" in result.scores
    for label, model in (("adapted_trained", "adapted_trained"), ("adapted_step0", "adapted_step0"),
                         ("source_model_on_target", "source_model")):
        metrics = {lang: json.loads((_folder(plan, f"evaluate.{model}_on_{lang}") / "metrics.json").read_text())
                   for lang in ("de", "en")}
        bits = sum(m["bpb"] * m["n_bytes"] for m in metrics.values())
        assert result.scores[label] == pytest.approx(bits / sum(m["n_bytes"] for m in metrics.values()))
    from transfer.publish.summary import RunSummary

    rows = {row.label: row for row in RunSummary.from_result(result).rows}
    assert rows["adapted_trained_on_en"].texts == "target language en"
    fertility = json.loads((_folder(plan, "tokenizer") / "fertility.json").read_text())["by_language"]["test"]
    assert set(fertility["languages"]) == {"de", "en"} and fertility["scripts"]["Latin"]["languages"] == ["de", "en"]
    notes = json.loads((_folder(plan, "init") / "init_report.json").read_text()).get("notes", [])
    assert any("several target languages ['de', 'en']" in note for note in notes)
    assert json.loads((Path(result.model_dir) / "adaptation.json").read_text())["config"]["target_language"] == "de_en"


def test_registry_record_lists_the_languages(run) -> None:
    from transfer.publish.registry_records import version_tags
    from transfer.publish.registry_store import record_from_result

    _, result = run
    record = record_from_result(result)
    assert record.target_languages == ["de", "en"]
    assert version_tags(record)["vt.target_languages"] == "de,en"
    assert "bpb.adapted_trained_on_en" in record.metrics


def test_refusals_name_the_language(tmp_path: Path, tiny_source: Path, corpora) -> None:
    from transfer.settings.validate import validate_config

    with pytest.raises(ValueError, match="'de' is listed twice"):
        config(tmp_path, tiny_source, corpora["de"], target_language=["de", "DE"])
    with pytest.raises(ValueError, match="'lang=path'"):
        config(tmp_path, tiny_source, corpora["de"], target_language=["de", "en"])  # a file without its language
    no_corpus = config(tmp_path, tiny_source, corpora["de"], target_language=["de", "xx"],
                       target_files=[f"de={corpora['de']}"])
    with pytest.raises(CorpusError, match="'xx'"):
        validate_config(no_corpus)
    stray = config(tmp_path, tiny_source, corpora["de"], target_language=["de", "sw"], target_bible=["e", "k"],
                   target_files=[])
    with pytest.raises(CorpusError, match="'k' \\(English\\)"):
        validate_config(stray)


def test_small_language_and_mixed_scripts_are_said(tmp_path: Path, tiny_source: Path, corpora) -> None:
    from transfer.settings.input_warnings import input_warnings

    tiny = tmp_path / "ru.txt"
    tiny.write_text("Привет мир.\n")
    cfg = config(tmp_path, tiny_source, corpora["de"], target_language=["de", "ru"],
                 target_files=[f"de={corpora['de']}", f"ru={tiny}"])
    found = {w.check: w.message for w in input_warnings(cfg)}
    assert "'ru' has 0." in found["small_language"] and "%" in found["small_language"]
    assert "Cyrillic: ru" in found["mixed_scripts"] and "Latin: de" in found["mixed_scripts"]


def test_cli_repeats_target_language(tmp_path: Path, tiny_source: Path, corpora) -> None:
    from flows.cli import app

    result = CliRunner().invoke(app, [
        "adapt", "--source-model", str(tiny_source), "--target-language", "de", "--target-language", "en",
        "--target-file", f"de={corpora['de']}", "--target-file", f"en={corpora['en']}", "--strategy", "mean",
        "--vocab-size", "350", "--cache-dir", str(tmp_path / "cache"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "tiny-llama-de_en-mean" in result.output and result.output.count("evaluate.") == 7


def test_languages_file_and_prefect_form_take_a_list(tmp_path: Path, tiny_source: Path, corpora) -> None:
    import yaml

    from flows.languages import load_languages
    from flows.parameters import AdaptParameters

    form = AdaptParameters(source_model=str(tiny_source), target_language=["de", "en"], strategy="mean",
                           target_files=[f"de={corpora['de']}", f"en={corpora['en']}"])
    assert form.target_languages == ["de", "en"]
    schema = AdaptParameters.model_json_schema()["properties"]["target_language"]
    assert any(option.get("type") == "array" for option in schema["anyOf"])
    path = tmp_path / "languages.yaml"
    path.write_text(yaml.safe_dump({
        "defaults": {"source_model": str(tiny_source), "source_bible": []},
        "languages": {"de_en": {"name": "German and English", "target_languages": ["de", "en"],
                                "corpus": {"files": [f"de={corpora['de']}", f"en={corpora['en']}"]},
                                "strategy": "mean", "vocab_size": 350}}}))
    params = load_languages(path).parameters("de_en")
    assert params.target_languages == ["de", "en"] and params.target_file_languages == ["de", "en"]
    path.write_text(yaml.safe_dump({
        "defaults": {"source_model": str(tiny_source), "source_bible": []},
        "languages": {"pair": {"name": "pair", "target_languages": ["de", "xx"],
                               "corpus": {"files": [f"de={corpora['de']}"]}, "strategy": "mean"}}}))
    with pytest.raises(Exception, match="'xx'"):
        load_languages(path)
    # a Hydra entry: the same list with options.hydra; its form plans one table and head per language
    from transfer.hydra.run import plan_hydra

    path.write_text(yaml.safe_dump({
        "defaults": {"source_model": str(tiny_source), "source_bible": [], "cache_dir": str(tmp_path / "cache"),
                     "output_dir": str(tmp_path / "models"), "eval_texts": 8, "dev_fraction": 0.1,
                     "test_fraction": 0.1},
        "languages": {"hydra_de_sv": {"name": "Hydra German and Swedish", "target_languages": ["de", "sv"],
                                      "corpus": {"files": [f"de={corpora['de']}", f"sv={corpora['en']}"]},
                                      "strategy": "mean", "vocab_size": 350, "options": {"hydra": True}}}}))
    params = load_languages(path).parameters("hydra_de_sv")
    assert params.hydra and params.target_languages == ["de", "sv"]
    plan = plan_hydra(params)
    assert list(plan.languages) == ["de", "sv"] and not plan.hydra.cached
    assert plan.languages["sv"].config.target_files == [str(corpora["en"])]


def test_one_language_reads_its_own_lang_equals_path_entries(tmp_path: Path) -> None:
    # the several-language spelling on a one-language run: its own language is dropped, a
    # file whose name holds '=' and exists stays, another language's entry is left to the
    # file check (which names it)
    from transfer.settings.config import AdaptConfig

    odd = tmp_path / "de=odd.txt"
    odd.write_text("Im Anfang war das Wort.\n")
    cfg = AdaptConfig(target_language="de", target_files=[f"DE={tmp_path / 'a.txt'}", str(odd), "sw=b.txt"],
                      parallel_files=[f"de={tmp_path / 'p.tsv'}"])
    assert cfg.target_files == [str(tmp_path / "a.txt"), str(odd), "sw=b.txt"]
    assert cfg.parallel_files == [str(tmp_path / "p.tsv")]
