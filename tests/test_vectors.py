"""Static vectors: fastText training (threads=1, reproducible), n-gram composition exactly
as fastText computes it, compact storage, word2vec/spaCy loading and bad input."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transfer.errors import VectorsError
from transfer.vectors.compact_vectors import save_vectors
from transfer.vectors.fasttext_training import load_trained, train_fasttext, write_training_text
from transfer.vectors.static_vectors import NgramTable, StaticVectors, char_ngrams, tokenize_words
from transfer.vectors.vector_formats import _murmurhash64a, load_vectors

FT = {"dim": 16, "epoch": 2, "min_count": 2, "bucket": 20_000, "threads": 1, "seed": 0}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from transfer.corpus.bible import read_texts

    path = tmp_path_factory.mktemp("ft") / "de.txt"
    write_training_text(read_texts("e", "train")[:1200], path)
    return path


@pytest.fixture(scope="module")
def trained(corpus: Path) -> Path:
    return train_fasttext(corpus, corpus.parent / "vectors", **FT)


@pytest.fixture(scope="module")
def fasttext_bin(corpus: Path) -> Path:
    """The same model saved by fastText itself (trained in a fresh process, as ours)."""
    out = corpus.parent / "model.bin"
    settings = {"dim": 16, "epoch": 2, "minCount": 2, "bucket": 20_000, "thread": 1, "seed": 0,
                "model": "skipgram", "minn": 3, "maxn": 6, "lr": 0.05, "ws": 5, "neg": 5}
    code = ("import sys, json; from pathlib import Path; from transfer.vectors.fasttext_training import _train_model; "
            "_train_model(Path(sys.argv[1]), json.loads(sys.argv[2])).save_model(sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(corpus), json.dumps(settings), str(out)], check=True)
    return out


def test_tokenize_words_keeps_umlauts_and_drops_punctuation():
    assert tokenize_words("Und Gott sprach: Es werde Licht! Über's Land.") == [
        "Und", "Gott", "sprach", "Es", "werde", "Licht", "Über's", "Land"]
    assert tokenize_words("Straße", lowercase=True) == ["straße"]


def test_char_ngrams_follow_fasttext():
    assert char_ngrams("ab", 3, 4) == ["<ab", "<ab>", "ab>"]


def test_compact_vectors_equal_fasttext_bin(trained: Path, fasttext_bin: Path):
    import fasttext

    ours, full = load_trained(trained), load_vectors(fasttext_bin)
    reference = fasttext.load_model(str(fasttext_bin))
    assert ours.words == full.words
    np.testing.assert_array_equal(ours.matrix, full.matrix)  # threads=1: reproducible
    for word in ["Gott", "Himmelreich", "Straßenbahn", "xyzq", "Königin"]:
        expected = reference.get_word_vector(word)
        # fastText's float32 mean of ~20 n-gram rows vs ours: summation order, ~1e-7 on |x| ~ 1
        # (measured <= 6e-8)
        np.testing.assert_allclose(full.vector(word), expected, atol=1e-6)
        np.testing.assert_allclose(ours.vector(word), expected, atol=1e-6)  # compact table
    # the compact folder holds fewer rows than fastText's input matrix
    stored = sum(f.stat().st_size for f in trained.iterdir())
    assert stored < (len(full) + 20_000) * 16 * 4
    assert ours.ngrams is not None and len(ours.ngrams.ids) < 20_000


def test_transformed_applies_to_later_compositions(trained: Path):
    vectors = load_trained(trained)
    rng = np.random.default_rng(0)
    W = np.linalg.qr(rng.normal(size=(16, 16)))[0].astype(np.float32)
    moved = vectors.transformed(W)
    # float32 products over 16 terms of |x| < 2: <= 16 * 6e-8 * 2 = 2e-6
    np.testing.assert_allclose(moved.vector("Gott"), vectors.vector("Gott") @ W, atol=1e-5)
    np.testing.assert_allclose(moved.ngram_vector("Gotteshaus"), vectors.ngram_vector("Gotteshaus") @ W, atol=1e-5)
    # a saved transformed set composes the same way after loading
    again = load_trained(save_vectors(moved, trained.parent / "moved"))
    # the same float32 composition of the same saved rows: ~1e-7
    np.testing.assert_allclose(again.ngram_vector("Gotteshaus"), moved.ngram_vector("Gotteshaus"), atol=1e-6)


def test_all_zero_composition_is_no_vector():
    table = NgramTable(3, 3, 10, np.zeros((10, 4), np.float32))
    vectors = StaticVectors(["a"], np.zeros((1, 4), np.float32), table)
    assert vectors.ngram_vector("haus") is None
    assert vectors.vector("a") is None
    assert StaticVectors(["a"], np.ones((1, 4))).vector("b") is None  # no n-grams: OOV has none


def test_word2vec_text_and_binary_roundtrip(tmp_path: Path):
    words = ["haus", "Straße", "gott"]
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    text = tmp_path / "v.vec"
    text.write_text("3 4\n" + "".join(f"{w} " + " ".join(f"{x:.8f}" for x in row) + "\n"
                                       for w, row in zip(words, matrix)), encoding="utf-8")
    binary = tmp_path / "v.bin"
    with open(binary, "wb") as handle:
        handle.write(b"3 4\n")
        handle.writelines(w.encode() + b" " + row.astype("<f4").tobytes() + b"\n" for w, row in zip(words, matrix))
    for path in (text, binary):
        loaded = load_vectors(path)
        assert loaded.words == words
        # 8 decimals in the text (5e-9), exact bits in the binary; float32 of |x| < 2: 1.2e-7
        np.testing.assert_allclose(loaded.matrix, matrix, atol=1e-6)
        assert loaded.vector("Straße") is not None and loaded.vector("Stra") is None


def test_spacy_vector_table(tmp_path: Path):
    import msgpack

    # spaCy's documented hash of "coffee"
    assert _murmurhash64a(b"coffee") == 3197928453018144401
    folder = tmp_path / "vocab"
    folder.mkdir()
    strings = ["coffee", "tea", "unused"]
    table = np.eye(3, 5, dtype=np.float32)
    np.save(folder / "vectors", table)
    (folder / "vectors").with_suffix(".npy").rename(folder / "vectors")
    keys = {_murmurhash64a(b"tea"): 0, _murmurhash64a(b"coffee"): 1}
    (folder / "key2row").write_bytes(msgpack.packb(keys))
    (folder / "strings.json").write_text(json.dumps(strings))
    loaded = load_vectors(tmp_path)  # a pipeline folder with vocab/
    assert loaded.words == ["tea", "coffee"]
    np.testing.assert_array_equal(loaded.vector("coffee"), table[1])


def test_bad_vector_files(tmp_path: Path):
    mismatch = tmp_path / "mismatch.vec"
    mismatch.write_text("3 2\na 1 2\nb 3 4\n")
    with pytest.raises(VectorsError, match="header says 3 vectors but the file has 2"):
        load_vectors(mismatch)
    wrong_dim = tmp_path / "dim.vec"
    wrong_dim.write_text("2 3\na 1 2 3\nb 3 4\n")
    with pytest.raises(VectorsError, match="line 3 has 2 values, expected 3"):
        load_vectors(wrong_dim)
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(b"2 4\nhaus " + np.ones(4, "<f4").tobytes() + b"\ngott " + b"\x00" * 5)
    with pytest.raises(VectorsError, match="truncated"):
        load_vectors(truncated)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("straße 1 2\n".encode("latin-1"))
    with pytest.raises(VectorsError, match="not UTF-8"):
        load_vectors(latin1)
    pickled = tmp_path / "vectors.kv"
    pickled.write_bytes(pickle.dumps({"not": "loaded"}))
    with pytest.raises(VectorsError, match="save_word2vec_format"):
        load_vectors(pickled)
    disguised = tmp_path / "vectors.vec"
    disguised.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(VectorsError, match="pickles"):
        load_vectors(disguised)
    with pytest.raises(VectorsError, match="no such"):
        load_vectors(tmp_path / "missing.vec")


def test_truncated_fasttext_bin(fasttext_bin: Path, tmp_path: Path):
    cut = tmp_path / "cut.bin"
    cut.write_bytes(fasttext_bin.read_bytes()[: 5000])
    with pytest.raises(VectorsError, match="cut.bin"):
        load_vectors(cut)


def test_training_refuses_bad_input_and_leaves_nothing(tmp_path: Path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(VectorsError, match="missing or empty"):
        train_fasttext(empty, tmp_path / "out")
    rare = tmp_path / "rare.txt"
    rare.write_text("eins zwei drei\n")
    with pytest.raises(VectorsError, match="fastText training failed"):
        train_fasttext(rare, tmp_path / "out2", min_count=5, bucket=1000)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
