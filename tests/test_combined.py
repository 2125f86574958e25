"""The combined strategy: trans-tokenization's rows shrunk toward FVT's by n_t / (n_t + lambda)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from transformers import PreTrainedTokenizerFast

from tests.tiny import (
    ENGLISH_SENTENCES,
    GERMAN_SENTENCES,
    tiny_byte_bpe_tokenizer,
    tiny_wordpiece_tokenizer,
)
from transfer.errors import StrategyResourceError, VocabTransferError
from transfer.init import SourceEmbeddings, StrategyInputs, StrategyResources, initialize
from transfer.init.registry import check_strategy_params, needs
from transfer.init.strategies.combined import (
    ALIGNMENT_ONLY,
    FVT_ONLY,
    MEAN,
    MIXED,
    combine_weights,
    combined,
    peaked_links,
    restore_row_norms,
)
from transfer.init.strategies.fvt import fvt, fvt_weights
from transfer.init.strategies.overlap import match_overlap
from transfer.init.strategies.trans_tokenization import aligned_weights, identity_matches

DIM = 8
EXTRA_EN = ["So Abraham counted 1234 sheep... and 1234 goats!"] * 4
EXTRA_DE = ["So Abraham zählte 1234 Schafe... und 1234 Ziegen!"] * 4


@pytest.fixture(scope="module")
def source_tok() -> PreTrainedTokenizerFast:
    return tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES + EXTRA_EN, 330)


@pytest.fixture(scope="module")
def target_tok() -> PreTrainedTokenizerFast:
    return tiny_byte_bpe_tokenizer(
        GERMAN_SENTENCES + EXTRA_DE, 370, specials=("<unk>", "<s>", "</s>", "<pad>"), pad="<pad>"
    )


def _source(n: int) -> SourceEmbeddings:
    g = torch.Generator().manual_seed(0)
    return SourceEmbeddings(
        input=torch.randn(n, DIM, generator=g),
        output=torch.randn(n, DIM, generator=g) * 3 + 1,
        output_bias=torch.randn(n, generator=g),
    )


def _inputs(source_tok, target_tok, counts: sp.csr_matrix) -> StrategyInputs:
    return StrategyInputs(
        source=_source(len(source_tok)), source_tokenizer=source_tok, target_tokenizer=target_tok,
        resources=StrategyResources(link_counts=counts),
    )


def _new_word_ids(source_tok, target_tok, n: int) -> list[int]:
    """Target word tokens with no identical source string (no identity prior, no copy)."""
    matched = set(match_overlap(source_tok, target_tok).target_ids)
    ids = sorted(
        i for t, i in target_tok.get_vocab().items()
        if i not in matched and len(t) > 3 and t.startswith("Ġ") and t[1:].isalpha()
    )
    assert len(ids) >= n
    return ids[:n]


def _counts(entries: dict[tuple[int, int], float], shape: tuple[int, int]) -> sp.csr_matrix:
    rows, cols = zip(*entries, strict=True)
    return sp.csr_matrix((list(entries.values()), (list(rows), list(cols))), shape=shape)


@pytest.fixture(scope="module")
def linked(source_tok, target_tok) -> tuple[StrategyInputs, dict[str, int]]:
    """Constructed link counts: tokens with 1, 3 (+ one pruned link), 9 and 40 links, a
    copied number token with links, and every other token never aligned."""
    shape = (len(target_tok), len(source_tok))
    a, b, c, d = _new_word_ids(source_tok, target_tok, 4)
    number = next(t for t in identity_matches(_inputs(source_tok, target_tok, None)).copied)
    entries = {
        (a, 5): 1,                         # below min_count 2: n_t = 0, never aligned in effect
        (b, 7): 3, (b, 9): 1,              # n_t = 3 (the single link is pruned)
        (c, 11): 6, (c, 12): 3,            # n_t = 9
        (d, 20): 30, (d, 21): 10,          # n_t = 40
        (number, 30): 4,                   # copied outright by the alignment part; n_t = 4
    }
    ids = {"a": a, "b": b, "c": c, "d": d, "number": number}
    return _inputs(source_tok, target_tok, _counts(entries, shape)), ids


# --------------------------------------------------------------------------- the weights


def test_combine_weights_by_hand():
    # rows: mixed (n=5), fvt only (n=0 with an alignment row from a prior), alignment only,
    # mean, fvt only (no alignment row at all)
    align = sp.csr_matrix(np.array([
        [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]
    ]))
    fvt = sp.csr_matrix(np.array([
        [0, 0, 0.5, 0.5], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]
    ]))
    links = np.array([5.0, 0.0, 2.0, 0.0, 0.0])
    combo = combine_weights(align, links, fvt, shrinkage=10.0)
    a = 5 / 15
    np.testing.assert_allclose(combo.weights.toarray(), [
        [a * 0.5, a * 0.5, (1 - a) * 0.5, (1 - a) * 0.5], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0],
    ])
    np.testing.assert_allclose(combo.trust, [a, 0, 1, 0, 0])
    assert list(combo.path) == [MIXED, FVT_ONLY, ALIGNMENT_ONLY, MEAN, FVT_ONLY]
    # the limits: infinite shrinkage is FVT wherever FVT has pieces, zero is the alignment
    np.testing.assert_array_equal(combine_weights(align, links, fvt, float("inf")).weights.toarray()[[0, 1, 4]],
                                  fvt.toarray()[[0, 1, 4]])
    np.testing.assert_array_equal(combine_weights(align, links, fvt, 0.0).weights.toarray()[[0, 2]],
                                  align.toarray()[[0, 2]])
    with pytest.raises(ValueError, match="shrinkage"):
        combine_weights(align, links, fvt, -1.0)


def test_every_row_sums_to_one_and_trust_is_n_over_n_plus_lambda(linked):
    inputs, ids = linked
    counts = inputs.resources.link_counts
    aligned = aligned_weights(inputs, counts, min_count=2, min_prob=0.05, max_sources=5,
                              identity_prior=1.0, copy_symbols=True)
    align, links = aligned.weights, aligned.links
    fvt_w, _ = fvt_weights(inputs.source_tokenizer, inputs.target_tokenizer, inputs.source.input.shape[0])
    combo = combine_weights(align, links, fvt_w, shrinkage=10.0)
    sums = np.asarray(combo.weights.sum(axis=1)).ravel()
    placed = combo.path != MEAN
    np.testing.assert_allclose(sums[placed], 1.0)
    assert np.all(sums[~placed] == 0)
    # hand-computed n_t (links seen >= min_count times) and a_t = n_t / (n_t + 10)
    for name, n in {"a": 0, "b": 3, "c": 9, "d": 40, "number": 4}.items():
        assert combo.links[ids[name]] == n
        assert combo.trust[ids[name]] == pytest.approx(n / (n + 10.0), abs=0)  # the same float64 formula
    assert combo.path[ids["a"]] == FVT_ONLY and combo.path[ids["d"]] == MIXED
    # every token without a real link is its FVT row
    never = np.flatnonzero(links == 0)
    assert len(never) > 100
    assert (combo.weights[never] != fvt_w[never]).nnz == 0


def test_rows_are_the_hand_mixture_of_trans_tokenization_and_fvt_rows(linked):
    inputs, ids = linked
    result = initialize("combined", inputs, shrinkage=10.0)
    tt = initialize("trans_tokenization", inputs)
    fv = initialize("fvt", inputs)
    for name, n in {"b": 3, "c": 9, "d": 40, "number": 4}.items():
        t, a = ids[name], n / (n + 10.0)
        for mine, aligned, composed in ((result.input, tt.input, fv.input), (result.output, tt.output, fv.output),
                                        (result.output_bias, tt.output_bias, fv.output_bias)):
            # float32 rows (|x| < 16) each rounded once from float64: half an ulp, <= 5e-7 + 6e-8 |x|
            expected = a * aligned[t].double() + (1 - a) * composed[t].double()
            torch.testing.assert_close(mine[t].double(), expected, rtol=1e-6, atol=1e-6)
    assert any("mean a_t" in note for note in result.report.notes)


def test_infinite_shrinkage_is_fvt_exactly(linked):
    inputs, _ = linked
    mine = combined(inputs, shrinkage=float("inf"))
    plain = fvt(inputs)
    for got, expected in ((mine.input, plain.input), (mine.output, plain.output),
                          (mine.output_bias, plain.output_bias)):
        assert torch.equal(got, expected)
    # and through ``initialize`` (special and byte rows fixed alike)
    fv = initialize("fvt", inputs)
    huge = initialize("combined", inputs, shrinkage=1e300)
    # a = n / (n + 1e300): the float64 rows differ in rounding only, so the float32 rows by at
    # most one ulp (|x| < 8: 4.8e-7)
    torch.testing.assert_close(huge.input, fv.input, rtol=0, atol=1e-6)
    assert huge.report.labels == fv.report.labels


def test_zero_shrinkage_is_trans_tokenization_on_aligned_tokens(linked):
    inputs, ids = linked
    mine = initialize("combined", inputs, shrinkage=0.0)
    tt = initialize("trans_tokenization", inputs)
    aligned = [ids[k] for k in ("b", "c", "d", "number")]
    # the same float64 weighting in another order, rounded to float32: at most one ulp (2.4e-7 |x|)
    for got, expected in ((mine.input, tt.input), (mine.output, tt.output), (mine.output_bias, tt.output_bias)):
        torch.testing.assert_close(got[aligned], expected[aligned], rtol=1e-6, atol=1e-7)
    # a token whose only link is pruned stays its FVT row, where trans-tokenization has the mean
    fv = initialize("fvt", inputs)
    torch.testing.assert_close(mine.input[ids["a"]], fv.input[ids["a"]])


def test_head_and_bias_get_the_input_weights(linked):
    inputs, _ = linked
    counts = inputs.resources.link_counts
    aligned = aligned_weights(inputs, counts, min_count=2, min_prob=0.05, max_sources=5,
                              identity_prior=1.0, copy_symbols=True)
    align, links = aligned.weights, aligned.links
    fvt_w, _ = fvt_weights(inputs.source_tokenizer, inputs.target_tokenizer, inputs.source.input.shape[0])
    combo = combine_weights(align, links, fvt_w, shrinkage=10.0)
    result = combined(inputs)
    placed = np.flatnonzero(combo.path != MEAN)
    w = combo.weights[placed]
    src = inputs.source
    for got, matrix in ((result.input, src.input), (result.output, src.output),
                        (result.output_bias.unsqueeze(1), src.output_bias.unsqueeze(1))):
        expected = torch.from_numpy(w @ matrix.double().numpy())
        # float64 weighting rounded to float32 once: 6e-8 relative
        torch.testing.assert_close(got[placed].double(), expected, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- no random rows


def _fallback_ids(result) -> set[int]:
    return {t for t, label in enumerate(result.report.labels) if label == "fallback"}


def test_byte_level_source_leaves_no_fallback(linked):
    """On a byte-level source every ordinary token has FVT pieces: the only mean row is
    the target's ``<pad>``, a special token the source has no counterpart of."""
    inputs, _ = linked
    result = initialize("combined", inputs)
    _, empty = fvt_weights(inputs.source_tokenizer, inputs.target_tokenizer, inputs.source.input.shape[0])
    pad = inputs.target_tokenizer.pad_token_id
    assert _fallback_ids(result) == {pad} and pad in empty


