"""One rule for static token vectors, whatever form the resources give them in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.tiny import BareTokenVectors, random_token_vectors
from transfer.errors import StrategyResourceError, TokenVectorError
from transfer.init import SourceEmbeddings, StrategyInputs, StrategyResources
from transfer.init.vector_resources import has_token_vectors, resolve_token_vectors


def _inputs(source_tok, target_tok, n_rows: int, **resources) -> StrategyInputs:
    return StrategyInputs(
        source=SourceEmbeddings(torch.randn(n_rows, 8)),
        source_tokenizer=source_tok,
        target_tokenizer=target_tok,
        resources=StrategyResources(**resources),
    )


def test_every_form_gives_the_same_pair(source_tok, target_tok):
    n_s, n_t = len(source_tok), len(target_tok)
    s_vec, t_vec = random_token_vectors(n_s, 6, 1, missing=[3]), random_token_vectors(n_t, 6, 2, missing=[4])
    forms = [
        {"source_token_vectors": s_vec, "target_token_vectors": t_vec},
        {"source_token_vectors": s_vec.matrix, "target_token_vectors": t_vec.matrix},  # zero rows = none
        {"aligned_vectors": (s_vec.matrix, t_vec.matrix)},
        {"aligned_vectors": {"source": torch.from_numpy(s_vec.matrix), "target": t_vec.matrix}},
    ]
    pairs = [resolve_token_vectors(_inputs(source_tok, target_tok, n_s, **form), n_s, n_t) for form in forms]
    assert all(has_token_vectors(StrategyResources(**form)) for form in forms)
    assert not has_token_vectors(StrategyResources(parallel=[]))
    for pair in pairs:
        torch.testing.assert_close(pair.source, pairs[0].source)
        torch.testing.assert_close(pair.target, pairs[0].target)
        assert pair.source_has.tolist() == pairs[0].source_has.tolist()
        assert pair.target_has.tolist() == pairs[0].target_has.tolist()
    assert not pairs[0].source_has[3] and not pairs[0].target_has[4]
    assert int(pairs[0].source_has.sum()) == n_s - 1
    assert pairs[1].method == "given"


def test_padded_embedding_rows_have_no_vector(source_tok, target_tok):
    """Models pad their embedding matrix past the tokenizer (e.g. to a multiple of 64): the
    extra rows get no vector and are never neighbours."""
    n_s, n_t = len(source_tok), len(target_tok)
    padded = n_s + 13
    pair = resolve_token_vectors(
        _inputs(source_tok, target_tok, padded, aligned_vectors=(np.ones((n_s, 4)), np.ones((n_t, 4)))),
        padded, n_t,
    )
    assert pair.source.shape == (padded, 4) and pair.source_has.tolist() == [True] * n_s + [False] * 13
    # vectors with one row per embedding row are taken as they are
    full = resolve_token_vectors(
        _inputs(source_tok, target_tok, padded, aligned_vectors=(np.ones((padded, 4)), np.ones((n_t, 4)))),
        padded, n_t,
    )
    assert bool(full.source_has.all())


def test_non_finite_rows_count_as_missing(source_tok, target_tok):
    n_s, n_t = len(source_tok), len(target_tok)
    target = np.ones((n_t, 4), dtype=np.float32)
    target[7, 1] = np.nan
    target[8] = np.inf
    pair = resolve_token_vectors(
        _inputs(source_tok, target_tok, n_s,
                source_token_vectors=BareTokenVectors(np.ones((n_s, 4)), np.ones(n_s, dtype=bool)),
                target_token_vectors=target),
        n_s, n_t,
    )
    assert not pair.target_has[7] and not pair.target_has[8] and bool(pair.target_has[:7].all())
    assert bool(torch.isfinite(pair.target).all())


def test_vectors_of_another_vocabulary_are_refused(source_tok, target_tok):
    n_s, n_t = len(source_tok), len(target_tok)
    for resources, pattern in [
        ({"aligned_vectors": (np.ones((n_s, 4)), np.ones((n_t - 1, 4)))},
         r"aligned_vectors target side: .* rows, but the vocabulary has"),
        ({"source_token_vectors": np.ones((n_s + 1, 4)), "target_token_vectors": np.ones((n_t, 4))},
         r"source_token_vectors: .* another tokenizer"),
        ({"source_token_vectors": np.ones((n_s, 4))}, "one side"),
        ({"aligned_vectors": "vectors.bin"}, "AlignedPair"),
        ({"aligned_vectors": (np.ones((n_s, 4)), np.ones((n_t, 5)))}, "one aligned space"),
        ({"aligned_vectors": (np.zeros((n_s, 4)), np.ones((n_t, 4)))}, "no source token"),
        ({"aligned_vectors": (np.ones(n_s), np.ones((n_t, 4)))}, r"\(V, dim\)"),
        ({}, "needs static vectors"),
    ]:
        with pytest.raises(TokenVectorError, match=pattern):
            resolve_token_vectors(_inputs(source_tok, target_tok, n_s, **resources), n_s, n_t)
    # a token-vector problem is a strategy-resource problem to callers that catch those
    assert issubclass(TokenVectorError, StrategyResourceError)
