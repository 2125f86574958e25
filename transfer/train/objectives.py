"""Training objectives: causal LM for decoders, masked LM (BERT's 15 %, 80/10/10) for encoders.

Both return the *summed* token loss and the number of scored tokens, not a mean: the
trainer divides by the number of scored tokens of the whole optimizer step (all
accumulation micro-batches, all processes), so a step's gradient does not depend on how the
step is split into micro-batches or over processes.

The causal loss is computed without the whole float32 logits by default (``kernel``:
``transfer/train/linear_cross_entropy.py``): for the length of one forward pass the output
head's ``forward`` is replaced by one that returns the summed loss of its input hidden
states, so the model is still called as a whole, through whatever wraps it
(DistributedDataParallel's gradient hooks, FSDP2's gathering of the head's weights,
``torch.compile``, autocast).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from transfer.errors import TrainingError
from transfer.source.objective import Objective
from transfer.train.linear_cross_entropy import (
    IGNORE_INDEX,
    KernelChoice,
    LossKernel,
    choose_loss_kernel,
    fused_linear_cross_entropy,
    linear_cross_entropy,
)

_log = logging.getLogger(__name__)

@dataclass
class MicroBatch:
    """Model inputs, labels (``IGNORE_INDEX`` where unscored) and the scored-token count."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    n_targets: int

    def to(self, device: torch.device) -> MicroBatch:
        return MicroBatch(self.input_ids.to(device), self.labels.to(device), self.n_targets)


def _sample_seed(seed: int, position: int) -> int:
    # A mask depends only on (seed, position of the sample in the data order), never on how
    # samples were grouped into micro-batches or processes, nor on a resume.
    return (seed * 1_000_003 + position * 7919 + 12345) % (2**63 - 1)


def make_batch(
    rows: torch.Tensor,
    positions: torch.Tensor,
    objective: Objective,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    seed: int = 0,
    mlm_rate: float = 0.15,
) -> MicroBatch:
    """Build a micro-batch from packed ``rows`` whose sample positions are ``positions``."""
    if objective == "causal":
        # Position t predicts t + 1: every token but each row's first is scored.
        return MicroBatch(rows, rows, rows.size(0) * (rows.size(1) - 1))
    if objective != "masked":
        raise TrainingError(f"objective must be 'causal' or 'masked', got {objective!r}")
    if tokenizer is None:
        raise TrainingError("the masked-LM objective needs the tokenizer (mask token, special ids)")
    from transfer.evaluate.masked_lm import mask_tokens

    inputs, labels = [], []
    for row, position in zip(rows, positions.tolist(), strict=True):
        generator = torch.Generator().manual_seed(_sample_seed(seed, int(position)))
        masked, target = mask_tokens(row[None], tokenizer, rate=mlm_rate, generator=generator)
        inputs.append(masked)
        labels.append(target)
    labels_t = torch.cat(labels)
    return MicroBatch(torch.cat(inputs), labels_t, int((labels_t != IGNORE_INDEX).sum()))


def loss_sum(model: torch.nn.Module, batch: MicroBatch, objective: Objective, *,
             kernel: LossKernel = "auto") -> torch.Tensor:
    """Summed cross-entropy (nats, float32) over the batch's scored tokens. ``kernel``
    (``loss_kernel``): 'full' the whole logits; 'chunked' the head and the loss per chunk of
    positions; 'fused' a fused CUDA kernel; 'auto' fused on CUDA when one is installed,
    else chunked. A model the chunked kernel cannot serve (a masked LM, a head that changes
    its logits afterwards) trains on the whole logits (``choose_loss_kernel``)."""
    labels = batch.labels
    if objective == "causal":
        # Shift the labels, not the logits: slicing the (batch, block, vocab) logits would
        # copy the largest tensor of the step (and its gradient) only to drop one column.
        labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    base = unwrapped(model)
    choice = _kernel_choice(base, objective, kernel, batch.input_ids.device.type)
    if choice.kernel != "full":
        summed = _head_loss(model, base, batch.input_ids, labels, choice)
        if summed is not None:
            return summed
    return _full_loss(model, batch.input_ids, labels)


