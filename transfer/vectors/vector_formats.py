"""Reading vector files, and the sniffing that tells their formats apart.

Formats read (all carry no code): fastText ``.bin`` (word vectors plus the subword n-gram
table of Bojanowski et al., 2017), word2vec text (``.vec``/``.txt``, optionally gzipped)
and binary, spaCy vector tables (keys are MurmurHash64A string hashes), and our own
compact folder (written and read by :mod:`transfer.vectors.compact_vectors`). gensim's
native ``.model``/``.kv`` files are pickles and are refused (never unpickle).

The sniffing helpers (magic numbers, pickle detection, gzip opening, the word2vec
``count dim`` header) serve :func:`load_vectors` here and the cheap head check of
:mod:`transfer.vectors.pretrained`, so both tell formats apart the same way.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from transfer.errors import VectorsError
from transfer.vectors.compact_vectors import COMPACT_META, load_compact
from transfer.vectors.static_vectors import NgramTable, StaticVectors

FASTTEXT_MAGIC = 793712314  # first int32 of a fastText .bin file
GZIP_MAGIC = b"\x1f\x8b"
_PICKLE_SUFFIXES = {".model", ".kv", ".pkl", ".pickle"}
GENSIM_HINT = (
    "gensim's native files are Python pickles and are never loaded here; convert it where "
    "you trust it: `KeyedVectors.load(path).save_word2vec_format('vectors.bin', binary=True)` "
    "(or `model.wv.save_word2vec_format(...)` for a full model; for fastText models "
    "`gensim.models.fasttext.save_facebook_model(model, 'vectors.bin')` keeps the n-grams)"
)


# ---------------------------------------------------------------------------------------
# sniffing


def _read_head(path: Path, n: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def is_pickle(path: Path, head: bytes) -> bool:
    """A pickle by its suffix (gensim's names) or its first bytes (protocol 2-5)."""
    return path.suffix.lower() in _PICKLE_SUFFIXES or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def is_fasttext_bin(head: bytes) -> bool:
    return len(head) >= 4 and int.from_bytes(head[:4], "little") == FASTTEXT_MAGIC


def is_gzipped(path: Path) -> bool:
    if path.suffix.lower() == ".gz":
        return True
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it is gzipped (by suffix or magic)."""
    return gzip.open(path, "rb") if is_gzipped(path) else open(path, "rb")  # type: ignore[return-value]


def parse_header(line: bytes) -> tuple[int, int] | None:
    """The ``(count, dim)`` of a word2vec header line, None when ``line`` is not one.
    A zero ``dim`` is returned as read: each caller refuses it in its own words."""
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


# ---------------------------------------------------------------------------------------
# loading files


def load_vectors(path: Path | str, *, limit: int | None = None) -> StaticVectors:
    """Load static vectors by sniffing the file: fastText ``.bin`` (with n-grams), word2vec
    text or binary, a spaCy vectors folder, or a compact folder of
    :func:`~transfer.vectors.compact_vectors.save_vectors`.

    ``limit`` keeps the first ``limit`` words of word2vec files (they are sorted by
    frequency). Pickled gensim files are refused with a conversion hint."""
    path = Path(path)
    if not path.exists():
        raise VectorsError(f"{path}: no such vector file or folder")
    if path.is_dir():
        if (path / COMPACT_META).exists():
            return load_compact(path)
        return load_spacy_vectors(path)
    head = _read_head(path, 8)
    if is_pickle(path, head):
        raise VectorsError(f"{path}: refused: {GENSIM_HINT}")
    if is_fasttext_bin(head):
        return load_fasttext_bin(path)
    if path.suffix.lower() in {".ftz"}:
        raise VectorsError(f"{path}: quantized fastText models (.ftz) have no usable n-gram "
                           f"matrix; use the .bin model")
    return load_word2vec(path, limit=limit)


def head_words(path: Path | str, n: int = 2000) -> list[str]:
    """The first ``n`` words of a vector file, in file order, without reading its vectors:
    fastText and word2vec files list the most frequent words first, so these are the
    language's commonest words (what a language check reads). A fastText ``.bin``'s dictionary
    (words only, not labels), a word2vec text file's line words (``.gz`` too), a word2vec
    binary file's words (each followed by its ``dim`` float32 values); a spaCy folder: none."""
    import mmap
    import struct

    path = Path(path)
    if path.is_dir():
        return []
    head = _read_head(path, 4096)
    words: list[str] = []
    if is_fasttext_bin(head):
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            pos = 8 + 12 * 4 + 8  # magic, version, args (12 int32 and one double)
            n_entries = struct.unpack_from("<i", data, pos)[0]
            pos += 4 * 3 + 8 * 2
            for _ in range(max(n_entries, 0)):
                end = data.find(b"\0", pos)
                if end < 0 or len(words) >= n:
                    break
                if data[end + 9] == 0:  # entry type 0: a word (1: a label)
                    words.append(data[pos:end].decode("utf-8", "replace"))
                pos = end + 1 + 8 + 1
        return words
    with open_binary(path) as handle:
        first = handle.readline()
        header = parse_header(first)
        binary = header is not None and path.suffix.lower() == ".bin"
        if header is None:
            words.append(first.split(b" ", 1)[0].decode("utf-8", "replace"))
        while len(words) < n:
            if binary:
                word = bytearray()
                while (byte := handle.read(1)) not in (b" ", b""):
                    word += byte
                if not word:
                    break
                handle.read(header[1] * 4)
                words.append(bytes(word).lstrip(b"\n").decode("utf-8", "replace"))
                continue
            line = handle.readline()
            if not line:
                break
            words.append(line.split(b" ", 1)[0].decode("utf-8", "replace").strip())
    return [w for w in words if w]


def load_fasttext_bin(path: Path | str) -> StaticVectors:
    """A fastText ``.bin`` model through the ``fasttext`` package, with its n-gram table."""
    import fasttext

    path = Path(path)
    _check_fasttext_layout(path)  # fastText itself may hang or crash on a cut file
    try:
        model = fasttext.load_model(str(path))
    except (RuntimeError, ValueError, MemoryError, OSError) as exc:
        raise VectorsError(f"{path}: cannot read fastText model ({exc}); truncated or corrupt?") from exc
    if model.is_quantized():
        raise VectorsError(f"{path}: quantized fastText model; its n-grams cannot be composed, "
                           f"use the unquantized .bin")
    return from_fasttext_model(model, str(path))


def _check_fasttext_layout(path: Path) -> None:
    """Walk the .bin layout (header, args, dictionary, matrices) and check the file holds
    every byte it announces, before fastText reads it."""
    import mmap
    import struct

    size = path.stat().st_size
    if size < 8 + 12 * 4 + 8 + 4 * 3 + 8 * 2:
        raise VectorsError(f"{path}: fastText file is truncated ({size} bytes)")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, version = struct.unpack_from("<ii", data, 0)
        if magic != FASTTEXT_MAGIC or version > 12:
            raise VectorsError(f"{path}: not a fastText .bin (magic {magic}, version {version})")
        pos = 8 + 12 * 4 + 8  # args: 12 int32 and one double
        n_entries, _, _, _, prune = struct.unpack_from("<iiiqq", data, pos)
        pos += 4 * 3 + 8 * 2
        if n_entries < 0 or prune < -1:
            raise VectorsError(f"{path}: corrupt fastText dictionary header")
        for i in range(n_entries):
            end = data.find(b"\0", pos)
            if end < 0 or end + 1 + 8 + 1 > size:
                raise VectorsError(f"{path}: truncated in dictionary entry {i + 1} of {n_entries}")
            pos = end + 1 + 8 + 1  # word, count int64, type int8
        pos += max(prune, 0) * 8
        for name in ("input", "output"):
            if pos + 1 + 16 > size:
                raise VectorsError(f"{path}: truncated before the {name} matrix")
            if data[pos]:
                raise VectorsError(f"{path}: quantized fastText model; its n-grams cannot be "
                                   f"composed, use the unquantized .bin")
            rows, cols = struct.unpack_from("<qq", data, pos + 1)
            pos += 1 + 16 + rows * cols * 4
            if rows < 0 or cols < 0 or pos > size:
                raise VectorsError(f"{path}: truncated: the {name} matrix ({rows} x {cols}) needs "
                                   f"{pos} bytes, the file has {size}")


def from_fasttext_model(model: Any, source: str) -> StaticVectors:
    args = model.f.getArgs()
    words = list(model.get_words(on_unicode_error="strict"))
    # A view of fastText's own input matrix (words + buckets), not a copy: the package's
    # get_input_matrix() copies it (np.array), which doubled a 2.4 GB table. The n-gram
    # table keeps the model alive while it views it.
    full = np.asarray(model.f.getInputMatrix())
    if full.dtype != np.float32:  # pragma: no cover - fastText's matrices are float32
        full = full.astype(np.float32)
    nwords = len(words)
    if full.shape[0] != nwords + args.bucket:
        raise VectorsError(f"{source}: input matrix has {full.shape[0]} rows, expected "
                           f"{nwords} words + {args.bucket} buckets")
    ngrams = NgramTable(args.minn, args.maxn, args.bucket, full[nwords:], owner=model) if args.maxn > 0 else None
    # In-vocabulary vectors exactly as fastText's get_word_vector composes them, written
    # row by row into one matrix (a list of rows and np.stack held it twice).
    matrix = np.empty((nwords, full.shape[1]), dtype=np.float32)
    for i, word in enumerate(words):
        matrix[i] = model.get_word_vector(word)
    meta = {"minn": args.minn, "maxn": args.maxn, "bucket": args.bucket, "dim": args.dim}
    return StaticVectors(words, matrix, ngrams, (), source, False, meta)


def load_word2vec(path: Path | str, *, limit: int | None = None, binary: bool | None = None) -> StaticVectors:
    """word2vec text (``n dim`` header, then ``word v1 .. vdim`` per line; header optional;
    gzipped or not) or binary (header, then ``word<space>`` and ``dim`` little-endian
    float32 per word). ``binary`` None: decided by the suffix and the bytes after the
    header."""
    path = Path(path)
    with open_binary(path) as handle:
        first = handle.readline()
        header = parse_header(first)
        if header is not None and header[1] <= 0:
            raise VectorsError(f"{path}: header {first!r} gives dimension {header[1]}")
        if header is not None and binary is not False:
            if binary is None:
                sample = handle.read(4096)
                binary = path.suffix.lower() == ".bin" or _looks_binary(sample)
                handle.seek(len(first))
            if binary:
                return _read_w2v_binary(handle, path, header, limit)
    return _read_w2v_text(path, header, limit)


def _looks_binary(sample: bytes) -> bool:
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a cut in the middle of a multi-byte character at the end is still text
        if exc.start < len(sample) - 4:
            return True
        text = sample[: exc.start].decode("utf-8")
    return any(ord(c) < 9 for c in text)


def _read_w2v_binary(handle: Any, path: Path, header: tuple[int, int], limit: int | None) -> StaticVectors:
    n, dim = header
    take = n if limit is None else min(n, limit)
    words: list[str] = []
    matrix = np.empty((take, dim), dtype=np.float32)
    row_bytes = 4 * dim
    for i in range(take):
        raw = bytearray()
        while True:
            ch = handle.read(1)
            if not ch:
                raise VectorsError(f"{path}: truncated: header promises {n} vectors, file ends in "
                                   f"the word of vector {i + 1}")
            if ch == b" ":
                break
            if ch != b"\n" or raw:
                raw += ch
        try:
            words.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise VectorsError(f"{path}: word {i + 1} is not UTF-8 ({exc})") from exc
        data = handle.read(row_bytes)
        if len(data) != row_bytes:
            raise VectorsError(f"{path}: truncated: vector {i + 1} of {n} has {len(data)} of "
                               f"{row_bytes} bytes")
        matrix[i] = np.frombuffer(data, dtype="<f4")
    if limit is None:
        rest = handle.read(2).strip()
        if rest:
            raise VectorsError(f"{path}: header promises {n} vectors but the file has more data")
    if not np.all(np.isfinite(matrix)):
        raise VectorsError(f"{path}: vectors contain NaN or infinity; corrupt file?")
    return StaticVectors(words, matrix, None, (), str(path))


class _RowBuffer:
    """Rows appended into preallocated blocks: exactly one block when the header gives the
    count (the matrix is held once), else blocks of ``chunk`` rows joined at the end."""

    def __init__(self, dim: int, expected: int | None, chunk: int = 65536) -> None:
        self.dim, self.chunk = dim, chunk
        self.blocks = [np.empty((expected if expected is not None else chunk, dim), dtype=np.float32)]
        self.used = 0  # rows used in the last block
        self.count = 0

    def append(self, values: list[str]) -> None:
        block = self.blocks[-1]
        if self.used == block.shape[0]:
            block = np.empty((self.chunk, self.dim), dtype=np.float32)
            self.blocks.append(block)
            self.used = 0
        block[self.used] = np.asarray(values, dtype=np.float32)
        self.used += 1
        self.count += 1

    def matrix(self) -> np.ndarray:
        self.blocks[-1] = self.blocks[-1][: self.used]
        return self.blocks[0] if len(self.blocks) == 1 else np.concatenate(self.blocks)


def _read_w2v_text(path: Path, header: tuple[int, int] | None, limit: int | None) -> StaticVectors:
    words: list[str] = []
    rows: _RowBuffer | None = None
    dim = header[1] if header else None
    expected = None if header is None else (header[0] if limit is None else min(header[0], limit))
    with open_binary(path) as handle:
        if header is not None:
            handle.readline()
        for lineno, raw in enumerate(handle, start=2 if header else 1):
            if limit is not None and len(words) >= limit:
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise VectorsError(f"{path}: line {lineno} is not UTF-8 text and the file is not word2vec "
                                   f"binary ({exc})") from exc
            parts = line.rstrip("\n").rstrip("\r").rstrip(" ").split(" ")
            if parts == [""]:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) != dim + 1:
                raise VectorsError(f"{path}: line {lineno} has {len(parts) - 1} values, expected {dim}"
                                   + (" (from the header)" if header else ""))
            if rows is None:
                rows = _RowBuffer(dim, expected)
            if expected is not None and rows.count >= expected:
                raise VectorsError(f"{path}: header says {header[0] if header else expected} vectors but the "
                                   f"file has more (line {lineno})")
            try:
                rows.append(parts[1:])
            except ValueError as exc:
                raise VectorsError(f"{path}: line {lineno}: not a number ({exc})") from exc
            words.append(parts[0])
    if header is not None and limit is None and len(words) != header[0]:
        raise VectorsError(f"{path}: header says {header[0]} vectors but the file has {len(words)}")
    if not words or dim is None or rows is None:
        raise VectorsError(f"{path}: no vectors in file")
    matrix = rows.matrix()
    if not np.all(np.isfinite(matrix)):
        raise VectorsError(f"{path}: vectors contain NaN or infinity")
    return StaticVectors(words, matrix, None, (), str(path))


