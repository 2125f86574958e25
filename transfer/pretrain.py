"""Continued pretraining, minimal form: train the embeddings only, on packed token blocks.

This is the skeleton's loop, used to judge an initialization after a short fixed budget
(DESIGN: "Judge an initialization at step 0 **and** after a short fixed training budget").
It is deliberately simple and reproducible: the same blocks and seed give the same batches
whatever the strategy, so strategies differ only by their initial embeddings. The full
trainer (whole model, several GPUs through the standard launchers) comes later.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.devices import place_model
from transfer.errors import VocabTransferError
from transfer.evaluate import context_token_id

# Texts are tokenized in chunks of this many: fast (batched) without holding a corpus twice.
_TOKENIZE_CHUNK = 1024


class TrainingError(VocabTransferError):
    """Bad input to training (no blocks, bad step counts, missing evaluate callback)."""


@dataclass
class TrainLog:
    """What a training run did: the loss of every step and the evaluations by step.

    ``seconds`` is the wall time of the training steps only (evaluations excluded), so
    runs with different evaluation schedules compare on speed.
    """

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    evaluations: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports (evaluation steps become string keys in JSON)."""
        return asdict(self)


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def pack_blocks(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    block_size: int,
    *,
    separator_id: int | None = None,
) -> torch.LongTensor:
    """Concatenate the texts' tokens into a (n_blocks, block_size) tensor.

    Each text is tokenized without special tokens and followed by ``separator_id``
    (default: :func:`transfer.evaluate.context_token_id`, the same token that precedes
    texts at evaluation, so training and scoring see documents delimited alike). The
    stream is cut into full blocks; the incomplete remainder is dropped.
    """
    if isinstance(texts, str):
        raise TrainingError("texts must be an iterable of strings, not one string")
    if block_size < 2:
        raise TrainingError(f"block_size must be >= 2, got {block_size}")
    separator = context_token_id(tokenizer) if separator_id is None else int(separator_id)
    if separator < 0:
        raise TrainingError(f"separator_id must be a token id >= 0, got {separator_id}")

    stream: list[int] = []
    for chunk in _chunks(texts, _TOKENIZE_CHUNK):
        # verbose=False: long documents are expected here, they are cut into blocks.
        for ids in tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]:
            stream.extend(ids)
            stream.append(separator)
    n_blocks = len(stream) // block_size
    if n_blocks == 0:
        raise TrainingError(
            f"texts give {len(stream)} tokens, fewer than one block of block_size={block_size}"
        )
    flat = torch.tensor(stream[: n_blocks * block_size], dtype=torch.long)
    return flat.view(n_blocks, block_size)


def freeze_all_but_embeddings(model: PreTrainedModel) -> list[torch.nn.Parameter]:
    """Freeze the model body; keep the input embeddings, an untied head and its bias trainable.

    A tied head is the input embedding matrix itself, so it trains with it. Returns the
    trainable parameters (no duplicates), in the order input, head weight, head bias.
    """
    trainable: list[torch.nn.Parameter] = []
    embeddings = model.get_input_embeddings()
    if embeddings is None:
        raise TrainingError("model has no input embeddings (get_input_embeddings() is None)")
    trainable.append(embeddings.weight)
    head = model.get_output_embeddings()
    if head is not None:
        for param in (getattr(head, "weight", None), getattr(head, "bias", None)):
            if isinstance(param, torch.nn.Parameter) and all(param is not p for p in trainable):
                trainable.append(param)
    for param in model.parameters():
        param.requires_grad_(False)
    for param in trainable:
        param.requires_grad_(True)
    return trainable


