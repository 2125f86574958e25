"""Frozen vocabulary rows: the source's own tokens keep their trained rows while the
appended ones train (vocabulary extension, ``freeze_source_rows``).

Extending a vocabulary instead of replacing it is meant to keep what the model knew in its
own language (issue 17); freezing the source's rows during continued pretraining keeps its
token representations exactly, so only the appended rows (and, in a ``full`` stage, the
body) learn the new language. Rows ``0 .. n - 1`` of every vocabulary-indexed tensor stay
as they start: the input embedding matrix, and an untied output head with its bias (a tied
head *is* the input matrix).

Two things would move a frozen row, and each is handled:

- its gradient, zeroed before clipping, so the rows neither count in the clipping norm
  (which would shrink the new rows' updates) nor build up AdamW moments;
- AdamW's decoupled weight decay, which shrinks every row of a decayed matrix whatever its
  gradient. The frozen slices are copied back after each optimizer step instead of
  splitting the matrix into a frozen and a trainable parameter: a split would change the
  model's modules, which saving, tied heads, checkpoints, the model fingerprint, DDP and
  the memory estimate all see, while the copy leaves the model as it is, costs one
  ``n x d`` copy per step and makes the guarantee exact (the bytes written back are the
  bytes the stage started with).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel

from transfer.errors import TrainingError

# Output biases that live outside the head module (BART/Marian's ``final_logits_bias``,
# shape (1, vocab)): the vocabulary is their last axis.
_EXTRA_BIAS_NAMES = ("final_logits_bias",)


@dataclass(frozen=True)
class VocabularyTensor:
    """A parameter indexed by token id along ``axis``, and what it is (for messages)."""

    name: str
    param: torch.nn.Parameter
    axis: int


def _add(found: list[VocabularyTensor], name: str, param: object, axis: int) -> None:
    if isinstance(param, torch.nn.Parameter) and all(param is not t.param for t in found):
        found.append(VocabularyTensor(name, param, axis))


def vocabulary_tensors(model: PreTrainedModel) -> list[VocabularyTensor]:
    """The input embedding matrix, then an untied head weight and the output bias (each
    once: a tied head or bias is the same parameter)."""
    embeddings = model.get_input_embeddings()
    weight = getattr(embeddings, "weight", None)
    if not isinstance(weight, torch.nn.Parameter) or weight.dim() != 2:
        raise TrainingError(
            f"freeze_source_rows needs an input embedding with a (vocab, width) weight matrix; "
            f"{type(embeddings).__name__} has none (a factorized OFA embedding cannot freeze single rows)")
    found: list[VocabularyTensor] = []
    _add(found, "input embedding", weight, 0)
    head = model.get_output_embeddings()
    if head is not None:
        _add(found, "output head", getattr(head, "weight", None), 0)
        _add(found, "output bias", getattr(head, "bias", None), 0)
    for name, param in model.named_parameters():
        if name.endswith(_EXTRA_BIAS_NAMES):
            _add(found, name, param, param.dim() - 1)
    return found


def check_frozen_rows(model: PreTrainedModel, n_rows: int) -> None:
    """Refuse ``n_rows`` that some vocabulary tensor does not have (before any training)."""
    if n_rows < 0:
        raise TrainingError(f"frozen_rows must be >= 0, got {n_rows}")
    if n_rows == 0:
        return
    for tensor in vocabulary_tensors(model):
        size = tensor.param.shape[tensor.axis]
        if size < n_rows:
            raise TrainingError(f"frozen_rows={n_rows} but the model's {tensor.name} has only {size} rows")


@dataclass
class FrozenRows:
    """Rows ``0 .. n_rows - 1`` of the trainable vocabulary tensors, and their values at the
    stage's start. Call :meth:`zero_gradients` after the backward passes (before clipping)
    and :meth:`restore` after the optimizer step."""

    n_rows: int
    tensors: list[VocabularyTensor]
    saved: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def capture(cls, model: PreTrainedModel, n_rows: int) -> FrozenRows | None:
        """The frozen rows of ``model``'s trainable vocabulary tensors (None when ``n_rows`` is
        0); taken where the model trains (after it moved to its device)."""
        if n_rows == 0:
            return None
        check_frozen_rows(model, n_rows)
        tensors = [t for t in vocabulary_tensors(model) if t.param.requires_grad]
        saved = [t.param.detach().narrow(t.axis, 0, n_rows).clone() for t in tensors]
        return cls(n_rows, tensors, saved)

    def zero_gradients(self) -> None:
        for tensor in self.tensors:
            if tensor.param.grad is not None:
                tensor.param.grad.narrow(tensor.axis, 0, self.n_rows).zero_()

    @torch.no_grad()
    def restore(self) -> None:
        for tensor, saved in zip(self.tensors, self.saved, strict=True):
            tensor.param.narrow(tensor.axis, 0, self.n_rows).copy_(saved)
