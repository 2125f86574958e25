"""Every bad value is refused before the first stage (issue 16, item 1): strategy parameter
values (not only names), names that become folders or registry entries, and files whose
head is not what their name promises. Each refusal goes through ``run_adaptation`` (or the
surface that refuses it first: the config, the Prefect form, the languages file), names
the field or file, and leaves ``artifacts/`` byte-for-byte unchanged.

Before this, ``wechsel`` with ``k=0`` or ``ofa`` with ``rank=0`` passed validation and failed
only in the init stage, after the corpus, tokenizer and fastText stages had run.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import yaml

from tests.helpers import config
from tests.refusals import make_artifacts, refused
from transfer.init import check_strategy_params
from transfer.pipeline import run_adaptation
from transfer.settings.names import check_language_tag, check_path_component, safe_component

# (case, strategy, params, message pattern): each passed validation before item 1
STRATEGY_VALUES = [
    ("wechsel k=0", "wechsel", {"k": 0}, r"strategy 'wechsel'.*k \(number of neighbours\) must be an integer >= 1"),
    ("wechsel temperature=-1", "wechsel", {"temperature": -1.0}, r"'wechsel'.*temperature must be > 0"),
    ("wechsel k=True (a bool for an int)", "wechsel", {"k": True}, r"'wechsel'.*parameter k must be an integer"),
    ("wechsel temperature='0.1' (a string)", "wechsel", {"temperature": "0.1"},
     r"parameter temperature must be a number"),
    ("wechsel temperature=NaN", "wechsel", {"temperature": float("nan")}, r"temperature must be a finite number"),
    ("wechsel search='annoy'", "wechsel", {"search": "annoy"}, r"search='annoy' is unknown"),
    ("ofa rank=0", "ofa", {"rank": 0}, r"strategy 'ofa'.*rank must be an integer >= 1"),
    ("ofa k=inf", "ofa", {"k": float("inf")}, r"parameter k must be an integer"),
    ("trans_tokenization min_prob=2", "trans_tokenization", {"min_prob": 2.0}, r"0 <= min_prob < 1"),
    ("trans_tokenization fallback_k=0", "trans_tokenization", {"fallback_k": 0}, r"fallback_k .*>= 1"),
    ("trans_tokenization copy_symbols=1", "trans_tokenization", {"copy_symbols": 1},
     r"copy_symbols must be true or false"),
    ("focus top_k=0", "focus", {"top_k": 0}, r"focus needs top_k >= 1"),
    ("focus fasttext_dim=0", "focus", {"fasttext_dim": 0}, r"fasttext_dim >= 1"),
    ("mean covariance_scale=-1", "mean", {"covariance_scale": -1.0}, r"covariance_scale must be >= 0"),
    ("overlap fallback_covariance_scale=inf", "overlap", {"fallback_covariance_scale": float("inf")},
     r"fallback_covariance_scale must be a finite number"),
    ("mean unknown parameter k", "mean", {"k": 3}, r"does not take k"),
]


@pytest.mark.parametrize(("case", "strategy", "params", "pattern"), STRATEGY_VALUES, ids=[c[0] for c in STRATEGY_VALUES])
def test_strategy_values_are_refused_before_any_stage(case, strategy, params, pattern, tmp_path: Path,
                                                      tiny_source: Path, tiny_corpus: Path) -> None:
    artifacts = make_artifacts(tmp_path)
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy=strategy, strategy_params=params,
                  cache_dir=artifacts / "cache", output_dir=artifacts / "models")
    refused(case, "validate_config (run_adaptation) -> check_strategy_params", lambda: run_adaptation(cfg),
            pattern, artifacts)


def test_good_values_pass_and_ints_are_numbers() -> None:
    check_strategy_params("wechsel", {"k": 5, "temperature": 1, "search": "exact"})  # an int for a float
    check_strategy_params("ofa", {"rank": 8})
    check_strategy_params("trans_tokenization", {"min_prob": 0.0, "copy_symbols": False})
    check_strategy_params("focus", {"top_k": 1, "temperature": 0.5})


@pytest.mark.parametrize("tag", ["de", "sw", "gsw", "pt-BR", "zh-Hant", "sr-Latn-RS", "es-419", "de-CH-1901"])
def test_language_tags_are_accepted(tag: str) -> None:
    assert check_language_tag(tag) == tag


def test_language_tags_take_their_conventional_case() -> None:
    from transfer.settings.config import AdaptConfig
    from transfer.settings.names import canonical_language_tag

    assert [canonical_language_tag(t) for t in ("SW", "pt-br", "ZH-hant", "SR-latn-rs", "es-419", "DE-ch-1901")] \
        == ["sw", "pt-BR", "zh-Hant", "sr-Latn-RS", "es-419", "de-CH-1901"]
    # one language, one model and registry name however it is typed
    assert AdaptConfig(target_language="SW", strategy="mean").model_name() == \
        AdaptConfig(target_language="sw", strategy="mean").model_name()


@pytest.mark.parametrize("bad", ["../x", "de/x", "pt BR", "-de", "de\n", "de\x00", "..", "d", "de_DE",
                                 "x" * 40, "de-"])
def test_language_code_is_a_tag_never_a_path(bad: str) -> None:
    with pytest.raises(ValueError, match="not a language tag"):
        check_language_tag(bad)


@pytest.mark.parametrize("bad", ["a/b", "..", ".hidden", "-rf", "a b", "a\\b", "x" * 201, ""])
def test_path_components_are_safe(bad: str) -> None:
    with pytest.raises(ValueError, match="not a safe name"):
        check_path_component(bad)


def test_model_name_is_one_safe_component() -> None:
    from transfer.settings.config import AdaptConfig

    assert AdaptConfig(strategy="mean").model_name() == "smollm2-de-mean"  # sane names unchanged
    assert AdaptConfig(source_model="/models/my-llama", strategy="mean").model_name() == "my-llama-de-mean"
    weird = AdaptConfig(source_model="/models/my llama@v2:x", strategy="mean").model_name()
    assert check_path_component(weird) == weird == "my-llama-v2-x-de-mean"
    assert safe_component("../..") == "model"


NAME_CASES = [
    ("target_language='../x'", {"target_language": "../x"}, r"target_language.*'\.\./x' is not a language tag"),
    ("target_language='de/../../etc'", {"target_language": "de/../../etc"}, r"target_language.*not a language tag"),
    ("target_language='-de' (leading dash)", {"target_language": "-de"}, r"target_language.*not a language tag"),
    ("target_language with a NUL", {"target_language": "de\x00"}, r"target_language.*not a language tag"),
    ("parallel_source_language='en/..'", {"parallel_source_language": "en/.."},
     r"parallel_source_language.*not a language tag"),
    ("registered_model_prefix='../evil-'", {"registered_model_prefix": "../evil-"},
     r"registered_model_prefix.*not a safe name"),
    ("registered_model_prefix='a/b-'", {"registered_model_prefix": "a/b-"}, r"registered_model_prefix.*not a safe name"),
]


@pytest.mark.parametrize(("case", "values", "pattern"), NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_names_that_become_paths_are_refused_by_the_config(case, values, pattern, tmp_path: Path,
                                                           tiny_source: Path, tiny_corpus: Path) -> None:
    artifacts = make_artifacts(tmp_path)

    def run() -> None:
        run_adaptation(config(tmp_path, tiny_source, tiny_corpus, cache_dir=artifacts / "cache",
                               output_dir=artifacts / "models", **values))

    refused(case, "AdaptConfig validators", run, pattern, artifacts)


def test_the_prefect_form_refuses_a_path_as_language(tmp_path: Path) -> None:
    from flows.parameters import AdaptParameters

    artifacts = make_artifacts(tmp_path)
    refused("Prefect form target_language='../../x'", "flows.parameters.AdaptParameters (Prefect form)",
            lambda: AdaptParameters(target_language="../../x"), r"target_language.*not a language tag", artifacts)


def test_the_languages_file_refuses_a_path_as_language_key(tmp_path: Path) -> None:
    from flows.languages import LanguagesConfigError, load_languages

    artifacts = make_artifacts(tmp_path)
    path = tmp_path / "languages.yaml"
    path.write_text(yaml.safe_dump({"languages": {"../de": {"name": "German", "corpus": {"bible": ["e"]}}}}))
    refused("languages file key '../de'", "flows.languages.load_languages", lambda: load_languages(path),
            r"language key '\.\./de' is not a language tag", artifacts, LanguagesConfigError)
    path.write_text(yaml.safe_dump({"languages": {"de": {
        "name": "German", "corpus": {"bible": ["e"]},
        "parallel": {"files": ["x.tsv"], "source_language": "en/../../x"}}}}))
    refused("languages file parallel.source_language 'en/../../x'", "flows.languages.load_languages",
            lambda: load_languages(path), r"parallel.source_language .* is not a language tag", artifacts,
            LanguagesConfigError)


def _files(folder: Path) -> dict[str, Path]:
    """Corpus files that are not what their names promise."""
    folder.mkdir()
    files = {
        "binary.txt": b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4,
        "not-gzip.txt.gz": b"Im Anfang war das Wort.\n",
        "gzip-named-txt.txt": gzip.compress(b"Im Anfang war das Wort.\n"),
        "truncated.txt.gz": gzip.compress(("Im Anfang war das Wort.\n" * 50).encode())[:-20],
        "latin1.txt": "Größe und Übermaß\n".encode("latin-1"),
        "not-json.jsonl": b"Im Anfang war das Wort.\n",
        "wrong-field.jsonl": b'{"content": "Im Anfang war das Wort."}\n',
        "empty.txt": b"",
        "blank.txt": b"\n \n\t\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


FILE_CASES = [
    ("binary.txt", r"binary data \(a NUL byte at offset 7\)"),
    ("not-gzip.txt.gz", r"named \.gz but is not gzip data"),
    ("gzip-named-txt.txt", r"is gzip-compressed data; give it a \.gz name"),
    ("truncated.txt.gz", r"broken gzip data"),
    ("latin1.txt", r"line 1: not valid UTF-8 \(byte 0xf6"),
    ("not-json.jsonl", r"line 1: not valid JSON"),
    ("wrong-field.jsonl", r"line 1: no field 'text'.*content"),
    ("empty.txt", r"no text \(every file is empty or blank\)"),
    ("blank.txt", r"no text"),
]


@pytest.mark.parametrize(("name", "pattern"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_target_files_are_sniffed_before_any_stage(name, pattern, tmp_path: Path, tiny_source: Path,
                                                  tiny_corpus: Path) -> None:
    artifacts = make_artifacts(tmp_path)
    path = _files(tmp_path / "input")[name]
    cfg = config(tmp_path, tiny_source, path, cache_dir=artifacts / "cache", output_dir=artifacts / "models")
    message = refused(f"target file {name}", "validate_config (run_adaptation) -> _check_target_files",
                      lambda: run_adaptation(cfg), pattern, artifacts)
    assert name in message  # the file is named


def test_an_empty_file_beside_real_text_is_fine(tmp_path: Path, tiny_corpus: Path) -> None:
    from transfer.settings.validate import _check_target_files

    files = _files(tmp_path / "input")
    cfg = config(tmp_path, tmp_path, tiny_corpus, target_files=[str(tiny_corpus), str(files["empty.txt"])])
    _check_target_files(cfg)


def test_a_missing_target_folder_is_named(tmp_path: Path, tiny_source: Path) -> None:
    artifacts = make_artifacts(tmp_path)
    cfg = config(tmp_path, tiny_source, tmp_path / "nowhere", cache_dir=artifacts / "cache",
                  output_dir=artifacts / "models")
    refused("target file missing", "validate_config -> corpus_files", lambda: run_adaptation(cfg),
            r"nowhere.*no such file or folder", artifacts)


DICTIONARY_CASES = [
    ("binary", b"\x00\x01\x02binary", r"dictionary .*binary data"),
    ("prose", b"just some prose, not word pairs at all\nand more of it here\n", r"unknown dictionary format"),
    ("empty", b"", r"empty dictionary"),
]


@pytest.mark.parametrize(("kind", "content", "pattern"), DICTIONARY_CASES, ids=[c[0] for c in DICTIONARY_CASES])
def test_a_bad_dictionary_file_is_refused_before_fasttext(kind, content, pattern, tmp_path: Path,
                                                          tiny_source: Path, tiny_corpus: Path) -> None:
    artifacts = make_artifacts(tmp_path)
    path = tmp_path / "dict.txt"
    path.write_bytes(content)
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="wechsel", dictionary=str(path),
                  cache_dir=artifacts / "cache", output_dir=artifacts / "models")
    refused(f"dictionary file: {kind}",
            "validate_config -> _check_dictionary_file", lambda: run_adaptation(cfg), pattern, artifacts)


def test_a_binary_parallel_file_is_refused(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    artifacts = make_artifacts(tmp_path)
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"In the beginning\tIm Anfang\n\x00\x00\x00\x00")
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization", parallel_files=[str(path)],
                  cache_dir=artifacts / "cache", output_dir=artifacts / "models")
    refused("parallel file binary", "validate_config -> _check_parallel_files", lambda: run_adaptation(cfg),
            r"parallel file .*pairs\.tsv.*binary data", artifacts)


def test_the_ding_dictionary_must_be_installed_when_asked_for(monkeypatch, tmp_path: Path, tiny_source: Path,
                                                              tiny_corpus: Path) -> None:
    from transfer.vectors import dictionaries

    monkeypatch.setattr(dictionaries, "DING_DE_EN", tmp_path / "not-installed" / "de-en")
    artifacts = make_artifacts(tmp_path)
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="wechsel", dictionary="ding",
                  cache_dir=artifacts / "cache", output_dir=artifacts / "models")
    refused("dictionary='ding' without the Debian file", "validate_config", lambda: run_adaptation(cfg),
            r"dictionary 'ding' reads .*not-installed/de-en, which is missing: install the Debian package",
            artifacts)
