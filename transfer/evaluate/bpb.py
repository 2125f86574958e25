"""Bits per byte (BPB): the metric that makes models with different tokenizers comparable.

Loss per token cannot compare two tokenizers (a tokenizer with longer tokens has fewer,
harder tokens). BPB divides the summed negative log-likelihood, in bits, of every token of
each held-out text by the number of UTF-8 bytes of that text, so it only depends on how
well the model predicts the *text*. Definition used here (see docs/DESIGN.md, "Metric"):

* each text is tokenized on its own, without special tokens;
* it is preceded by one context token that is not scored (:func:`context_token_id`), so
  that the first real token is scored too;
* every real token is scored; bits are summed over all texts (in float64) and divided by
  the total number of bytes (a micro average, so long texts weigh more).

Texts longer than the model's maximum number of positions are scored in consecutive
windows of at most that many tokens. Each window after the first starts with the previous
window's last token, which is not scored again: it is the window's only context. So every
token is scored exactly once, but tokens early in a later window see less context than a
sliding window would give them. Numbers are comparable only between runs that use the same
window length (verses and short documents never need a second window).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer.engine.devices import place_model
from transfer.errors import VocabTransferError

# Strings that mark the end of a document in common tokenizers, in order of preference.
END_OF_TEXT_TOKENS: tuple[str, ...] = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>")
# At most this many float64 log-probabilities exist at once (2**24 x 8 bytes = 128 MiB).
_LOGPROB_ELEMENTS = 1 << 24

class EvaluationError(VocabTransferError):
    """Bad input to an evaluation (no texts, an empty text, a mismatched model)."""


@dataclass(frozen=True)
class BPBResult:
    """Bits per byte over a set of texts, with the totals it was computed from."""

    bpb: float
    total_bits: float
    n_bytes: int
    n_tokens: int
    n_texts: int

    @property
    def tokens_per_byte(self) -> float:
        """Scored tokens per UTF-8 byte (the inverse of the tokenizer's bytes per token)."""
        return self.n_tokens / self.n_bytes

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports and the registry (includes ``tokens_per_byte``)."""
        return {**asdict(self), "tokens_per_byte": self.tokens_per_byte}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPBResult:
        """Inverse of :meth:`to_dict` (derived keys are ignored)."""
        return cls(
            bpb=float(data["bpb"]),
            total_bits=float(data["total_bits"]),
            n_bytes=int(data["n_bytes"]),
            n_tokens=int(data["n_tokens"]),
            n_texts=int(data["n_texts"]),
        )


def context_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The unscored token placed before every text.

    The tokenizer's bos token when the tokenizer adds it by default (Llama 2/3 style);
    otherwise its end-of-text token: the first of :data:`END_OF_TEXT_TOKENS` in the
    vocabulary, else ``eos_token``. SmolLM2 has a bos (``<|im_start|>``) that it never
    adds, so it gets ``<|endoftext|>`` (id 0), like GPT-2.
    """
    bos = tokenizer.bos_token_id
    if bos is not None:
        # Ask the tokenizer what it does, rather than trusting flags that differ per class.
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        without = tokenizer("a", add_special_tokens=False)["input_ids"]
        if with_special and with_special[0] == bos and (not without or without[0] != bos):
            return int(bos)
    # Membership in the vocabulary, not convert_tokens_to_ids: that returns unk for
    # missing strings (SmolLM2 maps '</s>' to 0).
    vocab = tokenizer.get_vocab()
    for token in END_OF_TEXT_TOKENS:
        if token in vocab:
            return int(vocab[token])
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise EvaluationError(
        "tokenizer has no bos token that it adds, no end-of-text token and no eos_token; "
        "cannot choose the context token"
    )


def max_positions(model: PreTrainedModel) -> int | None:
    """The model's maximum sequence length from its config, or None when it has none."""
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _windows(ids: list[int], context: int, length: int | None) -> list[list[int]]:
    """Split ``[context] + ids`` into windows of at most ``length`` tokens.

    Consecutive windows overlap by one token: each later window starts with the previous
    window's last token, which serves as context and is not scored again.
    """
    sequence = [context, *ids]
    if length is None or len(sequence) <= length:
        return [sequence]
    step = length - 1
    return [sequence[start : start + length] for start in range(0, len(sequence) - 1, step)]


def _tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]
) -> tuple[list[list[int]], int]:
    """Token ids of each text (no special tokens) and the total UTF-8 byte count."""
    n_bytes = 0
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise EvaluationError(f"texts[{index}] is {type(text).__name__}, not str")
        if not text:
            raise EvaluationError(f"texts[{index}] is empty; drop empty texts before scoring")
        n_bytes += len(text.encode("utf-8"))
    # verbose=False: long texts are windowed here, the length warning would mislead.
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    for index, ids in enumerate(encoded):
        if not ids:
            # Bytes that no token accounts for would be scored as free.
            raise EvaluationError(
                f"texts[{index}] ({texts[index][:40]!r}) gives no tokens with this tokenizer"
            )
    return encoded, n_bytes


