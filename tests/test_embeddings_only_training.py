"""The product's embeddings-only training recipe (``transfer.train.stage.training_config``,
what ``vocab-transfer adapt`` trains with) and block packing, on a tiny Llama and a tiny BPE."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from tests.tiny import tiny_llama
from transfer.errors import TrainingError
from transfer.evaluate.bpb import bits_per_byte as _bits_per_byte
from transfer.settings.config import AdaptConfig
from transfer.train import (
    TrainingCallback,
    TrainResult,
    freeze_all_but_embeddings,
    pack_blocks,
    train,
)
from transfer.train.stage import train_params, training_config

# Bit-exact comparisons run on the CPU even where a GPU exists; test_cuda_training covers
# the GPU path.
bits_per_byte = functools.partial(_bits_per_byte, device="cpu")


class _Losses(TrainingCallback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def on_step(self, step: int, metrics: dict) -> None:
        self.seen.append((step, metrics["loss"]))


def _train_embeddings_only(model, blocks, *, steps, batch_size, lr=5e-4, seed=0, device="cpu",
                           evaluate=None, callbacks=()) -> TrainResult:
    """The train stage's recipe for these settings (clipping and all), evaluated at step 0
    and at the end when ``evaluate`` is given."""
    cfg = AdaptConfig(train_steps=steps, batch_size=batch_size, learning_rate=lr, seed=seed,
                      eval_every=0, precision="fp32" if device == "cpu" else "auto")
    return train(model, blocks, training_config(train_params(cfg)), evaluate=evaluate,
                 device=device, callbacks=list(callbacks))


train_embeddings_only = functools.partial(_train_embeddings_only, device="cpu")

TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And God said, Let there be light: and there was light.",
    "Und Gott sprach: Es werde Licht! und es ward Licht.",
]
EMBEDDING_NAMES = ("model.embed_tokens.weight", "lm_head.weight", "lm_head.bias")


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE whose id 0 is <|endoftext|>."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(TEXTS * 5, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


@pytest.fixture(scope="module")
def blocks(tokenizer) -> torch.Tensor:
    return pack_blocks(tokenizer, TEXTS * 8, block_size=16)


def body_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if name not in EMBEDDING_NAMES
    }


def test_pack_blocks_content(tokenizer):
    stream: list[int] = []
    for text in TEXTS:
        stream += tokenizer(text, add_special_tokens=False).input_ids + [0]
    packed = pack_blocks(tokenizer, iter(TEXTS), block_size=7)
    n_blocks = len(stream) // 7
    assert packed.shape == (n_blocks, 7)
    assert packed.dtype == torch.long
    assert packed.flatten().tolist() == stream[: n_blocks * 7]  # remainder dropped

    custom = pack_blocks(tokenizer, TEXTS, block_size=7, separator_id=5)
    expected = [5 if i == 0 else i for i in stream]  # id 0 only appears as separator here
    assert all(0 not in tokenizer(t, add_special_tokens=False).input_ids for t in TEXTS)
    assert custom.flatten().tolist() == expected[: n_blocks * 7]


def test_pack_blocks_errors(tokenizer):
    with pytest.raises(TrainingError, match="block_size=1000"):
        pack_blocks(tokenizer, TEXTS, block_size=1000)
    with pytest.raises(TrainingError, match="block_size must be >= 2"):
        pack_blocks(tokenizer, TEXTS, block_size=1)
    with pytest.raises(TrainingError, match="not one string"):
        pack_blocks(tokenizer, "one text", block_size=4)
    with pytest.raises(TrainingError, match="separator_id"):
        pack_blocks(tokenizer, TEXTS, block_size=4, separator_id=-1)


def test_freeze_tied_and_untied(tokenizer):
    tied = tiny_llama(len(tokenizer))
    params = freeze_all_but_embeddings(tied)
    assert len(params) == 1 and params[0] is tied.model.embed_tokens.weight
    assert [n for n, p in tied.named_parameters() if p.requires_grad] == [
        "model.embed_tokens.weight"
    ]

    untied = tiny_llama(len(tokenizer), tie=False)
    params = freeze_all_but_embeddings(untied)
    assert [id(p) for p in params] == [
        id(untied.model.embed_tokens.weight),
        id(untied.lm_head.weight),
    ]

    with_bias = tiny_llama(len(tokenizer), tie=False)
    with_bias.lm_head = torch.nn.Linear(32, len(tokenizer), bias=True)
    params = freeze_all_but_embeddings(with_bias)
    assert params[-1] is with_bias.lm_head.bias and len(params) == 3


def test_training_lowers_loss_and_keeps_body(tokenizer, blocks):
    model = tiny_llama(len(tokenizer))
    body = body_state(model)
    embeddings = model.model.embed_tokens.weight.detach().clone()
    losses = _Losses()
    log = train_embeddings_only(model, blocks, steps=30, batch_size=4, lr=1e-2, callbacks=[losses])
    steps = losses.seen
    assert isinstance(log, TrainResult)
    assert log.steps == 30 and len(log.losses) == 30
    assert log.tokens_seen == 30 * 4 * 16
    assert log.seconds > 0
    assert [s for s, _ in steps] == list(range(1, 31))
    assert [v for _, v in steps] == log.losses
    assert sum(log.losses[-5:]) / 5 < log.losses[0] - 0.5
    # body bit-identical, embeddings changed
    for name, before in body.items():
        assert torch.equal(before, dict(model.named_parameters())[name]), name
    assert not torch.equal(embeddings, model.model.embed_tokens.weight)
    # handed back in eval mode, everything trainable again, no gradients kept
    assert not model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert log.to_dict()["steps"] == 30


def test_same_seed_same_losses(tokenizer, blocks):
    base = tiny_llama(len(tokenizer))
    runs = [
        train_embeddings_only(copy.deepcopy(base), blocks, steps=5, batch_size=2, seed=seed).losses
        for seed in (7, 7, 8)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_global_rng_untouched(tokenizer, blocks):
    model = tiny_llama(len(tokenizer))  # seeds the global RNG itself, so build first
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_embeddings_only(model, blocks, steps=2, batch_size=2)
    assert torch.equal(torch.rand(3), expected)


def test_evaluate_at_start_and_end(tokenizer, blocks):
    model = tiny_llama(len(tokenizer))
    seen: list[tuple[bool, int]] = []

    def evaluate(m) -> float:
        seen.append((m.training, len(seen)))
        return bits_per_byte(m, tokenizer, TEXTS).bpb

    log = train_embeddings_only(model, blocks, steps=20, batch_size=4, lr=1e-2, evaluate=evaluate)
    assert sorted(log.evaluations) == [0, 20]
    assert [training for training, _ in seen] == [False, False]  # evaluated in eval mode
    assert log.evaluations[20] < log.evaluations[0]
    # the same seeded float32 weights scored the same way: equal up to float64 rounding
    assert log.evaluations[0] == pytest.approx(
        bits_per_byte(tiny_llama(len(tokenizer)), tokenizer, TEXTS).bpb, rel=1e-6
    )


def test_untied_head_trains(tokenizer, blocks):
    model = tiny_llama(len(tokenizer), tie=False)
    body = body_state(model)
    head = model.lm_head.weight.detach().clone()
    embeddings = model.model.embed_tokens.weight.detach().clone()
    train_embeddings_only(model, blocks, steps=3, batch_size=2, lr=1e-2)
    assert not torch.equal(head, model.lm_head.weight)
    assert not torch.equal(embeddings, model.model.embed_tokens.weight)
    for name, before in body.items():
        assert torch.equal(before, dict(model.named_parameters())[name]), name


def test_train_bad_input(tokenizer, blocks):
    model = tiny_llama(len(tokenizer))
    with pytest.raises(ValueError, match="train_steps"):
        train_embeddings_only(model, blocks, steps=-1, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        train_embeddings_only(model, blocks, steps=1, batch_size=0)
    with pytest.raises(ValueError, match="learning_rate"):
        train_embeddings_only(model, blocks, steps=1, batch_size=1, lr=0.0)
    with pytest.raises(TrainingError, match="n_blocks, block_size"):
        train_embeddings_only(model, blocks[0], steps=1, batch_size=1)
    with pytest.raises(TrainingError, match="torch.long"):
        train_embeddings_only(model, blocks.float(), steps=1, batch_size=1)
    with pytest.raises(TrainingError, match="embedding rows"):
        train_embeddings_only(model, blocks + 10_000, steps=1, batch_size=1)
    # zero steps: only the step-0 evaluation
    log = train_embeddings_only(model, blocks, steps=0, batch_size=2, evaluate=lambda m: 1.25)
    assert log.evaluations == {0: 1.25} and log.steps == 0 and log.losses == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training(tokenizer, blocks):
    model = tiny_llama(len(tokenizer))
    body = body_state(model)
    log = _train_embeddings_only(
        model,
        blocks,
        steps=10,
        batch_size=4,
        lr=1e-2,
        device="cuda",
        evaluate=lambda m: _bits_per_byte(m, tokenizer, TEXTS).bpb,
    )
    assert next(model.parameters()).device.type == "cuda"
    assert log.evaluations[10] < log.evaluations[0]
    for name, before in body.items():
        assert torch.equal(before, dict(model.named_parameters())[name].cpu()), name
