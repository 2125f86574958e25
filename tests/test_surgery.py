"""Model surgery: read source matrices, swap in target ones, save, reload with plain HF."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
)

from tests.tiny import (
    ENGLISH_SENTENCES,
    GERMAN_SENTENCES,
    tiny_bert,
    tiny_byte_bpe_tokenizer,
    tiny_gpt2,
    tiny_llama,
    tiny_wordpiece_tokenizer,
)
from transfer.init import StrategyInputs, initialize
from transfer.init.base import InitReport, TargetEmbeddings
from transfer.init.surgery import SurgeryError, get_source_embeddings, is_tied, swap_vocabulary
from transfer.source.loading import save_model


def _llama(source_tok, tie: bool):
    vocab = source_tok.get_vocab()
    return tiny_llama(
        len(source_tok),
        tie=tie,
        bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|im_end|>"],
    )


def _logits(model, tok, text: str = GERMAN_SENTENCES[2]) -> torch.Tensor:
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


def test_source_embeddings_tied_untied_and_bias(source_tok) -> None:
    tied = get_source_embeddings(_llama(source_tok, tie=True))
    assert tied.tied and tied.output_bias is None and tied.input.shape == (len(source_tok), 32)
    model = _llama(source_tok, tie=False)
    untied = get_source_embeddings(model)
    assert not untied.tied and torch.equal(untied.output, model.lm_head.weight)
    untied.input.zero_()  # copies, not views
    assert model.model.embed_tokens.weight.abs().sum() > 0
    bert = tiny_bert(50)
    source = get_source_embeddings(bert)
    assert source.tied and torch.equal(source.output_bias, bert.cls.predictions.bias)
    assert get_source_embeddings(tiny_gpt2(50)).tied


@pytest.mark.parametrize("tie", [True, False])
def test_swap_save_reload_identical(tie: bool, source_tok, target_tok, tmp_path: Path) -> None:
    model = _llama(source_tok, tie=tie)
    target = initialize(
        "overlap", StrategyInputs(get_source_embeddings(model), source_tok, target_tok)
    )
    swap_vocabulary(model, target_tok, target, source_tokenizer=source_tok)
    assert torch.equal(model.get_input_embeddings().weight, target.input)
    if not tie:
        assert torch.equal(model.get_output_embeddings().weight, target.output)
    assert is_tied(model) == tie

    save_model(model, target_tok, tmp_path / "adapted")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "adapted").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "adapted")
    assert torch.equal(_logits(model, target_tok), _logits(reloaded, tok))
    assert _logits(reloaded, tok).shape[-1] == len(target_tok)
    out_ptr = reloaded.get_output_embeddings().weight.data_ptr()
    assert (out_ptr == reloaded.get_input_embeddings().weight.data_ptr()) == tie

    vocab = target_tok.get_vocab()
    config = reloaded.config
    assert config.vocab_size == len(target_tok)
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (
        vocab["<s>"],
        vocab["</s>"],
        vocab["<pad>"],
    )
    generation = reloaded.generation_config
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == (
        vocab["<s>"],
        vocab["</s>"],
        vocab["<pad>"],
    )
    ids = tok(GERMAN_SENTENCES[0], return_tensors="pt")
    generated = reloaded.generate(**ids, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert generated.shape[1] == ids.input_ids.shape[1] + 5


def test_generation_stop_list_is_mapped_by_role(source_tok, target_tok) -> None:
    model = _llama(source_tok, tie=True)
    vocab = source_tok.get_vocab()
    model.generation_config.eos_token_id = [vocab["<|im_end|>"], vocab["<|endoftext|>"]]
    target = initialize(
        "mean", StrategyInputs(get_source_embeddings(model), source_tok, target_tok)
    )
    swap_vocabulary(model, target_tok, target, source_tokenizer=source_tok)
    target_vocab = target_tok.get_vocab()
    assert model.generation_config.eos_token_id == [target_vocab["</s>"], target_vocab["<unk>"]]


def test_bert_bias_is_carried_and_tied(tmp_path: Path) -> None:
    source_tok = tiny_wordpiece_tokenizer(ENGLISH_SENTENCES)
    target_tok = tiny_wordpiece_tokenizer(GERMAN_SENTENCES, 250)
    model = tiny_bert(len(source_tok))
    target = initialize(
        "overlap", StrategyInputs(get_source_embeddings(model), source_tok, target_tok)
    )
    swap_vocabulary(model, target_tok, target)
    head = model.get_output_embeddings()
    assert torch.equal(head.bias, target.output_bias) and torch.equal(
        model.cls.predictions.bias, target.output_bias
    )
    assert is_tied(model) and model.config.pad_token_id == target_tok.pad_token_id
    save_model(model, target_tok, tmp_path / "bert")
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "bert").eval()
    assert torch.equal(_logits(model, target_tok), _logits(reloaded, target_tok))


def _target(rows: int, dim: int, *, output: bool = False, bias: bool = False) -> TargetEmbeddings:
    report = InitReport("test", {}, rows, ["computed"] * rows)
    return TargetEmbeddings(
        torch.zeros(rows, dim),
        torch.zeros(rows, dim) if output else None,
        torch.zeros(rows) if bias else None,
        report,
    )


def test_shape_and_kind_errors(source_tok, target_tok) -> None:
    n = len(target_tok)
    tied, untied, bert = _llama(source_tok, True), _llama(source_tok, False), tiny_bert(40)
    with pytest.raises(SurgeryError, match=rf"\({n - 1}, 32\).*\({n}, 32\).*target-tokenizer"):
        swap_vocabulary(tied, target_tok, _target(n - 1, 32))
    with pytest.raises(SurgeryError, match="hidden size"):
        swap_vocabulary(tied, target_tok, _target(n, 31))
    with pytest.raises(SurgeryError, match="ties its output head"):
        swap_vocabulary(tied, target_tok, _target(n, 32, output=True))
    with pytest.raises(SurgeryError, match="untied output head"):
        swap_vocabulary(untied, target_tok, _target(n, 32))
    with pytest.raises(SurgeryError, match="has no bias"):
        swap_vocabulary(tied, target_tok, _target(n, 32, bias=True))
    with pytest.raises(SurgeryError, match="has a bias"):
        swap_vocabulary(bert, target_tok, _target(n, 32))
    assert tied.config.vocab_size == len(source_tok)  # nothing changed on refusal


@pytest.mark.slow
def test_real_smollm2_swap_to_german_tokenizer(smollm2, tmp_path: Path) -> None:
    import copy

    source_model, source_tok = smollm2
    model = copy.deepcopy(source_model)  # the session fixture stays untouched
    target_tok = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 400)
    target = initialize(
        "overlap", StrategyInputs(get_source_embeddings(model), source_tok, target_tok)
    )
    # SmolLM2's vocabulary lacks 21 byte characters (e.g. 0xC0, 0xFF: never valid UTF-8)
    assert target.report.counts["special"] == 3 and target.report.counts["byte"] == 235
    swap_vocabulary(model, target_tok, target, source_tokenizer=source_tok)
    save_model(model, target_tok, tmp_path / "smol-de")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "smol-de").eval()
    assert (
        reloaded.get_output_embeddings().weight.data_ptr()
        == reloaded.get_input_embeddings().weight.data_ptr()
    )
    assert torch.equal(_logits(model, target_tok), _logits(reloaded, target_tok))
    # "Gott" is spelled the same in both vocabularies: its row is the source's row
    gott = target_tok.get_vocab()["ĠGott"]
    assert torch.equal(
        reloaded.get_input_embeddings().weight[gott],
        source_model.get_input_embeddings().weight[source_tok.get_vocab()["ĠGott"]],
    )
    assert (
        reloaded.config.eos_token_id
        == target_tok.eos_token_id
        == target_tok.get_vocab()["<|im_end|>"]
    )


def test_roberta_pad_id_must_stay_where_positions_start() -> None:
    """RoBERTa numbers positions from its pad id: a target that moves <pad> is refused."""
    from tests.tiny import ROBERTA_SPECIALS, tiny_roberta, tiny_roberta_tokenizer
    from transfer.init.surgery import position_padding_id

    source_tok = tiny_roberta_tokenizer(ENGLISH_SENTENCES, 300)
    model = tiny_roberta(len(source_tok), pad_token_id=source_tok.pad_token_id)
    assert position_padding_id(model) == 1 and position_padding_id(tiny_bert(30)) is None
    # the same specials, but <pad> first: id 0 instead of 1
    moved = tiny_byte_bpe_tokenizer(
        GERMAN_SENTENCES, 300, specials=("<pad>", *[s for s in ROBERTA_SPECIALS if s != "<pad>"]),
        pad="<pad>", bos="<s>", eos="</s>", unk="<unk>",
    )
    target = initialize("mean", StrategyInputs(get_source_embeddings(model), source_tok, moved))
    with pytest.raises(SurgeryError, match="pad id 1.*must keep id 1; it has 0"):
        swap_vocabulary(model, moved, target)
    assert model.config.vocab_size == len(source_tok)  # refused before any change
