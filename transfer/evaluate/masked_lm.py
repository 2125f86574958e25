"""Masked-LM objective and evaluation (BERT's 80/10/10 masking) for encoder models.

Masked LMs (BERT, RoBERTa, XLM-R) have no left-to-right likelihood, so bits per byte does
not apply to them. DESIGN ("Metric"): for masked LMs use
the masked-LM loss with a fixed seed and masking rate. All strategies of one run share the
target tokenizer, so the same texts give the same token ids and, with the same seed, the
very same masked positions and replacements: the losses compare directly.

Masking follows Devlin et al. (2019): each ordinary token is chosen with probability
``rate``; a chosen token is replaced by the mask token 80% of the time, by a random
ordinary token 10% of the time and kept 10% of the time; the loss is the cross-entropy of
the original token at every chosen position. Special tokens and padding are never chosen.

``masked_lm_loss`` draws the masks of every text (every window of a long text) from its
own generator seeded by ``(seed, text index, window index)``, so the result does not
depend on the batch size or on the order texts are batched in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.engine.devices import place_model
from transfer.errors import VocabTransferError
from transfer.tokenizer.special_tokens import special_token_ids

#: Label value ignored by the loss (PyTorch's and transformers' convention).
IGNORE_INDEX = -100
#: Of the chosen positions: this share becomes the mask token, the same share again a
#: random token, the rest stays (BERT's 80/10/10).
_MASK_SHARE = 0.8
_RANDOM_SHARE = 0.1
# Model types whose position ids start after the padding index (RoBERTa family).
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl")


class MaskedLMError(VocabTransferError):
    """Bad input to masking or masked-LM evaluation (no mask token, bad rate, no texts)."""


@dataclass(frozen=True)
class MLMResult:
    """Mean masked-LM cross-entropy (nats per masked token) over a set of texts."""

    loss: float
    n_masked: int
    n_texts: int
    total_nats: float = math.nan
    rate: float = 0.15
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports and the registry."""
        return asdict(self)