def _full_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=input_ids).logits
    vocab = logits.size(-1)
    # float32 softmax even under bf16 autocast: low-precision log-softmax over a large
    # vocabulary loses the small probabilities that the loss is made of.
    return F.cross_entropy(
        logits.reshape(-1, vocab).float(),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DistributedDataParallel and ``torch.compile`` wrappers (FSDP2
    shards the module itself: nothing to unwrap)."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel | torch.nn.DataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


@dataclass
class _HeadState:
    """What the replaced head's forward needs and returns, for one call at a time."""

    choice: KernelChoice
    labels: torch.Tensor | None = None
    result: torch.Tensor | None = None
    forward: object = field(default=None, repr=False)


#: per model: the kernel chosen for (requested, device type), and the head's state
_CHOICES: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[str, str, str], KernelChoice]] = \
    weakref.WeakKeyDictionary()
_STATES: weakref.WeakKeyDictionary[torch.nn.Module, _HeadState] = weakref.WeakKeyDictionary()


def _kernel_choice(base: torch.nn.Module, objective: str, kernel: LossKernel, device_type: str) -> KernelChoice:
    choices = _CHOICES.setdefault(base, {})
    key = (kernel, objective, device_type)
    if key not in choices:
        get_head = getattr(base, "get_output_embeddings", None)
        choice = choose_loss_kernel(kernel, objective=objective, config=getattr(base, "config", None),
                                    head=get_head() if get_head else None, device_type=device_type)
        if choice.note:
            _log.warning(choice.note)
        choices[key] = choice
    return choices[key]


def _projection_loss(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor,
                     choice: KernelChoice) -> torch.Tensor:
    """The summed loss of the logits ``head(hidden)`` would give, without them."""
    embedding = getattr(head, "embedding", None)
    if embedding is not None and hasattr(embedding, "primitives"):
        # OFA's factorized head: hidden @ P.T @ F.T, so the projection is by the coordinates F
        hidden, weight = F.linear(hidden, embedding.primitives), embedding.coordinates
    else:
        weight = head.weight
    bias = getattr(head, "bias", None)
    if choice.kernel == "fused":
        assert choice.library is not None
        return fused_linear_cross_entropy(hidden, weight, labels, bias, library=choice.library)
    return linear_cross_entropy(hidden, weight, labels, bias)


def _head_state(head: torch.nn.Module, choice: KernelChoice) -> _HeadState:
    """One state and one replacement forward per head, so ``torch.compile``'s guards see
    the same function on every call (the loss itself runs outside the compiled graph)."""
    state = _STATES.get(head)
    if state is None:
        state = _HeadState(choice)
        head_ref = weakref.ref(head)  # the state is the head's entry: no strong reference back

        def forward(hidden: torch.Tensor) -> torch.Tensor:
            owner = head_ref()
            if state.labels is None or owner is None:
                raise TrainingError("the loss head was called outside loss_sum")
            state.result = _projection_loss(owner, hidden, state.labels, state.choice)
            return state.result

        state.forward = torch.compiler.disable(forward)
        _STATES[head] = state
    state.choice = choice
    return state


def _head_loss(model: torch.nn.Module, base: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
               choice: KernelChoice) -> torch.Tensor | None:
    """The model called whole with its head replaced by the loss; None when the model did
    not hand the head's output on unchanged (then the whole-logits path is remembered for
    this model, with a note)."""
    head = base.get_output_embeddings()
    state = _head_state(head, choice)
    own = head.__dict__.get("forward")
    head.forward = state.forward
    state.labels, state.result = labels.reshape(-1), None
    try:
        out = model(input_ids=input_ids)
    finally:
        if own is None:
            del head.forward
        else:
            head.forward = own
        result, state.labels, state.result = state.result, None, None
    if result is not None and getattr(out, "logits", None) is result:
        return result
    note = (f"{type(base).__name__} changes the output head's logits before returning them (or never calls "
            "the head): it trains on the whole logits")
    _log.warning(note)
    choices = _CHOICES.setdefault(base, {})
    for key, value in list(choices.items()):
        if value is choice:
            choices[key] = KernelChoice("full", note=note)
    return None
