"""The chunked linear cross-entropy (``transfer/train/linear_cross_entropy.py``) gives the
loss and the gradients of the whole-logits path, and ``loss_sum`` picks the kernel a model
can train with.

Tolerances: in float32 the two paths differ only in summation order (chunk partial sums,
float32 log-sum-exp of the same logits), a few ulps of values of order 1-10 (1e-6 relative
seen); 1e-4 is the issue's bound, far above it. Under bf16 autocast both paths run the head's
matmul in bfloat16 on the same inputs, and the loss and every gradient but the head's weight
agree to 1e-4 (5e-7 seen). The head's weight gradient is one bfloat16 matmul over all positions
in the whole path, rounded to bfloat16 once (2^-8 relative, 1.2e-4 seen on values of 0.07),
while the chunked path adds its chunks' products in float32: that gradient is compared with
the whole path's own rounding, rtol 2^-8, on top of 1e-4.
"""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from transformers import Gemma2Config, Gemma2ForCausalLM

import transfer.train.linear_cross_entropy as lce
from tests.tiny import tiny_bert, tiny_gpt2, tiny_llama
from transfer.errors import TrainingError
from transfer.train.linear_cross_entropy import (
    IGNORE_INDEX,
    choose_loss_kernel,
    fused_linear_cross_entropy,
    linear_cross_entropy,
    loss_memory_bytes,
)
from transfer.train.objectives import MicroBatch, loss_sum

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = 300
ATOL = 1e-4


def _batch(rows: int = 3, block: int = 37, *, seed: int = 1) -> MicroBatch:
    ids = torch.randint(0, VOCAB, (rows, block), generator=torch.Generator().manual_seed(seed))
    labels = ids.clone()
    labels[0, 5:12] = IGNORE_INDEX  # unscored positions, as a masked or padded batch has
    labels[2, :3] = IGNORE_INDEX
    return MicroBatch(ids, labels, int((labels[:, 1:] != IGNORE_INDEX).sum()))


def _loss_and_grads(model: torch.nn.Module, batch: MicroBatch, kernel: str, *, bf16: bool = False,
                    objective: str = "causal") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The mean per-token loss and the gradients of its parameters (by name)."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        summed = loss_sum(model, batch, objective, kernel=kernel)
    mean = summed / batch.n_targets
    mean.backward()
    return mean.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(model: torch.nn.Module, batch: MicroBatch, *, bf16: bool = False) -> None:
    full_loss, full_grads = _loss_and_grads(model, batch, "full", bf16=bf16)
    chunked_loss, chunked_grads = _loss_and_grads(model, batch, "chunked", bf16=bf16)
    assert torch.allclose(full_loss, chunked_loss, atol=ATOL, rtol=0)
    assert set(full_grads) == set(chunked_grads)  # every parameter gets its gradient, once
    head = model.get_output_embeddings()
    head_params = [head.embedding.coordinates] if hasattr(head, "embedding") else [head.weight]
    head_names = {n for n, p in model.named_parameters() if any(p is q for q in head_params)}
    for name, grad in full_grads.items():
        rtol = 2**-8 if bf16 and name in head_names else 0.0  # the whole path's bf16 rounding
        assert torch.allclose(grad, chunked_grads[name], atol=ATOL, rtol=rtol), name


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # the smallest chunk, 64 positions: a batch of 3 x 37 = 111 is two chunks, 64 + 47
    monkeypatch.setattr(lce, "CHUNK_LOGITS_BYTES", 1)
    assert lce.chunk_rows(VOCAB) == 64


# ---------------------------------------------------------------- the function itself