def _never_masked(
    tokenizer: PreTrainedTokenizerBase, special_ids: set[int] | None
) -> set[int]:
    ids = set(special_ids) if special_ids is not None else set(special_token_ids(tokenizer))
    ids.update(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
    if tokenizer.pad_token_id is not None:
        ids.add(int(tokenizer.pad_token_id))
    return ids


def mask_tokens(
    input_ids: torch.LongTensor,
    tokenizer: PreTrainedTokenizerBase,
    *,
    rate: float = 0.15,
    generator: torch.Generator,
    special_ids: set[int] | None = None,
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """BERT's 80/10/10 masking of ``input_ids`` (any shape): ``(masked inputs, labels)``.

    ``labels`` hold the original id at chosen positions and ``-100`` elsewhere. Never
    chosen: ``special_ids`` (default: every special token of ``tokenizer`` by role), the
    tokenizer's ``all_special_ids``, its pad and mask ids; random replacements are drawn
    from the remaining (ordinary) tokens only.
    Random numbers come from ``generator`` (on its own device), so a fixed seed gives the
    same masks on any device. ``input_ids`` is not modified.
    """
    if not 0.0 < rate < 1.0:
        raise MaskedLMError(f"rate={rate!r} must lie strictly between 0 and 1")
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise MaskedLMError(
            f"tokenizer {type(tokenizer).__name__} has no mask token; masked-LM needs one"
        )
    excluded = _never_masked(tokenizer, special_ids) | {int(mask_id)}
    vocab_size = len(tokenizer)
    keep = torch.ones(vocab_size, dtype=torch.bool)
    keep[[i for i in excluded if 0 <= i < vocab_size]] = False
    ordinary = keep.nonzero().squeeze(1)
    if ordinary.numel() == 0:
        raise MaskedLMError("tokenizer has no ordinary (non-special) tokens to mask")

    ids = input_ids.detach()
    draw_device = generator.device
    chosen_draw = torch.rand(ids.shape, generator=generator, device=draw_device)
    kind_draw = torch.rand(ids.shape, generator=generator, device=draw_device)
    replacement_draw = torch.randint(
        0, ordinary.numel(), ids.shape, generator=generator, device=draw_device
    )
    chosen_draw, kind_draw = chosen_draw.to(ids.device), kind_draw.to(ids.device)
    replacements = ordinary.to(ids.device)[replacement_draw.to(ids.device)]

    excluded_tensor = torch.tensor(sorted(excluded), dtype=ids.dtype, device=ids.device)
    candidates = ~torch.isin(ids, excluded_tensor)
    chosen = candidates & (chosen_draw < rate)
    to_mask = chosen & (kind_draw < _MASK_SHARE)
    to_random = chosen & (kind_draw >= _MASK_SHARE) & (kind_draw < _MASK_SHARE + _RANDOM_SHARE)

    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    masked = ids.clone()
    masked[to_mask] = int(mask_id)
    masked[to_random] = replacements[to_random]
    return masked, labels


def _text_generator(seed: int, text_index: int, window: int) -> torch.Generator:
    """A CPU generator of its own for one window of one text (batch-size independent)."""
    digest = hashlib.sha256(f"mlm:{seed}:{text_index}:{window}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def max_sequence_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """Longest sequence (special tokens included) the model takes.

    RoBERTa-style models start position ids after the padding index, so they take
    ``max_position_embeddings - pad_token_id - 1`` tokens (512 of 514).
    """
    config = model.config
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        limit = 512
    if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
        limit -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < limit:
        limit = declared
    return limit


def _sequences(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], length: int
) -> list[tuple[int, int, list[int]]]:
    """(text index, window index, ids with the tokenizer's special tokens) per window.

    The fast tokenizer's overflow handling cuts long texts into consecutive windows and
    adds the special tokens to each (``[CLS] ... [SEP]`` / ``<s> ... </s>``).
    """
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    if length - n_special < 1:
        raise MaskedLMError(f"sequence length {length} leaves no room beside {n_special} specials")
    encoded = tokenizer(
        list(texts),
        add_special_tokens=True,
        truncation=True,
        max_length=length,
        return_overflowing_tokens=True,
        verbose=False,
    )
    owners = encoded.get("overflow_to_sample_mapping") or list(range(len(texts)))
    sequences: list[tuple[int, int, list[int]]] = []
    windows: dict[int, int] = {}
    for owner, ids in zip(owners, encoded["input_ids"], strict=True):
        if len(ids) <= n_special:
            raise MaskedLMError(
                f"texts[{owner}] ({texts[owner][:40]!r}) gives no tokens with this tokenizer"
            )
        window = windows.get(owner, 0)
        windows[owner] = window + 1
        sequences.append((int(owner), window, list(ids)))
    return sequences


def masked_lm_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    rate: float = 0.15,
    seed: int = 0,
    batch_size: int = 16,
    device: str | torch.device | None = None,
) -> MLMResult:
    """Masked-LM loss (mean nats per masked token, a micro average over all texts).

    Each text is encoded with the tokenizer's special tokens (``[CLS] ... [SEP]``, ``<s>
    ... </s>``); a text longer than the model takes is cut into consecutive windows, each
    with its own special tokens. Masks come from a generator per window seeded by
    ``seed``, so a fixed seed gives the same masks whatever ``batch_size`` is.
    """
    if isinstance(texts, str):
        raise MaskedLMError("texts must be a sequence of strings, not one string")
    if len(texts) == 0:
        raise MaskedLMError("texts is empty; give at least one held-out text")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise MaskedLMError(f"texts[{index}] must be a non-empty str, got {text!r:.40}")
    if batch_size < 1:
        raise MaskedLMError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 < rate < 1.0:
        raise MaskedLMError(f"rate={rate!r} must lie strictly between 0 and 1")
    n_rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_rows:
        raise MaskedLMError(
            f"tokenizer has {len(tokenizer)} tokens but the model only {n_rows} embedding "
            "rows; model and tokenizer do not belong together"
        )

    never = _never_masked(tokenizer, None)
    masked_sequences: list[tuple[torch.Tensor, torch.Tensor]] = []
    for index, window, ids in _sequences(tokenizer, texts, max_sequence_length(model, tokenizer)):
        inputs, labels = mask_tokens(
            torch.tensor(ids, dtype=torch.long),
            tokenizer,
            rate=rate,
            generator=_text_generator(seed, index, window),
            special_ids=never,
        )
        masked_sequences.append((inputs, labels))
    n_masked = sum(int((labels != IGNORE_INDEX).sum()) for _, labels in masked_sequences)
    if n_masked == 0:
        raise MaskedLMError(
            f"no token was masked in {len(texts)} texts at rate={rate}; give more or longer texts"
        )

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(masked_sequences)), key=lambda i: -len(masked_sequences[i][0]))
    device_used = place_model(model, device)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = [masked_sequences[i] for i in order[start : start + batch_size]]
                total += _batch_nats(model, batch, pad_id=pad_id, device=device_used)
    finally:
        model.train(was_training)
    total_nats = float(total)
    return MLMResult(
        loss=total_nats / n_masked,
        n_masked=n_masked,
        n_texts=len(texts),
        total_nats=total_nats,
        rate=rate,
        seed=seed,
    )


def _batch_nats(
    model: PreTrainedModel,
    batch: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    pad_id: int,
    device: torch.device,
) -> torch.Tensor:
    """Summed cross-entropy (nats, float64 on CPU) at the masked positions of a batch."""
    width = max(len(inputs) for inputs, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, (inputs, row_labels) in enumerate(batch):
        input_ids[row, : len(inputs)] = inputs
        attention[row, : len(inputs)] = 1
        labels[row, : len(inputs)] = row_labels
    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
    chosen = labels != IGNORE_INDEX
    if not bool(chosen.any()):
        return torch.zeros((), dtype=torch.float64)
    # float64 only for the masked positions: a handful of rows of the vocabulary.
    picked = logits[chosen.to(logits.device)].double()
    logp = torch.log_softmax(picked, dim=-1)
    targets = labels[chosen].to(logp.device)
    return -logp.gather(1, targets[:, None]).sum().cpu()
