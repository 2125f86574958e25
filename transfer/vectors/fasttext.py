"""Static word vectors: load them, train them with fastText, compose n-gram vectors.

fastText (Bojanowski et al., 2017, "Enriching Word Vectors with Subword Information")
represents a word as the mean of its own vector and the vectors of its character n-grams
(``<word>`` with boundary symbols, lengths ``minn..maxn``), each n-gram hashed (FNV-1a) into
one of ``bucket`` rows. That composition gives vectors to words never seen in training and
to subword tokens (WECHSEL's first token method), so :class:`StaticVectors` keeps the
n-gram table next to the word matrix when one exists.

Formats read (all carry no code): fastText ``.bin``, word2vec text (``.vec``/``.txt``) and
binary, spaCy vector tables, and our own compact folder (:func:`save_vectors`). gensim's
native ``.model``/``.kv`` files are pickles and are refused (never unpickle).

The compact folder keeps the word matrix plus only the n-gram buckets that training could
touch (the n-grams of the vocabulary's words; every other bucket is still at its random
initialization), so a Bible-sized model takes a few MB instead of ``bucket x dim`` floats.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from transfer.engine.cache import replacing_directory
from transfer.errors import VectorsError

FASTTEXT_MAGIC = 793712314  # first int32 of a fastText .bin file
COMPACT_META = "static_vectors.json"
_PICKLE_SUFFIXES = {".model", ".kv", ".pkl", ".pickle"}
_GENSIM_HINT = (
    "gensim's native files are Python pickles and are never loaded here; convert it where "
    "you trust it: `KeyedVectors.load(path).save_word2vec_format('vectors.bin', binary=True)` "
    "(or `model.wv.save_word2vec_format(...)` for a full model; for fastText models "
    "`gensim.models.fasttext.save_facebook_model(model, 'vectors.bin')` keeps the n-grams)"
)
_WORD_RE = re.compile(r"\w+(?:['’\-]\w+)*")


def tokenize_words(text: str, *, lowercase: bool = False) -> list[str]:
    """Words of ``text`` (Unicode letters/digits, inner apostrophes and hyphens kept);
    punctuation dropped. The same tokenization is used for fastText training, word
    alignment and dictionary lookups, so all of them agree on what a word is."""
    words = _WORD_RE.findall(text)
    return [w.lower() for w in words] if lowercase else words


# ---------------------------------------------------------------------------------------
# fastText character n-grams


def _fnv1a(data: bytes) -> int:
    """fastText's hash: 32-bit FNV-1a over bytes read as *signed* chars (a quirk of its
    C++ code: bytes >= 0x80 are sign-extended before the xor)."""
    h = 2166136261
    for byte in data:
        h ^= byte if byte < 0x80 else (byte | 0xFFFFFF00)
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def char_ngrams(word: str, minn: int, maxn: int) -> list[str]:
    """fastText's n-grams of ``<word>`` (lengths in characters, ``minn..maxn``; a lone
    boundary symbol is never an n-gram)."""
    wrapped = f"<{word}>"
    grams = []
    size = len(wrapped)
    for i in range(size):
        for n in range(1, maxn + 1):
            if i + n > size:
                break
            if n >= minn and not (n == 1 and (i == 0 or i + n == size)):
                grams.append(wrapped[i : i + n])
    return grams


@dataclass
class NgramTable:
    """fastText's hashed n-gram rows: all ``bucket`` rows (``ids is None``) or only the
    rows listed in the sorted ``ids``."""

    minn: int
    maxn: int
    bucket: int
    rows: np.ndarray
    ids: np.ndarray | None = None
    # ``rows`` may be a view into a loaded fastText model's own matrix (no copy of a
    # multi-GB table); the model must then live as long as the view
    owner: Any = field(default=None, repr=False, compare=False)

    def bucket_ids(self, text: str) -> list[int]:
        if self.maxn <= 0 or self.bucket <= 0:
            return []
        return [_fnv1a(g.encode("utf-8")) % self.bucket for g in char_ngrams(text, self.minn, self.maxn)]

    def compose(self, text: str, extra: np.ndarray | None = None) -> np.ndarray | None:
        """Mean of the n-gram rows of ``text`` (plus ``extra``, the word's own row, as
        fastText does for in-vocabulary words); None when no row is known."""
        ids = np.asarray(self.bucket_ids(text), dtype=np.int64)
        if self.ids is None:
            found = self.rows[ids] if ids.size else self.rows[:0]
        else:
            pos = np.searchsorted(self.ids, ids)
            pos = np.minimum(pos, max(len(self.ids) - 1, 0))
            hit = self.ids[pos] == ids if len(self.ids) else np.zeros(len(ids), bool)
            found = self.rows[pos[hit]]
        if found.shape[0] == 0 and extra is None:
            return None
        total = found.astype(np.float32).sum(axis=0)
        if extra is not None:
            total = total + extra.astype(np.float32)
        # Buckets left out of a compact table were never trained (zero in fastText's own
        # matrix), so they still count in the mean, as fastText counts them.
        return total / (len(ids) + (extra is not None))

    def restricted_to(self, words: Iterable[str]) -> NgramTable:
        """Only the buckets that the n-grams of ``words`` use (compact storage)."""
        needed = sorted({b for w in words for b in self.bucket_ids(w)})
        ids = np.asarray(needed, dtype=np.int64)
        if self.ids is None:
            rows = self.rows[ids]
        else:
            pos = np.searchsorted(self.ids, ids)
            pos = np.minimum(pos, max(len(self.ids) - 1, 0))
            keep = self.ids[pos] == ids
            ids, rows = ids[keep], self.rows[pos[keep]]
        return NgramTable(self.minn, self.maxn, self.bucket, np.ascontiguousarray(rows, np.float32), ids)


# ---------------------------------------------------------------------------------------
# the vectors


def _apply_ops(vec: np.ndarray, ops: Sequence[tuple[str, np.ndarray | None]]) -> np.ndarray:
    # every op below makes a new array, so the input is never changed: no copy up front
    out = np.asarray(vec, dtype=np.float32)
    for name, arg in ops:
        if name == "unit":
            norm = np.linalg.norm(out, axis=-1, keepdims=True)
            out = out / np.where(norm > 0, norm, 1.0)
        elif name == "center":
            out = out - arg
        elif name == "linear":
            out = out @ arg
        else:  # pragma: no cover - ops are built only by the methods below
            raise ValueError(f"unknown vector operation {name!r}")
    return out.astype(np.float32, copy=False)


@dataclass
class StaticVectors:
    """Word vectors (``matrix`` rows follow ``words``), optionally with fastText's n-gram
    table so that any string gets a vector. ``ops`` are the transformations (unit length,
    centring, linear maps) already applied to ``matrix``; they are applied to every later
    n-gram composition too, so composed vectors land in the same space."""

    words: list[str]
    matrix: np.ndarray
    ngrams: NgramTable | None = None
    ops: tuple[tuple[str, np.ndarray | None], ...] = ()
    source: str = ""
    lowercase: bool = False  # trained on lowercased text: look words up lowercased
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.ascontiguousarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.words):
            raise VectorsError(
                f"{self.source or 'vectors'}: matrix shape {self.matrix.shape} does not match "
                f"{len(self.words)} words"
            )

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    @cached_property
    def index(self) -> dict[str, int]:
        """word -> row (the first row of a word listed twice)."""
        found: dict[str, int] = {}
        for i, word in enumerate(self.words):
            found.setdefault(word, i)
        return found

    def _key(self, word: str) -> str:
        return word.lower() if self.lowercase else word

    def __contains__(self, word: str) -> bool:
        return self._key(word) in self.index

    def ngram_vector(self, text: str) -> np.ndarray | None:
        """fastText composition of an arbitrary string from its character n-grams (no
        word row), in this object's space; None without an n-gram table, when no n-gram
        row is known, or when the composition is all zero (DESIGN: not a direction)."""
        if self.ngrams is None or not text:
            return None
        raw = self.ngrams.compose(self._key(text))
        if raw is None or not np.any(raw):
            return None
        return _apply_ops(raw, self.ops)

    def vector(self, word: str) -> np.ndarray | None:
        """The word's row when in the vocabulary, else its n-gram composition; None when
        neither exists or the vector is all zero."""
        row = self.index.get(self._key(word))
        if row is not None:
            vec = self.matrix[row]
            return vec.copy() if np.any(vec) else None
        return self.ngram_vector(word)

    def _derive(self, matrix: np.ndarray, op: tuple[str, np.ndarray | None]) -> StaticVectors:
        return StaticVectors(list(self.words), matrix, self.ngrams, self.ops + (op,), self.source,
                             self.lowercase, dict(self.meta))

    def transformed(self, W: np.ndarray) -> StaticVectors:
        """Apply the linear map ``x -> x @ W`` to every vector, now and when composed."""
        W = np.asarray(W, dtype=np.float32)
        if W.ndim != 2 or W.shape[0] != self.dim:
            raise VectorsError(f"{self.source or 'vectors'}: map of shape {W.shape} does not fit dim {self.dim}")
        return self._derive(self.matrix @ W, ("linear", W))

    def unit_normalized(self) -> StaticVectors:
        return self._derive(_apply_ops(self.matrix, [("unit", None)]), ("unit", None))

    def centered(self, mean: np.ndarray | None = None) -> StaticVectors:
        mean = self.matrix.mean(axis=0) if mean is None else np.asarray(mean, np.float32)
        return self._derive(self.matrix - mean, ("center", mean.astype(np.float32)))

    def restricted(self, limit: int) -> StaticVectors:
        """The first ``limit`` words (files are usually sorted by frequency)."""
        return StaticVectors(self.words[:limit], self.matrix[:limit], self.ngrams, self.ops,
                             self.source, self.lowercase, dict(self.meta))


# ---------------------------------------------------------------------------------------
# compact storage (our own format: safetensors + words.txt + JSON)


def save_vectors(vectors: StaticVectors, folder: Path, *, keep_ngrams_for: Iterable[str] | None = None) -> Path:
    """Write ``vectors`` into ``folder`` atomically (temporary sibling, then rename).

    The n-gram table is restricted to the buckets of ``keep_ngrams_for`` (default: the
    vocabulary), which are the only buckets fastText training updates."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    if any("\n" in w or "\r" in w for w in vectors.words):
        raise VectorsError(f"{vectors.source}: a word contains a line break; cannot store it")
    with replacing_directory(folder) as tmp:
        (tmp / "words.txt").write_text("".join(w + "\n" for w in vectors.words), encoding="utf-8")
        tensors: dict[str, np.ndarray] = {"matrix": vectors.matrix}
        meta: dict[str, Any] = {"format": "vocab-transfer static vectors", "version": 1,
                                "words": len(vectors.words), "dim": vectors.dim,
                                "lowercase": vectors.lowercase, "source": vectors.source,
                                "meta": vectors.meta, "ops": []}
        if vectors.ngrams is not None:
            table = vectors.ngrams.restricted_to(keep_ngrams_for if keep_ngrams_for is not None else vectors.words)
            tensors["ngram_ids"] = table.ids
            tensors["ngram_rows"] = table.rows
            meta["ngrams"] = {"minn": table.minn, "maxn": table.maxn, "bucket": table.bucket,
                              "stored_buckets": len(table.ids)}
        for i, (name, arg) in enumerate(vectors.ops):
            entry: dict[str, Any] = {"op": name}
            if arg is not None:
                entry["tensor"] = f"op{i}"
                tensors[f"op{i}"] = np.ascontiguousarray(arg, dtype=np.float32)
            meta["ops"].append(entry)
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "vectors.safetensors"))
        (tmp / COMPACT_META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return folder


def load_compact(folder: Path) -> StaticVectors:
    """Read a folder written by :func:`save_vectors`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / COMPACT_META).read_text())
        tensors = load_file(str(folder / "vectors.safetensors"))
        words = (folder / "words.txt").read_text(encoding="utf-8").split("\n")[:-1]
    except (OSError, json.JSONDecodeError, SafetensorError, UnicodeDecodeError) as exc:
        raise VectorsError(f"{folder}: not a readable compact vector folder ({exc})") from exc
    if len(words) != meta.get("words") or tensors["matrix"].shape != (meta["words"], meta["dim"]):
        raise VectorsError(f"{folder}: {len(words)} words and matrix {tensors['matrix'].shape} "
                           f"disagree with {COMPACT_META} ({meta.get('words')} x {meta.get('dim')})")
    ngrams = None
    if "ngrams" in meta:
        ng = meta["ngrams"]
        ngrams = NgramTable(ng["minn"], ng["maxn"], ng["bucket"], tensors["ngram_rows"], tensors["ngram_ids"])
    ops = tuple((o["op"], tensors[o["tensor"]] if "tensor" in o else None) for o in meta["ops"])
    return StaticVectors(words, tensors["matrix"], ngrams, ops, meta.get("source") or str(folder),
                         bool(meta.get("lowercase")), meta.get("meta", {}))


# ---------------------------------------------------------------------------------------
# loading files


def _read_head(path: Path, n: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def _is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def load_vectors(path: Path | str, *, limit: int | None = None) -> StaticVectors:
    """Load static vectors by sniffing the file: fastText ``.bin`` (with n-grams), word2vec
    text or binary, a spaCy vectors folder, or a compact folder of :func:`save_vectors`.

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
    if path.suffix.lower() in _PICKLE_SUFFIXES or _is_pickle(head):
        raise VectorsError(f"{path}: refused: {_GENSIM_HINT}")
    if len(head) >= 4 and int.from_bytes(head[:4], "little") == FASTTEXT_MAGIC:
        return load_fasttext_bin(path)
    if path.suffix.lower() in {".ftz"}:
        raise VectorsError(f"{path}: quantized fastText models (.ftz) have no usable n-gram "
                           f"matrix; use the .bin model")
    return load_word2vec(path, limit=limit)


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
    return _from_fasttext_model(model, str(path))


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


def _from_fasttext_model(model: Any, source: str) -> StaticVectors:
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


def _parse_header(line: bytes, path: Path) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        n, dim = int(parts[0]), int(parts[1])
        if dim <= 0:
            raise VectorsError(f"{path}: header {line!r} gives dimension {dim}")
        return n, dim
    return None


def _open_maybe_gzip(path: Path) -> Any:
    import gzip

    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped or path.suffix.lower() == ".gz" else open(path, "rb")


def load_word2vec(path: Path | str, *, limit: int | None = None, binary: bool | None = None) -> StaticVectors:
    """word2vec text (``n dim`` header, then ``word v1 .. vdim`` per line; header optional;
    gzipped or not) or binary (header, then ``word<space>`` and ``dim`` little-endian
    float32 per word). ``binary`` None: decided by the suffix and the bytes after the
    header."""
    path = Path(path)
    with _open_maybe_gzip(path) as handle:
        first = handle.readline()
        header = _parse_header(first, path)
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
    with _open_maybe_gzip(path) as handle:
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


# ---------------------------------------------------------------------------------------
# training fastText


def _train_model(corpus_path: Path, settings: dict[str, Any]) -> Any:
    # The public train_unsupervised() does not accept `seed`; build its args the same way
    # through the package's own helpers so the seed reaches the C++ trainer.
    from fasttext import FastText as ft

    args = dict(ft.unsupervised_default)
    args.update(settings, input=str(corpus_path), verbose=0)
    built = ft._build_args(args, set(settings) | {"input"})
    model = ft._FastText(args=built)
    ft.fasttext.train(model.f, built)
    model.set_args(model.f.getArgs())
    return model


def train_fasttext(
    corpus_path: Path,
    out_dir: Path,
    *,
    model: Literal["skipgram", "cbow"] = "skipgram",
    dim: int = 100,
    epoch: int = 5,
    min_count: int = 3,
    threads: int = 1,
    seed: int = 0,
    minn: int = 3,
    maxn: int = 6,
    bucket: int = 200_000,
    lr: float = 0.05,
    ws: int = 5,
    neg: int = 5,
    lowercase: bool = False,
) -> Path:
    """Train fastText on a whitespace-tokenized text file (one sentence per line) and save
    it compactly (:func:`save_vectors`) to ``out_dir``; returns ``out_dir``.

    ``bucket`` is smaller than fastText's 2M default: a Bible-sized corpus has far fewer
    distinct n-grams, and it keeps training memory at ``bucket x dim`` floats. Results are
    reproducible only with ``threads=1`` (DESIGN pitfall). ``lowercase`` records that the
    corpus was lowercased, so lookups lowercase too."""
    corpus_path = Path(corpus_path)
    if model not in ("skipgram", "cbow"):
        raise VectorsError(f"fastText model {model!r}: expected 'skipgram' or 'cbow'")
    if not corpus_path.is_file() or corpus_path.stat().st_size == 0:
        raise VectorsError(f"{corpus_path}: fastText training corpus is missing or empty")
    for name, value in (("dim", dim), ("epoch", epoch), ("min_count", min_count), ("threads", threads)):
        if value < 1:
            raise VectorsError(f"fastText parameter {name}={value} must be at least 1")
    if maxn and minn > maxn:
        raise VectorsError(f"fastText n-gram lengths minn={minn} > maxn={maxn}")
    settings = {"model": model, "dim": dim, "epoch": epoch, "minCount": min_count, "thread": threads,
                "seed": seed, "minn": minn, "maxn": maxn, "bucket": bucket, "lr": lr, "ws": ws, "neg": neg}
    # fastText (0.9.x) initializes only the first `thread`/10 of its input matrix and
    # leaves the rest as the allocator hands it over: zeros from a fresh process, leftovers
    # of an earlier model (-> NaN, non-reproducible) within one. A child process per
    # training gets fresh zeroed pages, so runs are reproducible and never inherit garbage.
    payload = json.dumps({"corpus": str(corpus_path), "out": str(Path(out_dir).resolve()),
                          "settings": settings, "lowercase": lowercase})
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run([sys.executable, "-c", _CHILD, payload], check=False, capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise VectorsError(f"{corpus_path}: fastText training failed: {reason}")
    return Path(out_dir)


_CHILD = "import sys; from transfer.vectors.fasttext import _train_child; _train_child(sys.argv[1])"


def _train_child(payload: str) -> None:
    job = json.loads(payload)
    corpus_path, settings = Path(job["corpus"]), job["settings"]
    try:
        trained = _train_model(corpus_path, settings)
    except RuntimeError as exc:
        raise SystemExit(
            f"{exc} On a tiny corpus or with few buckets (bucket={settings['bucket']}) "
            f"try more text, a larger bucket or a lower lr."
        ) from exc
    vectors = _from_fasttext_model(trained, str(corpus_path))
    if not len(vectors):
        raise SystemExit(f"no word reaches min_count={settings['minCount']}")
    if not np.all(np.isfinite(vectors.matrix)):
        raise SystemExit("fastText diverged (NaN vectors); lower lr or raise bucket")
    vectors.lowercase = bool(job["lowercase"])
    vectors.meta = {**vectors.meta, **settings, "lowercase": vectors.lowercase}
    save_vectors(vectors, Path(job["out"]))


def load_trained(folder: Path | str) -> StaticVectors:
    """Load what :func:`train_fasttext` saved."""
    return load_compact(Path(folder))


def write_training_text(lines: Iterable[str], path: Path, *, lowercase: bool = False) -> dict[str, int]:
    """Write ``lines`` tokenized with :func:`tokenize_words` (one per line) for fastText
    and eflomal; returns line and token counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n_lines = n_tokens = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for line in lines:
            words = tokenize_words(line, lowercase=lowercase)
            if words:
                handle.write(" ".join(words) + "\n")
                n_lines += 1
                n_tokens += len(words)
    os.replace(tmp, path)
    return {"lines": n_lines, "tokens": n_tokens}
