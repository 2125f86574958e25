"""Masked-LM masking (BERT's 80/10/10) and masked-LM loss evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from tests.tiny import (
    ENGLISH,
    GERMAN,
    tiny_bert,
    tiny_roberta,
    tiny_roberta_tokenizer,
    tiny_wordpiece_tokenizer,
)
from transfer.evaluate.masked_lm import (
    IGNORE_INDEX,
    MaskedLMError,
    MLMResult,
    mask_tokens,
    masked_lm_loss,
    max_sequence_length,
)
from transfer.source.loading import save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TEXTS = [f"{sentence} ({i})" for i in range(3) for sentence in GERMAN]


@pytest.fixture(scope="module")
def wordpiece() -> PreTrainedTokenizerFast:
    return tiny_wordpiece_tokenizer(GERMAN, 250)


@pytest.fixture(scope="module")
def bert(wordpiece):
    return tiny_bert(len(wordpiece), pad_token_id=wordpiece.pad_token_id)


def _batch(tok: PreTrainedTokenizerFast, copies: int = 40) -> torch.Tensor:
    return tok(GERMAN * copies, padding=True, return_tensors="pt").input_ids


def test_mask_tokens_80_10_10_and_labels(wordpiece) -> None:
    ids = _batch(wordpiece)
    before = ids.clone()
    masked, labels = mask_tokens(ids, wordpiece, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, before)  # the input is left alone
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing changes where not chosen
    specials = {wordpiece.pad_token_id, wordpiece.cls_token_id, wordpiece.sep_token_id}
    ordinary = ~torch.isin(ids, torch.tensor(sorted(specials)))
    assert not bool((chosen & ~ordinary).any())  # never specials, never padding
    rate = chosen.sum().item() / ordinary.sum().item()
    assert 0.13 < rate < 0.17
    picked, original = masked[chosen], ids[chosen]
    as_mask = (picked == wordpiece.mask_token_id).float().mean().item()
    kept = (picked == original).float().mean().item()
    assert 0.75 < as_mask < 0.85 and 0.06 < kept < 0.14
    replaced = picked[(picked != original) & (picked != wordpiece.mask_token_id)]
    assert 0.06 < replaced.numel() / picked.numel() < 0.14  # BERT's 10% random tokens
    assert not bool(torch.isin(replaced, torch.tensor(sorted(specials))).any())


def test_mask_tokens_is_deterministic_and_respects_special_ids(wordpiece) -> None:
    ids = _batch(wordpiece, 5)
    first = mask_tokens(ids, wordpiece, rate=0.5, generator=torch.Generator().manual_seed(3))
    again = mask_tokens(ids, wordpiece, rate=0.5, generator=torch.Generator().manual_seed(3))
    other = mask_tokens(ids, wordpiece, rate=0.5, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1])
    frequent = int(torch.mode(ids[ids > 4]).values)
    _, labels = mask_tokens(
        ids, wordpiece, rate=0.9, generator=torch.Generator().manual_seed(0),
        special_ids={wordpiece.cls_token_id, wordpiece.sep_token_id, frequent},
    )
    assert not bool((labels == frequent).any())
    assert not bool((labels == wordpiece.pad_token_id).any())  # the pad id is always kept out


def test_mask_tokens_errors(wordpiece) -> None:
    ids = _batch(wordpiece, 1)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(MaskedLMError, match="rate"):
        mask_tokens(ids, wordpiece, rate=0.0, generator=generator)
    from tests.tiny import tiny_byte_bpe_tokenizer

    causal = tiny_byte_bpe_tokenizer(ENGLISH, 300)
    with pytest.raises(MaskedLMError, match="no mask token"):
        mask_tokens(ids, causal, generator=generator)


def test_masked_lm_loss_deterministic_and_batch_size_independent(bert, wordpiece) -> None:
    one = masked_lm_loss(bert, wordpiece, TEXTS, batch_size=1)
    many = masked_lm_loss(bert, wordpiece, TEXTS, batch_size=7)
    again = masked_lm_loss(bert, wordpiece, TEXTS, batch_size=7)
    assert isinstance(one, MLMResult) and one.n_texts == len(TEXTS)
    assert one.n_masked == many.n_masked
    # 15% of the 390 ordinary tokens: 58.5 expected, sd 7 (measured 49)
    ordinary = sum(len(wordpiece(text)["input_ids"]) - 2 for text in TEXTS)
    assert ordinary == 390 and 0.09 * ordinary < one.n_masked < 0.21 * ordinary
    assert many.loss == again.loss
    # float32 logits of other batch shapes (a few ulps), float64 sums: ~1e-7 relative
    assert one.loss == pytest.approx(many.loss, rel=1e-6)
    # a random model is near uniform over the vocabulary
    assert abs(one.loss - torch.log(torch.tensor(float(len(wordpiece)))).item()) < 1.0
    other_seed = masked_lm_loss(bert, wordpiece, TEXTS, seed=1)
    assert other_seed.loss != one.loss
    data = one.to_dict()
    assert {"loss", "n_masked", "n_texts", "rate", "seed"} <= set(data)
    json.dumps(data)


def test_a_better_model_scores_lower(wordpiece) -> None:
    """The loss measures prediction: a BERT whose head knows the answer beats a random one."""
    model = tiny_bert(len(wordpiece), pad_token_id=wordpiece.pad_token_id)
    random_loss = masked_lm_loss(model, wordpiece, TEXTS).loss
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    batch = wordpiece(TEXTS, padding=True, return_tensors="pt")
    model.train()
    for _ in range(30):
        inputs, labels = mask_tokens(batch.input_ids, wordpiece, generator=generator)
        loss = model(input_ids=inputs, attention_mask=batch.attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert masked_lm_loss(model, wordpiece, TEXTS).loss < random_loss - 0.5


def test_strategies_sharing_a_target_tokenizer_are_scored_on_the_same_masks(wordpiece) -> None:
    from transfer.init import StrategyInputs, initialize
    from transfer.init.surgery import get_source_embeddings, swap_vocabulary

    source_tok = tiny_wordpiece_tokenizer(ENGLISH, 200)
    results = {}
    for strategy in ("random", "mean", "overlap"):
        model = tiny_bert(len(source_tok), pad_token_id=source_tok.pad_token_id)
        inputs = StrategyInputs(get_source_embeddings(model), source_tok, wordpiece)
        swap_vocabulary(model, wordpiece, initialize(strategy, inputs), source_tokenizer=source_tok)
        results[strategy] = masked_lm_loss(model, wordpiece, TEXTS, seed=7)
    assert len({r.n_masked for r in results.values()}) == 1  # the very same masked positions
    assert len({round(r.loss, 9) for r in results.values()}) == 3  # but different models


def test_long_texts_are_windowed_with_specials(wordpiece) -> None:
    model = tiny_bert(len(wordpiece), pad_token_id=wordpiece.pad_token_id,
                      max_position_embeddings=16)
    assert max_sequence_length(model, wordpiece) == 16
    long_text = " ".join(GERMAN)
    result = masked_lm_loss(model, wordpiece, [long_text], rate=0.3)
    assert result.n_texts == 1 and result.n_masked > 10  # far more than 16 positions hold


def test_roberta_positions_leave_room_for_the_pad_offset() -> None:
    tok = tiny_roberta_tokenizer(ENGLISH, 300)
    model = tiny_roberta(len(tok), pad_token_id=tok.pad_token_id)
    assert max_sequence_length(model, tok) == 128  # 130 positions - (pad id 1 + 1)
    text = " ".join(ENGLISH * 4)
    result = masked_lm_loss(model, tok, [text], rate=0.2)
    # 20% of the text's ~1035 ordinary tokens, all windows scored (measured 191, sd 13)
    ordinary = len(tok(text)["input_ids"]) - 2
    assert 0.15 * ordinary < result.n_masked < 0.25 * ordinary


def test_input_errors(bert, wordpiece) -> None:
    with pytest.raises(MaskedLMError, match="empty"):
        masked_lm_loss(bert, wordpiece, [])
    with pytest.raises(MaskedLMError, match="not one string"):
        masked_lm_loss(bert, wordpiece, "Ein Text")
    with pytest.raises(MaskedLMError, match=r"texts\[1\]"):
        masked_lm_loss(bert, wordpiece, ["Ein Text", ""])
    with pytest.raises(MaskedLMError, match="batch_size"):
        masked_lm_loss(bert, wordpiece, TEXTS, batch_size=0)
    small = tiny_bert(20)
    with pytest.raises(MaskedLMError, match="do not belong together"):
        masked_lm_loss(small, wordpiece, TEXTS)
    with pytest.raises(MaskedLMError, match="no token was masked"):
        masked_lm_loss(bert, wordpiece, ["Haus"], rate=0.01)


def test_pipeline_reports_masked_lm_loss_for_a_bert_source(tmp_path: Path, tiny_corpus: Path) -> None:
    """The whole path with a masked-LM source: evaluate writes metric/value, no bpb key."""
    from transfer.pipeline import run_adaptation
    from transfer.settings.config import AdaptConfig

    source_tok = tiny_wordpiece_tokenizer(ENGLISH, 200)
    source_dir = tmp_path / "tiny-bert"
    save_model(tiny_bert(len(source_tok), pad_token_id=source_tok.pad_token_id), source_tok,
               source_dir)
    cfg = AdaptConfig(
        source_model=str(source_dir), target_language="de", target_bible=[], source_bible=[],
        target_files=[str(tiny_corpus)], vocab_size=150, min_frequency=1, train_steps=0,
        eval_texts=8, dev_fraction=0.1, test_fraction=0.1, device="cpu", strategy="mean",
        cache_dir=tmp_path / "cache", output_dir=tmp_path / "models", register_model=False,
    )
    result = run_adaptation(cfg)
    assert set(result.scores) == {"source_model_on_target", "adapted_step0"}
    # each value is masked_lm_loss of that model on the first 8 held-out test texts
    from transfer.source.loading import load_source

    corpus = tmp_path / "cache" / "corpus" / result.stage_keys["corpus"]
    texts = (corpus / "test.target.txt").read_text(encoding="utf-8").splitlines()[:8]
    expected = {}
    for label, folder in (("source_model_on_target", source_dir), ("adapted_step0", Path(result.model_dir))):
        model, tokenizer = load_source(str(folder))
        expected[label] = masked_lm_loss(model, tokenizer, texts, device="cpu")
        # the evaluate stage's very call (score_model, batch 16, seed 0) on the same saved
        # weights in this process: the same float operations, so equal; JSON keeps floats exactly
        assert result.scores[label] == pytest.approx(expected[label].loss, rel=1e-9), label
    metrics = sorted((tmp_path / "cache" / "evaluate").glob("*/metrics.json"))
    assert len(metrics) == 2
    for path in metrics:
        data = json.loads(path.read_text())
        assert data["metric"] == "mlm_loss" and "bpb" not in data
        assert data["value"] == data["loss"]
        assert data["n_masked"] in {r.n_masked for r in expected.values()}
