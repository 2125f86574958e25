"""Unicode normalization (issue #31): one form (default NFC) for every text a run reads, so
a corpus written decomposed (NFD, as macOS exports do) trains and scores like the same
text composed; the form is in the corpus key and the manifest, and a mostly-NFD or mixed
corpus is noted."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from tests.helpers import config
from tests.tiny import GERMAN_SENTENCES
from transfer.corpus.normalization import normalization_note, normalizer
from transfer.corpus.stage import corpus_spec
from transfer.engine.cache import StageCache
from transfer.engine.stages import execute

UMLAUT_SENTENCES = [s + " Über die Brücke gehen Mädchen und Jungen." for s in GERMAN_SENTENCES]


def _corpus(path: Path, form: str) -> Path:
    lines = [f"{s} ({i})" for i in range(6) for s in UMLAUT_SENTENCES]
    path.write_text("\n".join(unicodedata.normalize(form, line) for line in lines) + "\n", encoding="utf-8")
    return path


def test_nfd_corpus_becomes_the_nfc_corpus(tmp_path: Path, tiny_source: Path) -> None:
    nfc = _corpus(tmp_path / "nfc.txt", "NFC")
    nfd = _corpus(tmp_path / "nfd.txt", "NFD")
    assert nfc.read_bytes() != nfd.read_bytes()
    cache = StageCache(tmp_path / "cache")
    built = {}
    for name, path, form in (("nfc", nfc, "NFC"), ("nfd", nfd, "NFC"), ("kept", nfd, "none")):
        spec = corpus_spec(config(tmp_path, tiny_source, path, normalization=form))
        built[name] = execute(spec, cache)[0]
    for split in ("train.txt", "dev.txt", "test.txt", "test.target.txt"):
        assert built["nfd"].file(split).read_bytes() == built["nfc"].file(split).read_bytes(), split
    assert built["kept"].file("train.txt").read_bytes() != built["nfc"].file("train.txt").read_bytes()
    # the form is part of what the corpus stage computes, hence of its key
    keys = {form: corpus_spec(config(tmp_path, tiny_source, nfc, normalization=form)).key for form in ("NFC", "none")}
    assert keys["NFC"] != keys["none"]


def test_nfd_and_nfc_runs_score_alike(tmp_path: Path, tiny_source: Path) -> None:
    from transfer.pipeline import run_adaptation
    from transfer.publish.manifest import MANIFEST_FILE, read_manifest

    results = {}
    for form in ("NFC", "NFD"):
        cfg = config(tmp_path / form, tiny_source, _corpus(tmp_path / f"{form}.txt", form), train_steps=0,
                     eval_texts=4)
        results[form] = run_adaptation(cfg)
    assert results["NFD"].scores == results["NFC"].scores  # the same text, the same numbers
    manifest = read_manifest(Path(results["NFD"].model_dir) / MANIFEST_FILE)
    assert manifest.config["normalization"] == "NFC"


def test_notes_say_what_the_corpus_holds() -> None:
    composed = [unicodedata.normalize("NFC", s) for s in UMLAUT_SENTENCES]
    decomposed = [unicodedata.normalize("NFD", s) for s in UMLAUT_SENTENCES]
    assert normalization_note("NFC", composed) is None
    assert normalization_note("NFC", ["plain ascii only"]) is None
    assert "mostly decomposed" in normalization_note("NFC", decomposed)
    mixed = composed[:6] + decomposed[:2]
    assert "mixes Unicode forms (25%" in normalization_note("NFC", mixed)
    assert "normalization is 'none'" in normalization_note("none", mixed)


def test_normalizer_forms() -> None:
    text = unicodedata.normalize("NFD", "Mädchen ﬁ")
    assert normalizer("NFC")(text) == "Mädchen ﬁ"
    assert normalizer("NFKC")(text) == "Mädchen fi"
    assert normalizer("none")(text) == text
    with pytest.raises(ValueError, match="NFC, NFKC"):
        normalizer("nfc-ish")
