"""Helper-model strategies (issue #27): CLP-Transfer and OMP tokenizer transplantation.

Hand-made vocabularies: the source (byte-level BPE) has ``Ġhaus Ġhund Ġgott Ġworld``, the
target (byte-level BPE or SentencePiece) ``haus licht hund gott`` with the family's word
marker, so three tokens are shared (target ids 1, 3, 4 = source ids 1, 2, 3) and ``licht``
(target id 2) is new; id 0 is the special token, set by role in ``initialize``.
"""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tests.tiny import ENGLISH, GERMAN, tiny_byte_bpe_tokenizer, tiny_unigram_tokenizer
from transfer.errors import StrategyResourceError
from transfer.init import SourceEmbeddings, StrategyInputs, StrategyResources, initialize, registry
from transfer.init.registry import needs
from transfer.init.strategies.clp import clp_rows
from transfer.init.strategies.omp import DEFAULT_K, omp_rows, omp_select
from transfer.init.strategies.overlap import match_overlap

SHARED_T, SHARED_S, NEW = [1, 3, 4], [1, 2, 3], 2


def _byte_level(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {"<|endoftext|>": 0} | {"Ġ" + w: i + 1 for i, w in enumerate(words)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<|endoftext|>", eos_token="<|endoftext|>")


def _sentencepiece(words: list[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.Unigram([("<unk>", 0.0)] + [("▁" + w, -1.0) for w in words], unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


FAMILIES = {"byte_level": _byte_level, "sentencepiece": _sentencepiece}
SOURCE_TOK = _byte_level(["haus", "hund", "gott", "world"])

# source rows (width 4) of <|endoftext|>, haus, hund, gott, world
E_IN = torch.tensor([[9.0, 9, 9, 9], [1, 2, 3, 4], [0, 1, 0, -1], [2, 0, 2, 0], [5, 5, 5, 5]])
E_OUT = torch.tensor([[7.0, 7, 7, 7], [4, 3, 2, 1], [1, 1, 1, 1], [0, 2, 0, 2], [6, 6, 6, 6]])
BIAS = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0])


def _target(family: str) -> PreTrainedTokenizerFast:
    return FAMILIES[family](["haus", "licht", "hund", "gott"])


def _inputs(family: str, helper_in: torch.Tensor, helper_out: torch.Tensor | None = None, *,
            untied: bool = False) -> StrategyInputs:
    source = SourceEmbeddings(E_IN, E_OUT if untied else None, BIAS if untied else None)
    helper = SourceEmbeddings(helper_in, helper_out)
    return StrategyInputs(source, SOURCE_TOK, _target(family),
                          resources=StrategyResources(helper_embeddings=helper))


def _helper(*rows: list[float]) -> torch.Tensor:
    """Helper rows (width 3, not the source's 4) for target ids 0..4."""
    return torch.tensor([[0.3, 0.2, 0.1], *rows])


def _check_copied_and_special(result) -> None:
    assert result.report.labels[0] == "special"
    torch.testing.assert_close(result.input[0], E_IN[0])
    for t, s in zip(SHARED_T, SHARED_S, strict=True):
        assert result.report.labels[t] == "copied"
        torch.testing.assert_close(result.input[t], E_IN[s])
        if result.output is not None:
            torch.testing.assert_close(result.output[t], E_OUT[s])
            torch.testing.assert_close(result.output_bias[t], BIAS[s])


def test_the_fixture_vocabularies_share_three_tokens_in_both_families() -> None:
    for family in FAMILIES:
        match = match_overlap(SOURCE_TOK, _target(family))
        assert (match.target_ids, match.source_ids) == (SHARED_T, SHARED_S), family
    assert needs("clp") == needs("omp") == {"helper"}


# ------------------------------------------------------------------------------- CLP


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_clp_new_row_is_the_cosine_weighted_mean_of_shared_source_rows(family: str) -> None:
    # licht [1, 1, 0] against haus [2, 0, 0], hund [0, 3, 0], gott [0, 0, 1]: cosines
    # 1/sqrt2, 1/sqrt2, 0; normalized to sum one: 1/2, 1/2, 0
    helper = _helper([2, 0, 0], [1, 1, 0], [0, 3, 0], [0, 0, 1])
    result = initialize("clp", _inputs(family, helper))
    _check_copied_and_special(result)
    assert result.output is None and result.output_bias is None
    torch.testing.assert_close(result.input[NEW], torch.tensor([0.5, 1.5, 1.5, 1.5]))
    assert result.report.counts == {"special": 1, "copied": 3, "computed": 1}
    assert any("copied 3 tokens" in note for note in result.report.notes)


def test_clp_signed_weighting_keeps_signed_similarities_as_the_papers_code_does() -> None:
    # licht [1, 1, 0] with gott [-1, 0, 0]: cosines 1/sqrt2, 1/sqrt2, -1/sqrt2, sum 1/sqrt2:
    # weights 1, 1, -1 (the authors divide by the signed sum)
    helper = _helper([2, 0, 0], [1, 1, 0], [0, 3, 0], [-1, 0, 0])
    result = initialize("clp", _inputs("byte_level", helper), weighting="signed")
    torch.testing.assert_close(result.input[NEW], E_IN[1] + E_IN[2] - E_IN[3])
    # top-2: only haus and hund, 1/2 each
    result = initialize("clp", _inputs("byte_level", helper), top_k=2, weighting="signed")
    torch.testing.assert_close(result.input[NEW], (E_IN[1] + E_IN[2]) / 2)


def test_clp_positive_weighting_drops_negative_similarities_to_a_convex_mean() -> None:
    # the same cosines 1/sqrt2, 1/sqrt2, -1/sqrt2: gott counts as 0, haus and hund 1/2 each,
    # where the signed form extrapolates to E[1] + E[2] - E[3]
    helper = _helper([2, 0, 0], [1, 1, 0], [0, 3, 0], [-1, 0, 0])
    result = initialize("clp", _inputs("byte_level", helper))
    assert result.report.params["weighting"] == "positive"
    torch.testing.assert_close(result.input[NEW], (E_IN[1] + E_IN[2]) / 2)
    assert any("negative similarities as zero" in note for note in result.report.notes)
    with pytest.raises(ValueError, match="weighting must be one of positive, signed"):
        initialize("clp", _inputs("byte_level", helper), weighting="softmax")


def test_clp_positive_rows_stay_inside_the_hull_where_signed_sums_near_zero_explode() -> None:
    # centred helper rows (an adapted model's space): signed sums of 200 cosines near zero
    g = torch.Generator().manual_seed(1)
    anchors, queries = torch.randn(200, 16, generator=g), torch.randn(400, 16, generator=g)
    values = torch.randn(200, 8, generator=g)
    bound = values.norm(dim=1).max()
    signed, ok_s = clp_rows(queries, anchors, values, weighting="signed")
    positive, ok_p = clp_rows(queries, anchors, values)
    assert bool(ok_p.all())
    assert float(positive.norm(dim=1).max()) <= float(bound) + 1e-5
    assert float(signed[ok_s].norm(dim=1).max()) > 10 * float(bound)


def test_clp_similarities_summing_to_zero_or_less_fall_back_to_the_mean() -> None:
    helper = _helper([2, 0, 0], [-1, 0, 0], [0, 3, 0], [0, 0, 1])  # cosines -1, 0, 0
    result = initialize("clp", _inputs("byte_level", helper), fallback_covariance_scale=0.0)
    assert result.report.labels[NEW] == "fallback"
    torch.testing.assert_close(result.input[NEW], E_IN.mean(0))
    assert any("1 refused by the rule" in note for note in result.report.notes)


def test_clp_untied_source_with_a_tied_helper_reuses_the_input_weights() -> None:
    helper = _helper([2, 0, 0], [1, 1, 0], [0, 3, 0], [0, 0, 1])
    result = initialize("clp", _inputs("sentencepiece", helper, untied=True))
    _check_copied_and_special(result)
    torch.testing.assert_close(result.output[NEW], (E_OUT[1] + E_OUT[2]) / 2)
    torch.testing.assert_close(result.output_bias[NEW], (BIAS[1] + BIAS[2]) / 2)


def test_clp_untied_helper_head_weights_the_untied_source_head() -> None:
    helper = _helper([2, 0, 0], [1, 1, 0], [0, 3, 0], [0, 0, 1])
    # in the helper's head licht [0, 1, 1] is like hund and gott, not haus
    head = _helper([1, 0, 0], [0, 1, 1], [0, 1, 0], [0, 0, 5])
    result = initialize("clp", _inputs("byte_level", helper, head, untied=True))
    torch.testing.assert_close(result.input[NEW], (E_IN[1] + E_IN[2]) / 2)
    torch.testing.assert_close(result.output[NEW], (E_OUT[2] + E_OUT[3]) / 2)
    torch.testing.assert_close(result.output_bias[NEW], (BIAS[2] + BIAS[3]) / 2)
    assert sum("head side" in note for note in result.report.notes) == 1


def test_clp_rows_in_blocks_equal_the_dense_formula() -> None:
    g = torch.Generator().manual_seed(0)
    anchors = torch.randn(300, 24, generator=g) + 2  # a common direction: sums well above 0
    queries = torch.randn(57, 24, generator=g) + 2
    values = torch.randn(300, 10, generator=g)
    cos = torch.nn.functional.normalize(queries.double(), dim=1) @ torch.nn.functional.normalize(
        anchors.double(), dim=1).T
    expected = (cos / cos.sum(1, keepdim=True)) @ values.double()
    # 4 query rows per block: 15 blocks
    rows, ok = clp_rows(queries, anchors, values, weighting="signed", max_block_bytes=4 * 300 * 4)
    assert bool(ok.all())
    # float32 similarities and products of 300 terms against float64: well within 1e-4
    torch.testing.assert_close(rows.double(), expected, rtol=1e-4, atol=1e-4)
    top, ok = clp_rows(queries, anchors, values, top_k=5, weighting="signed", max_block_bytes=2000)
    best = cos.topk(5, dim=1)
    want = torch.einsum("bk,bkc->bc", best.values / best.values.sum(1, keepdim=True), values.double()[best.indices])
    torch.testing.assert_close(top.double(), want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------- OMP


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_omp_with_k1_takes_the_most_aligned_shared_token_scaled(family: str) -> None:
    # licht [1, 0.5, 0]: |cos| with haus [2, 0, 0] 0.89, hund [0, 10, 0] 0.45 (hund has the
    # larger raw inner product, 5 against 2: the choice is by direction); coefficient 1/2
    helper = _helper([2, 0, 0], [1, 0.5, 0], [0, 10, 0], [0, 0, 1])
    result = initialize("omp", _inputs(family, helper), k=1)
    _check_copied_and_special(result)
    torch.testing.assert_close(result.input[NEW], 0.5 * E_IN[1])
    assert result.report.counts == {"special": 1, "copied": 3, "computed": 1}
    # k=2 explains licht exactly: 0.5 haus + 0.05 hund; k=3 (all) adds gott with weight 0
    for k in (2, 3):
        result = initialize("omp", _inputs(family, helper), k=k)
        torch.testing.assert_close(result.input[NEW], 0.5 * E_IN[1] + 0.05 * E_IN[2])


def test_omp_with_k_all_is_the_least_squares_fit() -> None:
    g = torch.Generator().manual_seed(3)
    atoms = torch.randn(6, 10, generator=g, dtype=torch.float64)
    targets = torch.randn(9, 10, generator=g, dtype=torch.float64)  # not in the span
    index, coeff = omp_select(targets, atoms, 6)
    dense = torch.zeros(9, 6, dtype=torch.float64).scatter_(1, index, coeff)
    torch.testing.assert_close(dense, torch.linalg.lstsq(atoms.T, targets.T).solution.T)
    # through the strategy: helper width 5 > 3 shared tokens, licht not in their span
    helper = torch.randn(5, 5, generator=g)
    result = initialize("omp", _inputs("sentencepiece", helper, untied=True), k=3)
    shared = helper[SHARED_T].double()
    coef = torch.linalg.lstsq(shared.T, helper[NEW].double().unsqueeze(1)).solution.squeeze(1)
    # float32 pursuit against a float64 solve of a 5 x 3 system
    torch.testing.assert_close(result.input[NEW].double(), coef @ E_IN[SHARED_S].double(), rtol=1e-4, atol=1e-5)
    # tied helper: the head takes the same coefficients
    torch.testing.assert_close(result.output[NEW].double(), coef @ E_OUT[SHARED_S].double(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.output_bias[NEW].double(), coef @ BIAS[SHARED_S].double(),
                               rtol=1e-4, atol=1e-5)


def test_omp_fits_the_untied_head_from_the_helpers_head() -> None:
    helper = _helper([2, 0, 0], [1, 0.5, 0], [0, 10, 0], [0, 0, 1])
    head = _helper([1, 0, 0], [0, 2, 3], [0, 1, 0], [0, 0, 1])  # licht = 2 hund + 3 gott
    result = initialize("omp", _inputs("byte_level", helper, head, untied=True), k=2)
    torch.testing.assert_close(result.input[NEW], 0.5 * E_IN[1] + 0.05 * E_IN[2])
    torch.testing.assert_close(result.output[NEW], 2 * E_OUT[2] + 3 * E_OUT[3])
    torch.testing.assert_close(result.output_bias[NEW], 2 * BIAS[2] + 3 * BIAS[3])


def _tiny_pair(source_family: str):
    if source_family == "byte_level":
        return tiny_byte_bpe_tokenizer(ENGLISH, 320), tiny_unigram_tokenizer(GERMAN, 200)
    return tiny_unigram_tokenizer(ENGLISH, 200), tiny_byte_bpe_tokenizer(GERMAN, 360)


@pytest.mark.parametrize("source_family", ["byte_level", "sentencepiece"])
def test_omp_new_token_that_is_a_combination_of_shared_tokens_gets_that_combination(source_family: str) -> None:
    source_tok, target_tok = _tiny_pair(source_family)
    match = match_overlap(source_tok, target_tok)
    shared = dict(zip(match.target_ids, match.source_ids, strict=True))
    new = [t for t in range(len(target_tok)) if t not in shared]
    assert len(shared) > 20 and len(new) > 20
    g = torch.Generator().manual_seed(1)
    helper = torch.randn(len(target_tok) + 7, 48, generator=g)  # a padded helper vocabulary
    picks = {t: (sorted(shared)[(5 * i) % len(shared)], sorted(shared)[(5 * i + 11) % len(shared)],
                 sorted(shared)[(5 * i + 23) % len(shared)]) for i, t in enumerate(new)}
    weights = torch.tensor([0.7, -1.3, 2.0])
    for t, (a, b, c) in picks.items():
        helper[t] = weights[0] * helper[a] + weights[1] * helper[b] + weights[2] * helper[c]
    source = SourceEmbeddings(torch.randn(len(source_tok), 16, generator=g))
    inputs = StrategyInputs(source, source_tok, target_tok,
                            resources=StrategyResources(helper_embeddings=SourceEmbeddings(helper)))
    result = initialize("omp", inputs, k=8)
    labels = result.report.labels
    checked = 0
    for t, trio in picks.items():
        if labels[t] != "computed":  # special and byte rows are set by role and value
            continue
        expected = sum(w * source.input[shared[a]] for w, a in zip(weights, trio, strict=True))
        # float32 pursuit: the 5 extra picks get coefficient exactly 0 once explained
        torch.testing.assert_close(result.input[t], expected, rtol=1e-4, atol=1e-4)
        checked += 1
    assert checked > 20
    assert result.report.counts.get("fallback", 0) == 0


def test_omp_rows_in_blocks_equal_one_block() -> None:
    g = torch.Generator().manual_seed(2)
    anchors = torch.randn(200, 16, generator=g)
    queries = torch.randn(33, 16, generator=g) * 3
    values = torch.randn(200, 5, generator=g)
    one, _ = omp_rows(queries, anchors, values, k=6)
    many, ok = omp_rows(queries, anchors, values, k=6, max_block_bytes=4000)
    assert bool(ok.all())
    torch.testing.assert_close(many, one)
    # the default k is tokensurgeon's
    assert DEFAULT_K == 64


# ----------------------------------------------------------- shared behaviour, refusals


@pytest.mark.parametrize("name", ["clp", "omp"])
def test_a_token_without_a_usable_helper_row_falls_back_to_the_mean(name: str) -> None:
    helper = _helper([2, 0, 0], [0, 0, 0], [0, 3, 0], [0, 0, 1])
    result = initialize(name, _inputs("byte_level", helper, untied=True), fallback_covariance_scale=0.0)
    assert result.report.labels[NEW] == "fallback"
    torch.testing.assert_close(result.input[NEW], E_IN.mean(0))
    torch.testing.assert_close(result.output[NEW], E_OUT.mean(0))
    torch.testing.assert_close(result.output_bias[NEW], BIAS.mean())
    # usable input row, non-finite head row: the input computed, the head the mean
    helper = _helper([2, 0, 0], [1, 1, 0], [0, 3, 0], [0, 0, 1])
    head = _helper([1, 0, 0], [math.nan, 1, 1], [0, 1, 0], [0, 0, 5])
    result = initialize(name, _inputs("byte_level", helper, head, untied=True), fallback_covariance_scale=0.0)
    assert result.report.labels[NEW] == "fallback"
    assert not torch.allclose(result.input[NEW], E_IN.mean(0))
    torch.testing.assert_close(result.output[NEW], E_OUT.mean(0))


@pytest.mark.parametrize("name", ["clp", "omp"])
def test_missing_or_short_helper_is_refused(name: str) -> None:
    inputs = _inputs("byte_level", _helper([2, 0, 0], [1, 1, 0], [0, 3, 0], [0, 0, 1]))
    bare = StrategyInputs(inputs.source, inputs.source_tokenizer, inputs.target_tokenizer)
    with pytest.raises(StrategyResourceError, match="helper_model"):
        initialize(name, bare)
    short = _inputs("byte_level", torch.ones(3, 3))
    with pytest.raises(StrategyResourceError, match=r"helper_model has 3 input embedding rows.*5 tokens"):
        initialize(name, short)


def test_parameter_values_are_refused_before_any_work() -> None:
    with pytest.raises(registry.StrategyParameterError, match="k must be >= 1"):
        registry.check_strategy_params("omp", {"k": 0})
    with pytest.raises(registry.StrategyParameterError, match="top_k must be >= 0"):
        registry.check_strategy_params("clp", {"top_k": -1})
    with pytest.raises(registry.StrategyParameterError, match="fallback_covariance_scale"):
        registry.check_strategy_params("omp", {"fallback_covariance_scale": -1.0})
    with pytest.raises(registry.StrategyParameterError, match="integer"):
        registry.check_strategy_params("omp", {"k": 2.5})
