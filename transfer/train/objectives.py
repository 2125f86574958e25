"""Training objectives: causal LM for decoders, masked LM (BERT's 15 %, 80/10/10) for encoders.

Both return the *summed* token loss and the number of scored tokens, not a mean: the
trainer divides by the number of scored tokens of the whole optimizer step (all
accumulation micro-batches, all processes), so a step's gradient does not depend on how the
step is split into micro-batches or over processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from transfer.errors import TrainingError
from transfer.source.objective import Objective

IGNORE_INDEX = -100  # label of unscored positions (the convention of transformers' losses)


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


def loss_sum(model: torch.nn.Module, batch: MicroBatch, objective: Objective) -> torch.Tensor:
    """Summed cross-entropy (nats, float32) over the batch's scored tokens."""
    logits = model(input_ids=batch.input_ids).logits
    vocab = logits.size(-1)
    labels = batch.labels
    if objective == "causal":
        # Shift the labels, not the logits: slicing the (batch, block, vocab) logits would
        # copy the largest tensor of the step (and its gradient) only to drop one column.
        labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    # float32 softmax even under bf16 autocast: low-precision log-softmax over a large
    # vocabulary loses the small probabilities that the loss is made of.
    return F.cross_entropy(
        logits.reshape(-1, vocab).float(),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