# ---------------------------------------------------------------------------------------
# spaCy vector tables


def _murmurhash64a(data: bytes, seed: int = 1) -> int:
    """MurmurHash64A, the hash spaCy uses for its string store (``hash_string``, seed 1)."""
    mask = 0xFFFFFFFFFFFFFFFF
    m, r = 0xC6A4A7935BD1E995, 47
    h = (seed ^ (len(data) * m)) & mask
    n_blocks = len(data) // 8
    for i in range(n_blocks):
        k = int.from_bytes(data[8 * i : 8 * i + 8], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h ^= k
        h = (h * m) & mask
    tail = data[8 * n_blocks :]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * m) & mask
    h ^= h >> r
    h = (h * m) & mask
    h ^= h >> r
    return h


def load_spacy_vectors(folder: Path | str) -> StaticVectors:
    """A spaCy vector table: a folder with ``vectors`` (.npy), ``key2row`` (msgpack) and
    the pipeline's ``strings.json`` (in the folder or in ``../``), or a pipeline folder
    with ``vocab/``. Keys are spaCy string hashes, mapped back to words through the
    string store. Floret (hashed) tables are refused."""
    import msgpack

    folder = Path(folder)
    if (folder / "vocab").is_dir():
        folder = folder / "vocab"
    vec_file, key_file = folder / "vectors", folder / "key2row"
    strings_file = next((p for p in (folder / "strings.json", folder.parent / "strings.json") if p.exists()), None)
    if not vec_file.exists() or not key_file.exists() or strings_file is None:
        raise VectorsError(f"{folder}: not a vector folder (expected {COMPACT_META}, or spaCy's "
                           f"vectors + key2row + strings.json)")
    cfg_file = folder / "vectors.cfg"
    if cfg_file.exists():
        mode = json.loads(cfg_file.read_text()).get("mode", "default")
        if mode != "default":
            raise VectorsError(f"{folder}: spaCy vectors in mode {mode!r} are not supported")
    try:
        # memory-mapped: only the rows taken below are read, and copied once
        table = np.load(vec_file, allow_pickle=False, mmap_mode="r")
        key2row = msgpack.unpackb(key_file.read_bytes(), strict_map_key=False)
        strings = json.loads(strings_file.read_text(encoding="utf-8"))
    except (ValueError, OSError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise VectorsError(f"{folder}: cannot read spaCy vector table ({exc})") from exc
    if not isinstance(key2row, dict) or table.ndim != 2:
        raise VectorsError(f"{folder}: key2row is not a mapping or vectors is not a matrix")
    words: list[str] = []
    rows: list[int] = []
    for s in strings:
        row = key2row.get(_murmurhash64a(s.encode("utf-8")))
        if row is not None and 0 <= row < table.shape[0]:
            words.append(s)
            rows.append(row)
    if not words:
        raise VectorsError(f"{folder}: no vector row belongs to a string of {strings_file}")
    order = np.argsort(rows, kind="stable")  # keep the table's (frequency) order
    return StaticVectors([words[i] for i in order], table[np.asarray(rows)[order]], None, (), str(folder))