@pytest.mark.parametrize("with_bias", [False, True])
def test_loss_and_gradients_match_the_whole_logits(with_bias: bool) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(VOCAB, 16, requires_grad=True)
    bias = torch.randn(VOCAB, requires_grad=True) if with_bias else None
    labels = torch.randint(0, VOCAB, (50,))
    labels[[0, 7, 49]] = IGNORE_INDEX
    reference = F.cross_entropy(F.linear(hidden, weight, bias), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    expected = torch.autograd.grad(reference, [hidden, weight, *([bias] if with_bias else [])])
    chunked = linear_cross_entropy(hidden, weight, labels, bias, chunk_size=7)  # 7 does not divide 50
    got = torch.autograd.grad(chunked, [hidden, weight, *([bias] if with_bias else [])])
    assert torch.allclose(chunked, reference, atol=ATOL, rtol=0)
    for want, have in zip(expected, got, strict=True):
        assert torch.allclose(want, have, atol=ATOL, rtol=0)


def test_a_float64_model_keeps_float64_gradients() -> None:
    # as the whole path: a float32 softmax (``logits.float()``), float64 matmuls and sums, so
    # two chunkings of the same positions differ by float64 summation order only (the
    # trainer's accumulation test compares float64 weights at 1e-9)
    torch.manual_seed(0)
    hidden = torch.randn(40, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(VOCAB, 16, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, VOCAB, (40,))
    reference = F.cross_entropy(F.linear(hidden, weight).float(), labels, reduction="sum")
    expected = torch.autograd.grad(reference, [hidden, weight])
    one = torch.autograd.grad(linear_cross_entropy(hidden, weight, labels, chunk_size=40), [hidden, weight])
    nine = torch.autograd.grad(linear_cross_entropy(hidden, weight, labels, chunk_size=9), [hidden, weight])
    for want, whole, chunked in zip(expected, one, nine, strict=True):
        assert chunked.dtype == torch.float64
        assert torch.allclose(want, chunked, atol=ATOL, rtol=0)  # float32 softmax rounding apart
        assert torch.allclose(whole, chunked, atol=1e-12, rtol=0)


def test_only_the_inputs_that_train_get_a_gradient() -> None:
    hidden = torch.randn(20, 8, requires_grad=True)
    weight = torch.randn(40, 8)  # a frozen head
    loss = linear_cross_entropy(hidden, weight, torch.randint(0, 40, (20,)), chunk_size=6)
    loss.backward()
    assert hidden.grad is not None and weight.grad is None


def test_every_position_unscored_is_a_zero_loss_and_zero_gradient() -> None:
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(40, 8, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.full((10,), IGNORE_INDEX), chunk_size=3)
    loss.backward()
    assert loss.item() == 0.0
    assert not hidden.grad.any() and not weight.grad.any()


# ---------------------------------------------------------------- through loss_sum and a model

@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("bf16", [False, True])
def test_llama_chunked_equals_full(small_chunks: None, tie: bool, bf16: bool) -> None:
    model = tiny_llama(VOCAB, tie=tie).train()
    if tie:  # the tied head is the embedding: its gradient is the sum of both uses, once
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    _assert_same(model, _batch(), bf16=bf16)


def test_head_with_a_bias(small_chunks: None) -> None:
    model = tiny_llama(VOCAB, tie=False).train()
    head = torch.nn.Linear(32, VOCAB, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.get_output_embeddings().weight)
        head.bias.normal_(0.0, 0.5)
    model.set_output_embeddings(head)
    _assert_same(model, _batch())
    _, grads = _loss_and_grads(model, _batch(), "chunked")
    assert "lm_head.bias" in grads and grads["lm_head.bias"].abs().sum() > 0


def test_gpt2_tied_head(small_chunks: None) -> None:
    # dropout off: both paths must see the same forward
    model = tiny_gpt2(VOCAB, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0).train()
    _assert_same(model, _batch())


def test_factorized_ofa_head(small_chunks: None) -> None:
    from transfer.init.factorized import FactorizedHead, factorize_model

    model = tiny_llama(VOCAB, tie=True).train()
    factorize_model(model, rank=8)
    assert isinstance(model.get_output_embeddings(), FactorizedHead)
    assert lce.head_weights(model.get_output_embeddings())[0] is not None
    _assert_same(model, _batch())


def test_compiled_model_trains_with_the_chunked_loss(small_chunks: None) -> None:
    # the replaced head runs outside the compiled graph; the wrapper is looked through
    model = tiny_llama(VOCAB, tie=False).train()
    compiled = torch.compile(model, backend="eager")
    batch = _batch()
    _, full_grads = _loss_and_grads(model, batch, "full")
    model.zero_grad(set_to_none=True)
    (loss_sum(compiled, batch, "causal", kernel="chunked") / batch.n_targets).backward()
    assert torch.allclose(model.lm_head.weight.grad, full_grads["lm_head.weight"], atol=ATOL, rtol=0)


def test_head_forward_is_restored_after_the_loss() -> None:
    model = tiny_llama(VOCAB, tie=False).train()
    loss_sum(model, _batch(), "causal", kernel="chunked")
    assert "forward" not in model.lm_head.__dict__
    assert model(input_ids=_batch().input_ids).logits.shape == (3, 37, VOCAB)


# ---------------------------------------------------------------- which kernel

def test_masked_lm_trains_on_the_whole_logits() -> None:
    model = tiny_bert(VOCAB)
    choice = choose_loss_kernel("auto", objective="masked", config=model.config,
                                head=model.get_output_embeddings(), device_type="cpu")
    assert choice.kernel == "full" and choice.note is None
    asked = choose_loss_kernel("chunked", objective="masked", config=model.config,
                               head=model.get_output_embeddings(), device_type="cpu")
    assert asked.kernel == "full" and "masked" in asked.note


def test_soft_capped_head_trains_on_the_whole_logits() -> None:
    config = Gemma2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=30.0)
    model = Gemma2ForCausalLM(config).train()
    choice = choose_loss_kernel("chunked", objective="causal", config=model.config,
                                head=model.get_output_embeddings(), device_type="cpu")
    assert choice.kernel == "full" and "final_logit_softcapping=30.0" in choice.note
    batch = _batch()
    full, _ = _loss_and_grads(model, batch, "full")
    chunked, _ = _loss_and_grads(model, batch, "chunked")
    assert torch.equal(full, chunked)  # the same path


class _HalvedLogits(torch.nn.Module):
    """A model that changes its head's output under a name the config check does not know."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.inner.get_output_embeddings()

    def forward(self, input_ids: torch.Tensor):
        out = self.inner(input_ids=input_ids)
        out.logits = out.logits / 2
        return out


def test_an_unknown_change_of_the_logits_falls_back_to_the_whole_logits(caplog: pytest.LogCaptureFixture) -> None:
    model = _HalvedLogits(tiny_llama(VOCAB, tie=False)).train()
    batch = _batch()
    full, _ = _loss_and_grads(model, batch, "full")
    with caplog.at_level(logging.WARNING):
        first, _ = _loss_and_grads(model, batch, "chunked")
    assert torch.allclose(full, first, atol=ATOL, rtol=0)
    assert "whole logits" in caplog.text
    caplog.clear()
    again, _ = _loss_and_grads(model, batch, "chunked")  # remembered: no second try
    assert torch.allclose(full, again, atol=ATOL, rtol=0) and not caplog.text


def test_auto_is_chunked_on_a_cpu_and_fused_is_refused_there() -> None:
    model = tiny_llama(VOCAB)
    kwargs = {"objective": "causal", "config": model.config, "head": model.get_output_embeddings()}
    assert choose_loss_kernel("auto", device_type="cpu", **kwargs).kernel == "chunked"
    assert choose_loss_kernel("full", device_type="cpu", **kwargs).kernel == "full"
    with pytest.raises(TrainingError, match="needs a CUDA device"):
        choose_loss_kernel("fused", device_type="cpu", **kwargs)
    with pytest.raises(TrainingError, match="loss_kernel must be"):
        choose_loss_kernel("fast", device_type="cpu", **kwargs)


def test_fused_is_refused_without_a_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lce, "fused_library", lambda: None)
    model = tiny_llama(VOCAB)
    with pytest.raises(TrainingError, match="Liger Kernel or cut-cross-entropy"):
        choose_loss_kernel("fused", objective="causal", config=model.config,
                           head=model.get_output_embeddings(), device_type="cuda")


def _fake_liger(monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    """A stand-in for ``liger_kernel`` with Liger's documented call: the loss module built
    with ``ignore_index`` and ``reduction``, called as ``(lin_weight, _input, target, bias)``."""

    class LigerFusedLinearCrossEntropyLoss:
        def __init__(self, ignore_index: int = -100, reduction: str = "mean") -> None:
            self.ignore_index, self.reduction = ignore_index, reduction

        def __call__(self, lin_weight, _input, target, bias=None):
            calls.append((lin_weight.shape, _input.shape, self.reduction))
            return F.cross_entropy(F.linear(_input, lin_weight, bias).float(), target,
                                   ignore_index=self.ignore_index, reduction=self.reduction)

    root = types.ModuleType("liger_kernel")
    root.__spec__ = importlib.machinery.ModuleSpec("liger_kernel", None)
    sub = types.ModuleType("liger_kernel.transformers")
    sub.LigerFusedLinearCrossEntropyLoss = LigerFusedLinearCrossEntropyLoss
    monkeypatch.setitem(sys.modules, "liger_kernel", root)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", sub)


def test_fused_kernel_is_called_as_liger_documents_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []
    _fake_liger(monkeypatch, calls)
    assert lce.fused_library() == "liger_kernel"
    model = tiny_llama(VOCAB)
    assert choose_loss_kernel("auto", objective="causal", config=model.config,
                              head=model.get_output_embeddings(), device_type="cuda").library == "liger_kernel"
    hidden = torch.randn(2, 9, 32)
    weight, bias = torch.randn(VOCAB, 32), torch.randn(VOCAB)
    labels = torch.randint(0, VOCAB, (2, 9))
    labels[0, 0] = IGNORE_INDEX
    fused = fused_linear_cross_entropy(hidden, weight, labels, bias, library="liger_kernel")
    chunked = linear_cross_entropy(hidden, weight, labels, bias, chunk_size=5)
    assert calls == [((VOCAB, 32), (18, 32), "sum")]
    assert torch.allclose(fused, chunked, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- the memory figure

def test_memory_figure_of_each_kernel() -> None:
    tokens, vocab, width = 32 * 1024, 49_152, 576
    full = loss_memory_bytes("full", tokens=tokens, vocab=vocab, width=width)
    assert full == 3 * tokens * vocab * 4  # 19.3 GB: the SmolLM2 figure at 32 x 1024
    chunked = loss_memory_bytes("chunked", tokens=tokens, vocab=vocab, width=width)
    assert chunked == 3 * lce.chunk_rows(vocab) * vocab * 4
    assert full / chunked == pytest.approx(tokens / lce.chunk_rows(vocab))
    # a bf16 matmul adds the cast weight and one chunk's weight gradient
    low = loss_memory_bytes("chunked", tokens=tokens, vocab=vocab, width=width, matmul_bytes=2)
    assert low == chunked + 2 * vocab * width * 2
    # fewer positions than a chunk: the chunk is the batch
    assert loss_memory_bytes("chunked", tokens=100, vocab=vocab, width=width) == \
        loss_memory_bytes("full", tokens=100, vocab=vocab, width=width)
