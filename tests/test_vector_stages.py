"""The "fasttext" and "align" stages through the one cache: built once, then cached; a
failing stage leaves no cache entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transfer.corpus.stage import corpus_spec
from transfer.engine.cache import StageCache
from transfer.engine.stages import execute
from transfer.errors import AlignmentError, DictionaryError
from transfer.settings.config import AdaptConfig
from transfer.vectors.stage import align_spec, fasttext_spec, load_aligned

SMALL = {"dim": 16, "epoch": 2, "min_count": 3, "bucket": 20_000, "max_verses": 2500}


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    cache = StageCache(tmp_path_factory.mktemp("cache"))
    cfg = AdaptConfig(target_bible=["e"], source_bible=[], source_train_bible=["k"])
    corpus, _ = execute(corpus_spec(cfg), cache)
    en, cached_en = execute(fasttext_spec(corpus, "source", **SMALL), cache)
    de, cached_de = execute(fasttext_spec(corpus, "target", **SMALL), cache)
    assert not cached_en and not cached_de
    return cache, en, de, corpus


def test_fasttext_stage_is_cached(stages):
    cache, en, _, corpus = stages
    again, cached = execute(fasttext_spec(corpus, "source", **SMALL), cache)
    assert cached and again.path == en.path
    assert (en.path / "vectors" / "vectors.safetensors").exists()
    assert not (en.path / "train.tok.txt").exists()  # the tokenized corpus is not kept
    other = fasttext_spec(corpus, "source", **{**SMALL, "dim": 8})
    assert other.key != fasttext_spec(corpus, "source", **SMALL).key


def test_align_stage_with_file_and_induced_dictionaries(stages, tmp_path: Path):
    cache, en, de, corpus = stages
    # a MUSE dictionary file (German first, as Ding: reversed for an English source)
    muse = tmp_path / "de-en.txt"
    muse.write_text("Gott God\nHerr LORD\nKönig king\nWasser water\nErde earth\nHimmel heaven\n"
                    "Sohn son\nVolk people\nHand hand\nTag day\nHaus house\nLand land\n", encoding="utf-8")
    spec = align_spec(en, de, dictionaries="file+induced", dictionary_path=muse, corpus=corpus,
                      max_parallel=300, refine_iterations=1)
    out, cached = execute(spec, cache)
    assert not cached
    source, target, report = load_aligned(out)
    assert report["file_dictionary"]["both_covered"] >= 8
    assert report["induced_dictionary"]["pairs"] > 20
    # the aligned source, reloaded, composes n-gram vectors in the shared space
    god, gott = source.vector("Godhead"), target.vector("Gottheit")
    assert god is not None and gott is not None and god.shape == gott.shape
    assert abs(np.linalg.norm(source.vector("God")) - 1) < 1e-4  # float32 unit rows: ~1e-7
    assert execute(spec, cache)[1]


def test_align_stage_bad_input_leaves_no_entry(stages, tmp_path: Path):
    cache, en, de, _ = stages
    useless = tmp_path / "useless.txt"
    useless.write_text("Quark quark\nZwieback rusk\n")
    spec = align_spec(en, de, dictionary_path=useless)
    with pytest.raises(AlignmentError, match="none of the 2 dictionary pairs"):
        execute(spec, cache)
    assert not cache.path("align", spec.key).exists()
    assert not [p for p in cache.path("align", spec.key).parent.iterdir() if p.name.startswith(f".{spec.key}")]
    with pytest.raises(DictionaryError, match="needs dictionary_path"):
        align_spec(en, de, dictionaries="file")
    with pytest.raises(DictionaryError, match="does not exist"):
        align_spec(en, de, dictionary_path=tmp_path / "missing.txt")
