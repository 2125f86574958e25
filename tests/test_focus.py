"""FOCUS: copied overlap rows, sparsemax weights over anchors, fastText token vectors, refusals."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import GERMAN_SENTENCES
from transfer.errors import StrategyResourceError
from transfer.init import SourceEmbeddings, StrategyInputs, StrategyResources, initialize
from transfer.init.strategies.focus import (
    focus,
    focus_weights,
    sparsemax_weights,
    token_words,
    write_pretokenized,
)
from transfer.init.strategies.overlap import match_overlap

DIM = 8


def _inputs(source_tok, target_tok, *, untied: bool = True, **resources) -> StrategyInputs:
    g = torch.Generator().manual_seed(0)
    n = len(source_tok)
    source = SourceEmbeddings(
        input=torch.randn(n, DIM, generator=g),
        output=torch.randn(n, DIM, generator=g) + 2 if untied else None,
        output_bias=torch.randn(n, generator=g) if untied else None,
    )
    return StrategyInputs(source, source_tok, target_tok, resources=StrategyResources(**resources))


def test_sparsemax_weights_are_sparse_and_sum_to_one():
    g = torch.Generator().manual_seed(0)
    anchors = torch.randn(40, 10, generator=g)
    queries = torch.randn(25, 10, generator=g)
    indices, weights = sparsemax_weights(queries, anchors, top_k=20, temperature=0.1)
    assert indices.shape == weights.shape == (25, 20)
    torch.testing.assert_close(weights.sum(1), torch.ones(25, dtype=weights.dtype))
    assert bool((weights >= 0).all())
    assert bool((weights == 0).any(dim=1).all())  # every row has exact zeros
    # a query pointing exactly at one anchor, far from the rest: all weight on it
    indices, weights = sparsemax_weights(anchors[3:4] * 5, anchors, top_k=10, temperature=0.1)
    assert int(indices[0, 0]) == 3 and float(weights[0, 0]) == 1.0
    assert float(weights[0, 1:].abs().sum()) == 0.0


def test_focus_copies_overlap_and_combines_anchors(source_tok, target_tok):
    n_t = len(target_tok)
    match = match_overlap(source_tok, target_tok)
    anchors = dict(zip(match.target_ids, match.source_ids, strict=True))
    new = [t for t in range(n_t) if t not in anchors]
    g = torch.Generator().manual_seed(1)
    vectors = torch.randn(n_t, 12, generator=g)
    anchor_t = match.target_ids[5]
    twin, no_vector = new[-1], new[-2]
    vectors[twin] = vectors[anchor_t] * 3  # same direction as one anchor
    vectors[no_vector] = 0.0
    inputs = _inputs(source_tok, target_tok, target_token_vectors=vectors)
    result = focus(inputs, top_k=10, temperature=0.05, fallback_covariance_scale=0.0)
    src = inputs.source
    labels = result.report.labels
    for t, s in anchors.items():
        assert labels[t] == "copied"
        torch.testing.assert_close(result.input[t], src.input[s])
        torch.testing.assert_close(result.output[t], src.output[s])
        torch.testing.assert_close(result.output_bias[t], src.output_bias[s])
    assert labels[twin] == "computed"
    torch.testing.assert_close(result.input[twin], src.input[anchors[anchor_t]])
    torch.testing.assert_close(result.output_bias[twin], src.output_bias[anchors[anchor_t]])
    assert labels[no_vector] == "fallback"
    torch.testing.assert_close(result.input[no_vector], src.input.mean(0))
    # every computed row is the sparsemax combination: weights >= 0 summing to one
    weights = focus_weights(vectors, new, anchors, len(source_tok), top_k=10, temperature=0.05)
    dense = torch.from_numpy(weights.toarray())
    computed = [t for t in new if labels[t] == "computed"]
    assert len(computed) > 10
    torch.testing.assert_close(dense[computed].sum(1), torch.ones(len(computed), dtype=dense.dtype))
    assert int((dense[computed] > 0).sum(1).max()) <= 10
    torch.testing.assert_close(
        result.input[computed], (dense[computed] @ src.input.to(torch.float64)).float()
    )


def test_focus_through_initialize_with_real_fasttext(source_tok, target_tok, tiny_corpus):
    inputs = _inputs(source_tok, target_tok, untied=False, target_corpus=tiny_corpus)
    result = initialize(
        "focus", inputs, fasttext_dim=16, fasttext_epochs=3, fasttext_min_count=1
    )
    counts = result.report.counts
    # the 14 non-byte tokens overlap copies (see test_strategies), the rest combined from them
    # where fastText gave the token a vector (one thread, fixed seed: measured)
    assert counts == {"special": 3, "byte": 256, "copied": 14, "computed": 61, "fallback": 26}, counts
    assert result.output is None and result.input.shape == (len(target_tok), DIM)
    assert any("fastText" in note for note in result.report.notes)
    # the same corpus given as texts trains the same vectors (one thread: deterministic)
    texts = tiny_corpus.read_text().splitlines()
    again = initialize(
        "focus", _inputs(source_tok, target_tok, untied=False, target_corpus=texts),
        fasttext_dim=16, fasttext_epochs=3, fasttext_min_count=1,
    )
    torch.testing.assert_close(again.input, result.input)


def test_pretokenized_text_uses_target_tokens(target_tok, tmp_path):
    out = tmp_path / "pre.txt"
    n = write_pretokenized(GERMAN_SENTENCES[:2] + ["   "], target_tok, out)
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    words = token_words(target_tok)
    ids = target_tok(GERMAN_SENTENCES[0], add_special_tokens=False)["input_ids"]
    assert lines[0].split() == [words[i] for i in ids]
    assert n == sum(len(line.split()) for line in lines)


def test_focus_refuses_missing_target_corpus(source_tok, target_tok, tmp_path):
    with pytest.raises(StrategyResourceError, match=r"resources\.target_corpus"):
        focus(_inputs(source_tok, target_tok))
    with pytest.raises(StrategyResourceError, match="not a file"):
        focus(_inputs(source_tok, target_tok, target_corpus=tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(StrategyResourceError, match="empty"):
        focus(_inputs(source_tok, target_tok, target_corpus=empty))
    with pytest.raises(StrategyResourceError, match="no text"):
        focus(_inputs(source_tok, target_tok, target_corpus=["", "  "]))
    with pytest.raises(StrategyResourceError, match="one row per target token"):
        focus(_inputs(source_tok, target_tok, target_token_vectors=torch.zeros(3, 4)))
