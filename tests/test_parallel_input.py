"""The user's own parallel text (``AdaptConfig.parallel_files``) as a first-class input: a
Moses pair, a TSV and a JSONL file each feed trans-tokenization through a tiny pipeline
run and dictionary induction, split by the corpus stage like every other text; a bad file
is refused before any stage runs, naming the file and the line, and leaves no cache entry.

The parallel text is real: the first 300 train verse pairs of the King James Version and
the Elberfelder Bible, written in each format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import config, write_tsv
from transfer.corpus.bible import verse_pairs
from transfer.corpus.splits import SplitFractions, pair_key, split_of
from transfer.corpus.stage import PARALLEL_TRAIN, corpus_spec, train_pairs
from transfer.engine.cache import StageCache, StageOutput
from transfer.engine.stages import execute
from transfer.errors import VocabTransferError
from transfer.pipeline import run_adaptation
from transfer.settings.validate import validate_config
from transfer.vectors.stage import align_stage_spec, induced_parallel_pairs, vector_specs

N_PAIRS = 300


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    return [(s, t) for _, s, t in verse_pairs("k", "e", "train")[:N_PAIRS]]


def write_moses(folder: Path, pairs: list[tuple[str, str]], name: str = "bible.en-de") -> str:
    prefix = folder / name
    Path(f"{prefix}.en").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    Path(f"{prefix}.de").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return str(prefix)


def write_jsonl(folder: Path, pairs: list[tuple[str, str]], fields: tuple[str, str] = ("en", "de")) -> str:
    path = folder / "bible.jsonl"
    path.write_text("".join(json.dumps({fields[0]: s, fields[1]: t, "id": i}) + "\n"
                            for i, (s, t) in enumerate(pairs)), encoding="utf-8")
    return str(path)


WRITERS = {"moses": write_moses, "tsv": write_tsv, "jsonl": write_jsonl}


def _train(pairs: list[tuple[str, str]], fractions: SplitFractions) -> list[tuple[str, str]]:
    return [(s, t) for s, t in pairs if split_of(pair_key(s, t), fractions) == "train"]


@pytest.mark.parametrize("form", sorted(WRITERS))
def test_parallel_file_feeds_trans_tokenization(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                pairs, form: str) -> None:
    entry = WRITERS[form](tmp_path, pairs)
    # no Bible at all: without the file this strategy is refused (test_pipeline_strategies)
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization", parallel_files=[entry],
                  train_steps=0, strategy_params={"align_rel_iterations": 0.1})  # a short eflomal run
    result = run_adaptation(cfg)
    expected = _train(pairs, SplitFractions(cfg.dev_fraction, cfg.test_fraction))
    assert 0 < len(expected) < len(pairs)  # held-out pairs exist and stay out
    corpus = StageCache(cfg.cache_dir).path("corpus", result.stage_keys["corpus"])
    assert train_pairs(corpus) == expected
    assert any(note.startswith(f"aligned {len(expected)} sentence pairs") for note in result.init_report["notes"])
    assert result.init_report["counts"].get("computed", 0) > 20, result.init_report["counts"]


def test_parallel_file_replaces_the_bible_for_dictionary_induction(tmp_path: Path, pairs) -> None:
    fields = ("source_text", "target_text")
    entry = write_jsonl(tmp_path, pairs[:-1] + [("In the\tbeginning  God", "Im\nAnfang\tschuf Gott")], fields)
    cfg = config(tmp_path, tmp_path, tmp_path, target_files=[], target_bible=["e"], source_train_bible=["k"],
                  strategy="wechsel", dictionary="induced", parallel_files=[entry], parallel_fields=list(fields),
                  parallel_max_pairs=200)
    cache = StageCache(cfg.cache_dir)
    corpus, _ = execute(corpus_spec(cfg), cache)
    source, target = (StageOutput(s.stage, s.key, cache.path(s.stage, s.key)) for s in vector_specs(cfg, corpus))
    align = align_stage_spec(cfg, source, target, corpus)
    normalized = pairs[:-1] + [("In the beginning God", "Im Anfang schuf Gott")]  # whitespace inside a side
    fractions = SplitFractions(cfg.dev_fraction, cfg.test_fraction)
    assert induced_parallel_pairs(align) == _train(normalized, fractions)[:200]
    bible = [(s, t) for _, s, t in verse_pairs("k", "e", "train", fractions=fractions)]
    assert not set(induced_parallel_pairs(align)) - set(normalized)  # none of the Bible's other verses
    assert len(bible) > len(pairs)
    # the file's content is in the keys: an edited file is a new corpus and a new align stage
    Path(entry).write_text(Path(entry).read_text(encoding="utf-8").replace("God", "GOD"), encoding="utf-8")
    assert corpus_spec(cfg).key != corpus.key


def _bad(tmp_path: Path, pairs, form: str, breakage: str) -> tuple[str, dict]:
    """A broken parallel corpus: (its entry, extra config) and the message it must get."""
    settings: dict = {}
    if form == "moses":
        entry = write_moses(tmp_path, pairs)
        if breakage == "mismatch":
            Path(f"{entry}.de").write_text("".join(t + "\n" for _, t in pairs[:-1]), encoding="utf-8")
        elif breakage == "empty":
            Path(f"{entry}.en").write_text("", encoding="utf-8")
            Path(f"{entry}.de").write_text("", encoding="utf-8")
        elif breakage == "utf8":
            Path(f"{entry}.de").write_bytes(Path(f"{entry}.de").read_bytes().replace(b"Gott", b"G\xf6tt", 1))
        return entry, settings
    if form == "tsv":
        rows = [f"{s}\t{t}" for s, t in pairs]
        if breakage == "fields":
            rows[4] += "\textra"
        elif breakage == "empty_side":
            rows[4] = pairs[4][0] + "\t  "
        elif breakage == "overlong":
            rows[4] = "x" * 10_001 + "\t" + pairs[4][1]
        elif breakage == "setting":
            settings["parallel_max_line_chars"] = 20
        path = tmp_path / "bad.tsv"
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        return str(path), settings
    rows = [json.dumps({"en": s, "de": t}) for s, t in pairs]
    rows[4] = json.dumps({"en": pairs[4][0], "german": pairs[4][1]})
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path), settings


BAD = [
    ("moses", "mismatch", r"bible\.en-de\.en', line 300: line-count mismatch"),
    ("moses", "empty", r"bible\.en-de\.en': empty"),
    ("moses", "utf8", r"bible\.en-de\.de', line \d+: not valid UTF-8"),
    ("tsv", "fields", r"bad\.tsv', line 5: expected 2 tab-separated fields .* got 3"),
    ("tsv", "empty_side", r"bad\.tsv', line 5: the target side is empty"),
    ("tsv", "overlong", r"bad\.tsv', line 5: the source side has 10001 characters, over the limit of 10000"),
    ("tsv", "setting", r"bad\.tsv', line 1: the source side has \d+ characters, over the limit of 20"),
    ("jsonl", "field", r"bad\.jsonl', line 5: no field 'de'"),
]


@pytest.mark.parametrize(("form", "breakage", "message"), BAD, ids=[f"{f}-{b}" for f, b, _ in BAD])
def test_bad_parallel_file_is_refused_naming_file_and_line(tmp_path: Path, tiny_source: Path, tiny_corpus: Path,
                                                           pairs, form: str, breakage: str, message: str) -> None:
    entry, settings = _bad(tmp_path, pairs, form, breakage)
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization", parallel_files=[entry],
                  **settings)
    with pytest.raises(VocabTransferError, match=message):
        run_adaptation(cfg)
    assert not list(cfg.cache_dir.glob("*/*"))  # refused before any stage


def test_missing_parallel_file_names_what_was_looked_for(tmp_path: Path, tiny_source: Path, tiny_corpus: Path) -> None:
    cfg = config(tmp_path, tiny_source, tiny_corpus, parallel_files=[str(tmp_path / "europarl")])
    with pytest.raises(VocabTransferError, match=r"europarl.*europarl\.en and .*europarl\.de do not exist"):
        validate_config(cfg)


def test_a_bad_line_past_the_checked_head_fails_the_corpus_stage_without_an_entry(
        tmp_path: Path, tiny_source: Path, tiny_corpus: Path, pairs) -> None:
    rows = [f"{s}\t{t}" for s, t in pairs] * 5  # 1500 lines: validation reads the first 1000
    rows[1200] = pairs[0][0]
    path = tmp_path / "late.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = config(tmp_path, tiny_source, tiny_corpus, strategy="trans_tokenization", parallel_files=[str(path)])
    validate_config(cfg)
    with pytest.raises(VocabTransferError, match=r"late\.tsv', line 1201: expected 2 tab-separated fields"):
        run_adaptation(cfg)
    spec = corpus_spec(cfg)
    cache = StageCache(cfg.cache_dir)
    assert not cache.is_complete("corpus", spec.key)
    assert not [p for p in cache.path("corpus", spec.key).parent.iterdir()]
    assert not (cache.path("corpus", spec.key) / PARALLEL_TRAIN).exists()


def test_parallel_files_reach_the_form_the_cli_and_the_languages_file(tmp_path: Path, tiny_source: Path,
                                                                     pairs) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.languages import LanguagesFile
    from flows.parameters import AdaptParameters

    assert "parallel_files" in AdaptParameters.model_json_schema()["properties"]
    entry = write_tsv(tmp_path, pairs)
    languages = LanguagesFile.model_validate({"languages": {"sw": {
        "name": "Swahili", "corpus": {"bible": ["h"]}, "dictionary": {"kind": "induced"},
        "parallel": {"files": [entry], "source_language": "en"}}}})
    params = languages.parameters("sw")
    assert params.parallel_files == [entry] and params.parallel_source_language == "en"
    with pytest.raises(ValueError, match="parallel needs files, or source_bible and target_bible"):
        LanguagesFile.model_validate({"languages": {"sw": {"name": "Swahili", "corpus": {"bible": ["h"]},
                                                           "parallel": {"source_bible": "k"}}}})
    common = ["adapt", "--source-model", str(tiny_source), "--target-bible", "e", "--strategy",
              "trans_tokenization", "--cache-dir", str(tmp_path / "cache"), "--dry-run"]
    out = CliRunner().invoke(app, [*common, "--parallel-file", entry])
    assert out.exit_code == 0, out.output
    bad = CliRunner().invoke(app, [*common, "--parallel-file", str(tmp_path / "nope.tsv")])
    assert bad.exit_code == 2 and "nope.tsv" in bad.output.replace("\n", ""), bad.output