def test_only_tokens_without_pieces_or_links_fall_back():
    """A WordPiece source cannot split a byte-level token holding part of a character
    (German umlauts): aligned ones take their alignment, the rest the mean, nothing random."""
    source_tok = tiny_wordpiece_tokenizer(ENGLISH_SENTENCES, 300)
    target_tok = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 370)
    n_source = len(source_tok)
    _, empty = fvt_weights(source_tok, target_tok, n_source)
    inputs0 = _inputs(source_tok, target_tok, sp.csr_matrix((len(target_tok), n_source)))
    base = initialize("combined", inputs0)
    ordinary_empty = [t for t in empty if base.report.labels[t] not in ("special", "byte")]
    assert len(ordinary_empty) >= 2
    linked_one, unlinked = ordinary_empty[0], ordinary_empty[1:]
    inputs = _inputs(source_tok, target_tok, _counts({(linked_one, 40): 5, (linked_one, 41): 5},
                                                     (len(target_tok), n_source)))
    result = initialize("combined", inputs, fallback_covariance_scale=0.0)
    assert _fallback_ids(result) == set(unlinked)
    torch.testing.assert_close(result.input[linked_one], (inputs.source.input[40] + inputs.source.input[41]) / 2)
    torch.testing.assert_close(result.input[unlinked[0]], inputs.source.input.mean(0))
    assert any("1 tokens without any source piece: their alignment alone" in n for n in result.report.notes)


