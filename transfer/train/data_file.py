"""The packed token file: the training stream on disk, read back as a memory map.

The train split is tokenized a bounded batch of lines at a time (a fast tokenizer's batch
call) and its packed stream (every document's ids, then the separator) is appended to a
flat file of unsigned ints: ``uint16`` when every id fits (vocabularies up to 65,536 ids,
2 bytes a token), else ``uint32``. Only full blocks are written (the short remainder is
held back, then dropped, as GPT-2-style packing drops it), so the file's ``i``-th
``block_size`` ids are block ``i``. A JSON sidecar records dtype, shape and the byte
counts. Packing therefore holds one batch of lines and its ids, never the corpus or its
ids; the file is written under a temporary name and renamed when complete, so a reader
never sees half a file.

Reading back (:func:`open_token_file`) maps the file (``numpy.memmap``): a batch reads its
rows from the page cache, and resident pages are clean file pages the kernel can drop.
:func:`scan_tokens` reads the file in bounded chunks with plain reads (fingerprints, id
ranges), so a pass over it does not map the whole file either.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from transfer.engine.cache import atomic_write
from transfer.errors import TrainingError

# A batch of lines tokenized at once: fast (batched) without holding a corpus. The byte cap
# bounds a batch of very long lines too (a document is a line; one line is never split).
TOKENIZE_CHUNK = 1024
TOKENIZE_CHUNK_BYTES = 4 << 20
# ids read per step of a sequential pass over the file (8 MB as int64)
SCAN_CHUNK = 1 << 20


def text_chunks(texts: Iterable[str], size: int | None = None, max_bytes: int | None = None) -> Iterator[list[str]]:
    """Consecutive batches of ``texts``: at most ``size`` texts (default
    :data:`TOKENIZE_CHUNK`), and no more texts once a batch holds ``max_bytes`` characters
    (default :data:`TOKENIZE_CHUNK_BYTES`). Batching never changes the packed stream:
    every text is tokenized on its own."""
    size = TOKENIZE_CHUNK if size is None else size
    max_bytes = TOKENIZE_CHUNK_BYTES if max_bytes is None else max_bytes
    chunk: list[str] = []
    held = 0
    for text in texts:
        chunk.append(text)
        held += len(text)
        if len(chunk) == size or held >= max_bytes:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def check_pack_args(texts: Iterable[str], block_size: int, separator_id: int) -> None:
    """Refuse bad packing arguments before any text is read."""
    if isinstance(texts, str):
        raise TrainingError("texts must be an iterable of strings, not one string")
    if block_size < 2:
        raise TrainingError(f"block_size must be >= 2, got {block_size}")
    if separator_id < 0:
        raise TrainingError(f"separator_id must be a token id >= 0, got {separator_id}")


def token_dtype(n_ids: int) -> np.dtype:
    """The smallest unsigned dtype holding ids ``0 .. n_ids - 1``: uint16 or uint32."""
    if n_ids <= 1 << 16:
        return np.dtype(np.uint16)
    if n_ids <= 1 << 32:
        return np.dtype(np.uint32)
    raise TrainingError(f"a vocabulary of {n_ids} ids does not fit 32-bit token ids")


@dataclass(frozen=True)
class TokenFileInfo:
    """The sidecar of a token file: its layout and what packing counted."""

    dtype: str  # "uint16" or "uint32"
    n_blocks: int
    block_size: int
    n_documents: int
    n_bytes: int  # UTF-8 bytes of all documents (separators excluded)
    n_tokens: int  # stream tokens, separators included, before the remainder was dropped
    min_id: int  # smallest and largest id in the file's blocks
    max_id: int


def info_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _stream(tokenizer: PreTrainedTokenizerBase, chunk: list[str], separator_id: int) -> np.ndarray:
    """The chunk's packed stream as int64: each text's ids, then the separator."""
    # verbose=False: long documents are expected here, they are cut into blocks.
    ids = tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    ends = np.cumsum(lengths + 1)  # one past each separator
    stream = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
    is_text = np.ones(stream.size, dtype=bool)
    is_text[ends - 1] = False
    stream[ends - 1] = separator_id
    stream[is_text] = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return stream


def write_token_file(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    block_size: int,
    path: Path,
    separator_id: int,
) -> TokenFileInfo:
    """Pack ``texts`` into the token file ``path`` (and its sidecar); see the module doc."""
    check_pack_args(texts, block_size, separator_id)
    path = Path(path)
    dtype = token_dtype(max(len(tokenizer), separator_id + 1))
    limit = int(np.iinfo(dtype).max)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    documents = n_bytes = n_tokens = written = 0
    low, high = limit, 0
    pending = np.empty(0, dtype=np.int64)  # the stream's tail shorter than a block
    try:
        with open(tmp, "wb") as handle:
            for chunk in text_chunks(texts):
                documents += len(chunk)
                n_bytes += sum(len(text.encode("utf-8")) for text in chunk)
                stream = _stream(tokenizer, chunk, separator_id)
                n_tokens += stream.size
                if stream.size and int(stream.max()) > limit:
                    raise TrainingError(
                        f"token id {int(stream.max())} does not fit {dtype.name}: the tokenizer "
                        f"reports {len(tokenizer)} ids but produced a larger one")
                stream = np.concatenate([pending, stream])
                full = stream.size // block_size * block_size
                if full:
                    blocks = stream[:full]
                    low, high = min(low, int(blocks.min())), max(high, int(blocks.max()))
                    blocks.astype(dtype).tofile(handle)
                    written += full
                pending = stream[full:].copy()
        if not written:
            raise TrainingError(
                f"texts give {n_tokens} tokens, fewer than one block of block_size={block_size}")
        info = TokenFileInfo(dtype=dtype.name, n_blocks=written // block_size, block_size=block_size,
                             n_documents=documents, n_bytes=n_bytes, n_tokens=n_tokens,
                             min_id=low, max_id=high)
        atomic_write(info_path(path), json.dumps(asdict(info), indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return info


def read_info(path: Path) -> TokenFileInfo:
    """The sidecar of the token file ``path``, checked against the file's size."""
    path = Path(path)
    sidecar = info_path(path)
    if not path.is_file() or not sidecar.is_file():
        raise TrainingError(f"token file {str(path)!r} or its sidecar {sidecar.name!r} is missing")
    info = TokenFileInfo(**json.loads(sidecar.read_text()))
    expected = info.n_blocks * info.block_size * np.dtype(info.dtype).itemsize
    if path.stat().st_size != expected:
        raise TrainingError(f"token file {str(path)!r} holds {path.stat().st_size} bytes, its sidecar "
                            f"says {expected} ({info.n_blocks} blocks of {info.block_size} {info.dtype})")
    return info


def open_token_file(path: Path) -> tuple[np.memmap, TokenFileInfo]:
    """The token file as a read-only (n_blocks, block_size) memory map, and its sidecar."""
    info = read_info(path)
    blocks = np.memmap(path, dtype=np.dtype(info.dtype), mode="r", shape=(info.n_blocks, info.block_size))
    return blocks, info


def scan_tokens(path: Path, dtype: np.dtype | str, chunk: int = SCAN_CHUNK) -> Iterator[np.ndarray]:
    """The file's ids in order, ``chunk`` at a time, by plain reads (nothing stays mapped)."""
    with open(path, "rb") as handle:
        while True:
            part = np.fromfile(handle, dtype=np.dtype(dtype), count=chunk)
            if not part.size:
                return
            yield part