def _batch_indices(
    n_blocks: int, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Endless batches of block indices: shuffled epochs, so every block is seen once per
    epoch before any repeats. Depends only on ``n_blocks``, ``batch_size`` and the seed."""
    pending = torch.empty(0, dtype=torch.long)
    while True:
        while pending.numel() < batch_size:
            pending = torch.cat([pending, torch.randperm(n_blocks, generator=generator)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def _check_train_args(
    blocks: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    evaluate_at: Sequence[int],
    evaluate: Callable[[PreTrainedModel], float] | None,
) -> None:
    if not isinstance(blocks, torch.Tensor) or blocks.dim() != 2 or blocks.size(0) == 0:
        raise TrainingError("blocks must be a non-empty (n_blocks, block_size) tensor of token ids")
    if blocks.dtype != torch.long:
        raise TrainingError(f"blocks must hold token ids as torch.long, got {blocks.dtype}")
    if blocks.size(1) < 2:
        raise TrainingError(f"blocks must have block_size >= 2, got {blocks.size(1)}")
    if steps < 0:
        raise TrainingError(f"steps must be >= 0, got {steps}")
    if batch_size < 1:
        raise TrainingError(f"batch_size must be >= 1, got {batch_size}")
    if not lr > 0:
        raise TrainingError(f"lr must be > 0, got {lr}")
    bad = [s for s in evaluate_at if not 0 <= s <= steps]
    if bad:
        raise TrainingError(f"evaluate_at has steps outside 0..{steps}: {bad}")
    if evaluate_at and evaluate is None:
        raise TrainingError("evaluate_at is given but evaluate is None")


def train_embeddings_only(
    model: PreTrainedModel,
    blocks: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float = 5e-4,
    seed: int = 0,
    device: str | torch.device | None = None,
    evaluate_at: Sequence[int] = (),
    evaluate: Callable[[PreTrainedModel], float] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainLog:
    """Train only the embeddings (and an untied head) with the causal LM loss.

    AdamW (weight decay 0) over :func:`freeze_all_but_embeddings`'s parameters; each step
    takes ``batch_size`` blocks chosen by a ``torch.Generator`` seeded with ``seed``, so the
    same blocks and seed give the same batches for every strategy. Dropout randomness is
    seeded too (in a forked RNG, leaving the caller's global RNG untouched).
    ``evaluate(model)`` runs at each step in ``evaluate_at`` (0 = before training, k = after
    k updates) and is recorded in the log. ``on_step(step, loss)`` is called after each
    update. Afterwards the model is in eval mode with every parameter trainable again; the
    body weights are unchanged.
    """
    _check_train_args(blocks, steps, batch_size, lr, evaluate_at, evaluate)
    vocab_rows = model.get_input_embeddings().num_embeddings
    if int(blocks.max()) >= vocab_rows or int(blocks.min()) < 0:
        raise TrainingError(
            f"blocks hold ids outside 0..{vocab_rows - 1}, the model's embedding rows; "
            "were they packed with the model's tokenizer?"
        )
    eval_steps = set(evaluate_at)
    device_used = place_model(model, device)
    log = TrainLog()
    generator = torch.Generator().manual_seed(seed)
    batches = _batch_indices(blocks.size(0), batch_size, generator)
    fork_devices: list[int] = []
    if device_used.type == "cuda":
        index = device_used.index
        fork_devices = [torch.cuda.current_device() if index is None else index]

    def run_evaluation(step: int) -> None:
        if step in eval_steps and evaluate is not None:
            model.eval()  # evaluations never see dropout; the next step switches back
            log.evaluations[step] = float(evaluate(model))

    try:
        params = freeze_all_but_embeddings(model)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            run_evaluation(0)
            for step in range(1, steps + 1):
                started = time.perf_counter()
                model.train()
                batch = blocks[next(batches)].to(device_used)
                # HF causal LMs shift the labels internally: position t predicts t+1.
                loss = model(input_ids=batch, labels=batch).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value = float(loss.detach())
                log.seconds += time.perf_counter() - started
                log.losses.append(value)
                log.steps = step
                log.tokens_seen += batch.numel()
                if on_step is not None:
                    on_step(step, value)
                run_evaluation(step)
    finally:
        for param in model.parameters():
            param.grad = None  # free gradient memory before handing the model back
            param.requires_grad_(True)
        model.eval()
    return log
