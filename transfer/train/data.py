"""Training data: the target train split tokenized with the target tokenizer, packed into
fixed-length blocks, and a deterministic, resumable order over those blocks.

Packing (as in GPT-2/RoBERTa pretraining): every document's tokens are followed by a
separator token and the stream is cut into blocks of ``block_size`` tokens, so no compute
goes to padding. Texts are read and tokenized in chunks as they stream in, so the corpus
is never held as text; only the packed token ids are kept (8 bytes per token).

Bytes seen: tokenizers cut the same text into different numbers of tokens, so runs with
different vocabularies compare by the UTF-8 bytes of text they trained on, not by tokens.
``PackedData.bytes_per_token`` is measured while packing (text bytes / stream tokens).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from transfer.errors import TrainingError

# Texts are tokenized in chunks of this many: fast (batched) without holding a corpus twice.
TOKENIZE_CHUNK = 1024


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def separator_token_id(tokenizer: PreTrainedTokenizerBase, objective: str = "causal") -> int:
    """The token placed after every document.

    Causal LMs use :func:`transfer.evaluate.bpb.context_token_id` (the token that precedes texts
    at evaluation, so training and scoring delimit documents alike). Masked LMs use their
    separator (``[SEP]``, ``</s>``), the token BERT-style models see between segments.
    """
    if objective == "masked":
        for candidate in (tokenizer.sep_token_id, tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        raise TrainingError("masked-LM tokenizer has neither sep_token nor eos_token to separate documents")
    from transfer.evaluate.bpb import context_token_id

    return context_token_id(tokenizer)


@dataclass(frozen=True)
class PackedData:
    """Packed token blocks plus what is needed to count bytes seen."""

    blocks: torch.Tensor  # (n_blocks, block_size), torch.long
    n_documents: int
    n_bytes: int  # UTF-8 bytes of all documents (separators excluded)
    n_tokens: int  # tokens in the stream, separators included, before the remainder was cut

    @property
    def block_size(self) -> int:
        return int(self.blocks.size(1))

    @property
    def bytes_per_token(self) -> float:
        """Average text bytes per stream token: converts tokens seen into bytes seen."""
        return self.n_bytes / max(self.n_tokens, 1)

    def fingerprint(self) -> str:
        """sha256 of the packed ids (part of a checkpoint's identity)."""
        digest = hashlib.sha256()
        digest.update(str(tuple(self.blocks.shape)).encode())
        digest.update(self.blocks.contiguous().numpy().tobytes())
        return digest.hexdigest()[:24]


def iter_blocks(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    block_size: int,
    separator_id: int,
    counts: dict[str, int] | None = None,
) -> Iterator[list[int]]:
    """Stream full blocks of ``block_size`` ids; the incomplete remainder is dropped.

    ``counts`` (optional) receives ``documents``, ``bytes`` and ``tokens`` as it goes.
    """
    if isinstance(texts, str):
        raise TrainingError("texts must be an iterable of strings, not one string")
    if block_size < 2:
        raise TrainingError(f"block_size must be >= 2, got {block_size}")
    if separator_id < 0:
        raise TrainingError(f"separator_id must be a token id >= 0, got {separator_id}")
    tally = counts if counts is not None else {}
    tally.update(documents=0, bytes=0, tokens=0)
    pending: list[int] = []
    for chunk in _chunks(texts, TOKENIZE_CHUNK):
        tally["documents"] += len(chunk)
        tally["bytes"] += sum(len(text.encode("utf-8")) for text in chunk)
        # verbose=False: long documents are expected here, they are cut into blocks.
        for ids in tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]:
            pending.extend(ids)
            pending.append(separator_id)
            tally["tokens"] += len(ids) + 1
        full = len(pending) // block_size * block_size
        for start in range(0, full, block_size):
            yield pending[start : start + block_size]
        del pending[:full]


def pack_train_split(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    block_size: int,
    *,
    separator_id: int | None = None,
    objective: str = "causal",
) -> PackedData:
    """Pack streamed ``texts`` into blocks and count their bytes (see module doc)."""
    separator = separator_token_id(tokenizer, objective) if separator_id is None else int(separator_id)
    counts: dict[str, int] = {}
    rows = list(iter_blocks(tokenizer, texts, block_size, separator, counts))
    if not rows:
        raise TrainingError(
            f"texts give {counts.get('tokens', 0)} tokens, fewer than one block of block_size={block_size}"
        )
    return PackedData(
        blocks=torch.tensor(rows, dtype=torch.long),
        n_documents=counts["documents"],
        n_bytes=counts["bytes"],
        n_tokens=counts["tokens"],
    )


def pack_blocks(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    block_size: int,
    *,
    separator_id: int | None = None,
) -> torch.LongTensor:
    """Concatenate the texts' tokens into a (n_blocks, block_size) tensor.

    Each text is tokenized without special tokens and followed by ``separator_id``
    (default: :func:`transfer.evaluate.bpb.context_token_id`). The stream is cut into full
    blocks; the incomplete remainder is dropped.
    """
    return pack_train_split(tokenizer, texts, block_size, separator_id=separator_id).blocks


class BlockOrder:
    """Endless order of block indices: shuffled epochs, every block once per epoch.

    Epoch ``e`` is the ``e``-th ``torch.randperm`` of a generator seeded with ``seed``, so
    the order depends only on ``n_blocks`` and ``seed``, and a position in it (samples
    consumed so far) is all a checkpoint needs to resume the data stream exactly.
    """

    def __init__(self, n_blocks: int, seed: int) -> None:
        if n_blocks < 1:
            raise TrainingError("no training blocks")
        self.n_blocks = n_blocks
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._epochs: list[torch.Tensor] = []

    def _epoch(self, index: int) -> torch.Tensor:
        while len(self._epochs) <= index:
            self._epochs.append(torch.randperm(self.n_blocks, generator=self._generator))
        return self._epochs[index]

    def take(self, position: int, count: int) -> torch.Tensor:
        """Block indices of samples ``position .. position + count - 1``."""
        parts = []
        while count > 0:
            epoch, offset = divmod(position, self.n_blocks)
            n = min(count, self.n_blocks - offset)
            parts.append(self._epoch(epoch)[offset : offset + n])
            # Keep memory flat on long runs: epochs before this one are never needed again.
            for old in range(max(0, epoch - 1)):
                self._epochs[old] = torch.empty(0, dtype=torch.long)
            position += n
            count -= n
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)