def bits_per_byte(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_length: int | None = None,
) -> BPBResult:
    """Bits per byte of a causal LM on ``texts`` (DESIGN's definition, see module doc).

    Sequences are sorted by length and batched with right padding and an attention mask;
    padding is never scored, so the result does not depend on ``batch_size`` (up to float
    rounding in the model's kernels). ``max_length`` caps the window length (default: the
    model's maximum positions). ``progress(done, total)`` is called after every batch, counting
    sequences (a text, or one window of a long text). The model is scored in eval mode and
    left in the train/eval mode it had; with ``device=None`` a CPU model moves to the GPU
    when there is one (see :func:`transfer.engine.devices.place_model`).
    """
    if isinstance(texts, str):
        raise EvaluationError("texts must be a sequence of strings, not one string")
    if len(texts) == 0:
        raise EvaluationError("texts is empty; give at least one held-out text")
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    length = max_length if max_length is not None else max_positions(model)
    if length is not None and length < 2:
        raise EvaluationError(
            f"max_length must be >= 2 (one context + one scored token), got {length}"
        )

    context = context_token_id(tokenizer)
    encoded, n_bytes = _tokenize(tokenizer, texts)
    n_rows_model = model.get_input_embeddings().num_embeddings
    highest = max(context, *(max(ids) for ids in encoded))
    if highest >= n_rows_model:
        raise EvaluationError(
            f"tokenizer produces id {highest} but the model has only {n_rows_model} embedding "
            "rows; model and tokenizer do not belong together"
        )

    sequences = [w for ids in encoded for w in _windows(ids, context, length)]
    # Longest first: similar lengths share a batch (little padding) and an out-of-memory
    # error shows up on the first batch rather than at the end.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)

    device_used = place_model(model, device)
    was_training = model.training
    model.eval()
    total_nats = torch.zeros((), dtype=torch.float64)
    n_tokens = 0
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = [sequences[i] for i in order[start : start + batch_size]]
                nats, scored = _score_batch(model, batch, pad_id=context, device=device_used)
                total_nats += nats
                n_tokens += scored
                if progress is not None:
                    progress(min(start + batch_size, len(order)), len(order))
    finally:
        model.train(was_training)

    total_bits = float(total_nats) / math.log(2.0)
    return BPBResult(
        bpb=total_bits / n_bytes,
        total_bits=total_bits,
        n_bytes=n_bytes,
        n_tokens=n_tokens,
        n_texts=len(texts),
    )


def _score_batch(
    model: PreTrainedModel, batch: list[list[int]], *, pad_id: int, device: torch.device
) -> tuple[torch.Tensor, int]:
    """Summed NLL (nats, float64 on CPU) of every token but the first of each sequence."""
    width = max(len(seq) for seq in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, seq in enumerate(batch):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    input_ids = input_ids.to(device)
    logits = model(input_ids=input_ids, attention_mask=attention_mask.to(device)).logits
    total = torch.zeros((), dtype=torch.float64, device=device)
    scored = 0
    chunk = max(1, _LOGPROB_ELEMENTS // logits.size(-1))
    for row, seq in enumerate(batch):
        # Right padding: the real tokens are a prefix, so this slice is a view, not a copy.
        # Position t predicts token t+1; the first token is context only.
        n = len(seq) - 1
        targets = input_ids[row, 1 : n + 1]
        # float64 log-softmax (uniform logits give exactly log2(V) bits), in chunks of
        # positions so the float64 copy stays small whatever the vocabulary size.
        for lo in range(0, n, chunk):
            logp = torch.log_softmax(logits[row, lo : min(lo + chunk, n)].double(), dim=-1)
            total -= logp.gather(1, targets[lo : lo + chunk, None]).sum()
        scored += n
    return total.cpu(), scored
