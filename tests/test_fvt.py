"""FVT (Fast Vocabulary Transfer): each target row is the mean of its source pieces' rows."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import (
    ENGLISH,
    GERMAN,
    tiny_bpe_byte_fallback_tokenizer,
    tiny_byte_bpe_tokenizer,
    tiny_unigram_tokenizer,
    tiny_wordpiece_tokenizer,
)
from transfer.init import SourceEmbeddings, StrategyInputs, initialize
from transfer.init.strategies.fvt import fvt_weights
from transfer.tokenizer.special_tokens import model_vocab, special_token_ids


def _source(n: int, d: int = 8, *, untied: bool = False, seed: int = 0) -> SourceEmbeddings:
    g = torch.Generator().manual_seed(seed)
    return SourceEmbeddings(
        input=torch.randn(n, d, generator=g),
        output=torch.randn(n, d, generator=g) if untied else None,
        output_bias=torch.randn(n, generator=g) if untied else None,
    )


def _word_tokens(tok, prefix: str) -> dict[str, int]:
    """Target tokens that are a marker plus letters only (whole words)."""
    out = {}
    for token, idx in model_vocab(tok).items():
        word = token[len(prefix):]
        if token.startswith(prefix) and word.isalpha() and word.isascii() and idx not in special_token_ids(tok):
            out[word] = idx
    return out


def test_byte_level_rows_equal_the_mean_of_the_source_encoding():
    source_tok = tiny_byte_bpe_tokenizer(ENGLISH, 320)
    target_tok = tiny_byte_bpe_tokenizer(GERMAN, 360)
    source = _source(len(source_tok), untied=True)
    result = initialize("fvt", StrategyInputs(source, source_tok, target_tok))
    words = _word_tokens(target_tok, "Ġ")
    assert len(words) > 20
    for word, idx in words.items():
        # hand computation through the source tokenizer's ordinary encode of " word"
        pieces = source_tok.encode(" " + word, add_special_tokens=False)
        expected = source.input[pieces].double().mean(0).float()
        # both the float64 mean rounded to float32: at most one ulp apart (2.4e-7 relative)
        torch.testing.assert_close(result.input[idx], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.output[idx], source.output[pieces].double().mean(0).float(),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.output_bias[idx], source.output_bias[pieces].double().mean().float(),
                                   rtol=1e-5, atol=1e-6)
    # a byte-level source decomposes every token: nothing falls back, nothing is random
    assert result.report.counts.get("fallback", 0) == 0
    assert result.report.counts["computed"] >= len(model_vocab(target_tok)) - 256 - len(special_token_ids(target_tok))


def test_word_internal_tokens_are_split_without_a_leading_space():
    source_tok = tiny_byte_bpe_tokenizer(ENGLISH, 320)
    target_tok = tiny_byte_bpe_tokenizer(GERMAN, 360)
    source = _source(len(source_tok))
    weights, empty = fvt_weights(source_tok, target_tok, len(source_tok))
    assert empty == sorted(special_token_ids(target_tok))  # only the added specials
    internal = {t: i for t, i in model_vocab(target_tok).items()
                if len(t) > 1 and t.isalpha() and t.isascii() and not t.startswith("Ġ")}
    assert internal
    for token, idx in internal.items():
        pieces = source_tok.backend_tokenizer.model.tokenize(token)
        ids = [p.id for p in pieces]
        assert "Ġ" not in "".join(p.value for p in pieces)
        row = weights.getrow(idx).toarray()[0]
        assert row.sum() == pytest.approx(1.0)
        expected = torch.zeros(len(source_tok), dtype=torch.float64)
        for i in ids:
            expected[i] += 1 / len(ids)
        assert torch.allclose(torch.from_numpy(row), expected)
    del source


def test_weights_sum_to_one_per_decomposed_token_for_every_family():
    for source_tok in (
        tiny_bpe_byte_fallback_tokenizer(ENGLISH, 320),
        tiny_unigram_tokenizer(ENGLISH, 200),
        tiny_wordpiece_tokenizer(ENGLISH, 300),
    ):
        target_tok = tiny_byte_bpe_tokenizer(GERMAN, 360)
        weights, empty = fvt_weights(source_tok, target_tok, len(source_tok))
        sums = weights.sum(axis=1).A1
        decomposed = [i for i in range(len(target_tok)) if i not in set(empty)]
        assert decomposed, type(source_tok.backend_tokenizer.model).__name__
        assert sums[decomposed] == pytest.approx(1.0)
        assert all(sums[i] == 0 for i in empty)
        # the unknown piece and specials never count as a source piece
        excluded = special_token_ids(source_tok) | {source_tok.unk_token_id}
        assert not set(weights.indices.tolist()) & excluded


def test_byte_fallback_source_splits_partial_characters_into_byte_pieces():
    source_tok = tiny_bpe_byte_fallback_tokenizer(ENGLISH, 320)
    # a byte-level target whose tokens include the first byte of "ü" alone
    target_tok = tiny_byte_bpe_tokenizer(GERMAN, 360)
    weights, _ = fvt_weights(source_tok, target_tok, len(source_tok))
    vocab = model_vocab(target_tok)
    lead = vocab["Ã"]  # GPT-2 alphabet for byte 0xC3, half of "ü"/"ä"/"ö"
    row = weights.getrow(lead)
    assert row.nnz == 1
    assert source_tok.convert_ids_to_tokens(int(row.indices[0])) == "<0xC3>"


def test_wordpiece_continuation_tokens_use_the_continuation_piece():
    source_tok = tiny_wordpiece_tokenizer(ENGLISH, 300)
    target_tok = tiny_wordpiece_tokenizer(GERMAN, 300)
    weights, _ = fvt_weights(source_tok, target_tok, len(source_tok))
    source_vocab = model_vocab(source_tok)
    target_vocab = model_vocab(target_tok)
    shared = [token for token in target_vocab if token.startswith("##") and token in source_vocab]
    # WordPiece training breaks ties in hash order: 20 to 23 shared continuation tokens
    assert len(shared) >= 15, shared
    for token in shared:
        assert weights.getrow(target_vocab[token]).indices.tolist() == [source_vocab[token]], token


def test_fvt_through_the_pipeline_registry_has_no_data_needs():
    from transfer.init.registry import needs

    assert needs("fvt") == frozenset()