# --------------------------------------------------------------------------- registry


def test_registered_with_parallel_and_refuses_bad_values():
    assert needs("combined") == {"parallel"}
    check_strategy_params("combined", {"shrinkage": 3.0})
    with pytest.raises(StrategyResourceError, match="shrinkage"):
        check_strategy_params("combined", {"shrinkage": -1.0})


def test_peaked_trust_counts_the_links_of_the_top_translation():
    align = sp.csr_matrix(np.array([[0.5, 0.5, 0], [0, 0, 1.0], [0, 0, 0]]))
    np.testing.assert_allclose(peaked_links(align, np.array([10.0, 10.0, 0.0])), [5.0, 10.0, 0.0])
    with pytest.raises(VocabTransferError, match="trust"):
        check_strategy_params("combined", {"trust": "entropy"})


def test_restored_rows_have_the_weighted_mean_norm_and_keep_their_direction():
    matrix = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    weights = sp.csr_matrix(np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    out = torch.from_numpy(weights @ matrix.numpy()).float()
    restored = restore_row_norms(weights, matrix, out)
    assert restored[0].norm().item() == pytest.approx(0.5 * 3 + 0.5 * 1)  # not |(1.5, 0.5)| = 1.58
    torch.testing.assert_close(restored[0] / restored[0].norm(), out[0] / out[0].norm())
    assert torch.equal(restored[1], out[1]) and torch.allclose(restored[2], matrix[2])


def test_restore_norm_lengthens_mixed_rows_only(linked):
    inputs, ids = linked
    plain = initialize("combined", inputs)
    restored = initialize("combined", inputs, restore_norm=True)
    t = ids["d"]  # a mixed row: shorter than the rows it averages, lengthened
    assert restored.input[t].norm() > plain.input[t].norm()
    torch.testing.assert_close(restored.input[t] / restored.input[t].norm(), plain.input[t] / plain.input[t].norm())
    torch.testing.assert_close(restored.output_bias, plain.output_bias)  # the bias is not rescaled


def test_needs_parallel_or_link_counts(source_tok, target_tok):
    inputs = StrategyInputs(source=_source(len(source_tok)), source_tokenizer=source_tok, target_tokenizer=target_tok)
    with pytest.raises(StrategyResourceError, match="resources.parallel"):
        combined(inputs)


def test_aligns_a_tiny_parallel_corpus_with_eflomal(source_tok, target_tok):
    """The real path: eflomal links on a tiny corpus, then the same combination."""
    pairs = list(zip(ENGLISH_SENTENCES + EXTRA_EN, GERMAN_SENTENCES + EXTRA_DE, strict=True))
    inputs = StrategyInputs(source=_source(len(source_tok)), source_tokenizer=source_tok,
                            target_tokenizer=target_tok, resources=StrategyResources(parallel=pairs))
    result = initialize("combined", inputs, align_rel_iterations=0.2)
    assert _fallback_ids(result) == {target_tok.pad_token_id}
    assert any("eflomal" in note for note in result.report.notes)
    mixed_note = next(n for n in result.report.notes if "mix their aligned" in n)
    assert int(mixed_note.split(" ")[0]) > 0, mixed_note
    assert torch.isfinite(result.input).all()
