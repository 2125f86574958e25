"""Training data: the target train split tokenized with the target tokenizer, packed into
fixed-length blocks, and a deterministic, resumable order over those blocks.

Packing (as in GPT-2/RoBERTa pretraining): every document's tokens are followed by a
separator token and the stream is cut into blocks of ``block_size`` tokens, so no compute
goes to padding. Texts are read and tokenized in bounded batches as they stream in, and the
packed ids go to a token file on disk (:mod:`transfer.train.data_file`: uint16 or uint32 as
the vocabulary needs) whose memory map is the blocks, so neither the corpus nor its ids are
held in RAM. Small callers may ask for the blocks in RAM instead (a ``torch.long`` tensor);
both hold the same ids, in the same blocks, with the same fingerprint.

Bytes seen: tokenizers cut the same text into different numbers of tokens, so runs with
different vocabularies compare by the UTF-8 bytes of text they trained on, not by tokens.
``PackedData.bytes_per_token`` is measured while packing (text bytes / stream tokens).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from transfer.errors import TrainingError
from transfer.train.data_file import (
    check_pack_args,
    open_token_file,
    scan_tokens,
    text_chunks,
    write_token_file,
)

#: The token file's name in the train stage's folder (its sidecar: ``train_tokens.json``).
TOKEN_FILE = "train_tokens.bin"


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
    """Packed token blocks plus what is needed to count bytes seen.

    ``blocks`` is a ``torch.long`` tensor in RAM, or the read-only memory map of a token
    file (``path``); the trainer reads them only through :meth:`rows`, so both train alike.
    """

    blocks: torch.Tensor | np.ndarray  # (n_blocks, block_size)
    n_documents: int
    n_bytes: int  # UTF-8 bytes of all documents (separators excluded)
    n_tokens: int  # tokens in the stream, separators included, before the remainder was cut
    path: Path | None = None  # the token file behind a memory map
    id_bounds: tuple[int, int] | None = None  # (min, max) id, when packing recorded it

    @property
    def n_blocks(self) -> int:
        return int(self.blocks.shape[0])

    @property
    def block_size(self) -> int:
        return int(self.blocks.shape[1])

    @property
    def bytes_per_token(self) -> float:
        """Average text bytes per stream token: converts tokens seen into bytes seen."""
        return self.n_bytes / max(self.n_tokens, 1)

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        """Blocks ``indices`` (in that order) as a (len, block_size) ``torch.long`` tensor."""
        if isinstance(self.blocks, torch.Tensor):
            return self.blocks[indices]
        return torch.from_numpy(self.blocks[indices.numpy()].astype(np.int64))

    def _id_chunks(self) -> Iterator[np.ndarray | torch.Tensor]:
        if isinstance(self.blocks, torch.Tensor):
            yield self.blocks
        elif self.path is not None:
            yield from scan_tokens(self.path, self.blocks.dtype)
        else:
            yield np.asarray(self.blocks)

    def id_range(self) -> tuple[int, int]:
        """The smallest and largest id in the blocks."""
        if self.id_bounds is not None:
            return self.id_bounds
        low, high = None, None
        for part in self._id_chunks():
            low = int(part.min()) if low is None else min(low, int(part.min()))
            high = int(part.max()) if high is None else max(high, int(part.max()))
        return int(low or 0), int(high or 0)

    def fingerprint(self) -> str:
        """sha256 of the packed ids as int64 (part of a checkpoint's identity): the same for
        the same ids in RAM or in a token file of either dtype."""
        digest = hashlib.sha256()
        digest.update(str(tuple(int(n) for n in self.blocks.shape)).encode())
        for part in self._id_chunks():
            if isinstance(part, torch.Tensor):
                digest.update(part.contiguous().numpy().tobytes())
            else:
                digest.update(part.astype(np.int64).tobytes())
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
    check_pack_args(texts, block_size, separator_id)
    tally = counts if counts is not None else {}
    tally.update(documents=0, bytes=0, tokens=0)
    pending: list[int] = []
    for chunk in text_chunks(texts):
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


def open_packed(path: Path) -> PackedData:
    """A token file written by :func:`pack_train_split` as memory-mapped blocks."""
    blocks, info = open_token_file(Path(path))
    return PackedData(blocks=blocks, n_documents=info.n_documents, n_bytes=info.n_bytes,
                      n_tokens=info.n_tokens, path=Path(path), id_bounds=(info.min_id, info.max_id))


def pack_train_split(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    block_size: int,
    *,
    separator_id: int | None = None,
    objective: str = "causal",
    path: Path | None = None,
) -> PackedData:
    """Pack streamed ``texts`` into blocks and count their bytes (see module doc).

    With ``path`` the blocks are the memory map of the token file written there (the
    train stage's way: bounded memory at any corpus size); without, they are loaded into
    RAM as a ``torch.long`` tensor (small corpora: tests, benchmarks)."""
    separator = separator_token_id(tokenizer, objective) if separator_id is None else int(separator_id)
    if path is not None:
        write_token_file(tokenizer, texts, block_size, Path(path), separator)
        return open_packed(Path(path))
    with tempfile.TemporaryDirectory(prefix="packed-") as folder:
        file = Path(folder) / TOKEN_FILE
        write_token_file(tokenizer, texts, block_size, file, separator)
        mapped = open_packed(file)
        blocks = torch.from_numpy(np.asarray(mapped.blocks).astype(np.int64))
        return PackedData(blocks=blocks, n_documents=mapped.n_documents, n_bytes=mapped.n_bytes,
                          n_tokens=mapped.n_tokens, id_bounds=mapped.id_bounds)


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
