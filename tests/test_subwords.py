"""Token vectors by both WECHSEL methods on tiny tokenizers and a tiny fastText model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tiny import GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_unigram_tokenizer
from transfer.errors import VectorsError
from transfer.tokenizer.special_tokens import special_token_ids
from transfer.vectors.fasttext_training import load_trained, train_fasttext, write_training_text
from transfer.vectors.static_vectors import StaticVectors
from transfer.vectors.subwords import token_surfaces, token_vectors


@pytest.fixture(scope="module")
def german_vectors(tmp_path_factory) -> StaticVectors:
    from transfer.corpus.bible import read_texts

    folder = tmp_path_factory.mktemp("sub")
    write_training_text(read_texts("e", "train")[:1200] + GERMAN_SENTENCES * 5, folder / "de.txt")
    return load_trained(train_fasttext(folder / "de.txt", folder / "v", dim=16, epoch=2, min_count=2, bucket=20_000))


def test_ngram_method_byte_level(german_vectors: StaticVectors):
    tok = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 400)
    result = token_vectors(tok, german_vectors, method="ngram")
    vocab = tok.get_vocab()
    assert result.matrix.shape == (len(tok), 16) and result.has_vector.shape == (len(tok),)
    for special in special_token_ids(tok):
        assert not result.has_vector[special]
    # "Ġ" alone (a space) and a lone continuation byte of "ü" ("Ã" + "¼" pieces) get none
    assert not result.has_vector[vocab["Ġ"]]
    assert not result.has_vector[vocab["¼"]]
    # a word-initial token: marker stripped, vector of the bare word
    gott = vocab.get("ĠGott")
    assert gott is not None and result.has_vector[gott]
    # the word's own float32 row, maybe through a float64 copy: exact up to 1 ulp of |x| ~ 1
    np.testing.assert_allclose(result.matrix[gott], german_vectors.vector("Gott"), atol=1e-6)
    assert result.coverage["method"] == "ngram"
    assert result.coverage["with_vector"] == int(result.has_vector.sum()) > 100


def test_ngram_method_byte_fallback_tokens_get_none(german_vectors: StaticVectors):
    tok = tiny_unigram_tokenizer(GERMAN_SENTENCES, 200)
    surfaces = token_surfaces(tok)
    vocab = tok.get_vocab()
    assert surfaces[vocab["<0x0A>"]] is None and surfaces[vocab["<unk>"]] is None
    result = token_vectors(tok, german_vectors, method="ngram")
    assert not result.has_vector[vocab["<0x41>"]]
    word = next(t for t in vocab if t.startswith("▁") and len(t) > 3)
    assert surfaces[vocab[word]] == word[1:]
    assert result.has_vector[vocab[word]]


def test_word_average_is_the_weighted_mean_and_batching_does_not_matter(german_vectors: StaticVectors):
    tok = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 400)
    words = german_vectors.words[:300]
    freqs = list(np.linspace(5.0, 1.0, len(words)))
    batched = token_vectors(tok, german_vectors, method="word_average", words=words, word_frequencies=freqs)
    small = token_vectors(tok, german_vectors, method="word_average", words=words, word_frequencies=freqs,
                          batch_size=7)
    # the same weighted sums in other batches: summation order, a few float32 ulps of |x| ~ 1
    np.testing.assert_allclose(batched.matrix, small.matrix, atol=1e-6)
    np.testing.assert_array_equal(batched.has_vector, small.has_vector)
    # recompute one token by hand
    tid = tok.get_vocab()["ĠGott"] if "ĠGott" in tok.get_vocab() else int(np.flatnonzero(batched.has_vector)[0])
    total, weight = np.zeros(16), 0.0
    for w, f in zip(words, freqs):
        if tid in set(tok(" " + w, add_special_tokens=False)["input_ids"]):
            total += f * german_vectors.vector(w)
            weight += f
    # float32 rows against this float64 sum: ~1e-7 relative
    np.testing.assert_allclose(batched.matrix[tid], total / weight, atol=1e-5)
    assert batched.coverage["words_with_vector"] == 300


def test_word_average_tokenizes_in_batches(german_vectors: StaticVectors):
    tok = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 400)
    calls: list[int] = []
    original = type(tok).__call__

    class Counting(type(tok)):  # the real tokenizer, counting its batched calls
        def __call__(self, text, *args, **kwargs):
            calls.append(len(text) if isinstance(text, list) else 1)
            return original(self, text, *args, **kwargs)

    tok.__class__ = Counting
    token_vectors(tok, german_vectors, method="word_average", words=german_vectors.words[:250], batch_size=100)
    assert calls == [100, 100, 50]


def test_token_vector_bad_input(german_vectors: StaticVectors):
    tok = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 300)
    plain = StaticVectors(["Gott"], np.ones((1, 4)), source="plain.vec")
    with pytest.raises(VectorsError, match="plain.vec: method 'ngram' needs fastText"):
        token_vectors(tok, plain, method="ngram")
    with pytest.raises(VectorsError, match="unknown token-vector method"):
        token_vectors(tok, german_vectors, method="bpe")  # type: ignore[arg-type]
    with pytest.raises(VectorsError, match="word_frequencies has 1 entries for 2 words"):
        token_vectors(tok, german_vectors, method="word_average", words=["a", "b"], word_frequencies=[1.0])
    # plain word vectors still work for word_average
    assert token_vectors(tok, plain, method="word_average").has_vector.sum() >= 1


def test_cwd_independent(tmp_path: Path, monkeypatch, german_vectors: StaticVectors):
    """Training starts a child process; it must find the package from any directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("\n".join(" ".join(s.split()) for s in GERMAN_SENTENCES * 40))
    out = train_fasttext(tmp_path / "c.txt", tmp_path / "v", dim=8, epoch=1, min_count=1, bucket=20_000)
    assert len(load_trained(out)) > 10
