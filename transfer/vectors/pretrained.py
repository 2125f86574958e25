"""A user's own pretrained static vectors: which form a file is, checked from its head.

WECHSEL (Minixhofer et al., 2022) starts from fastText's pretrained vectors (``cc.xx.300.bin``)
and OFA (Liu et al., 2024) from multilingual vectors already aligned across languages;
both are files of gigabytes. Two forms are read:

- a fastText ``.bin`` model: word vectors plus the n-gram table, so every token gets a
  vector by n-gram composition (``token_vector_method="ngram"``), like trained vectors;
- word2vec/fastText text (``.vec``/``.txt``, optionally ``.gz``; or word2vec binary): word
  vectors only, so token vectors come from WECHSEL's word average
  (``token_vector_method="word_average"``, which the config implies for such a file).

gensim's ``.model``/``.kv`` files are pickles: refused with how to convert them.
:func:`sniff_vector_file` reads only the head of a file (cheap for 7 GB), so a bad file
is refused before any stage runs; the loader checks every line as it reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from transfer.errors import VectorsError
from transfer.vectors.vector_formats import (
    FASTTEXT_MAGIC,
    GENSIM_HINT,
    GZIP_MAGIC,
    is_fasttext_bin,
    is_pickle,
    open_binary,
    parse_header,
)

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig

Form = Literal["fasttext_bin", "word2vec_text", "word2vec_binary"]
_TEXT_SUFFIXES = {".vec", ".txt"}
HEAD_LINES = 1000  # rows checked before any stage (the loader checks the rest)


@dataclass(frozen=True)
class VectorFile:
    """What the head of a vector file says: its form, dimension and (when its header
    says) number of words."""

    path: str
    form: Form
    dim: int
    words: int | None = None

    @property
    def has_ngrams(self) -> bool:
        """Only a fastText model composes vectors for strings outside its vocabulary."""
        return self.form == "fasttext_bin"


def _inner_suffix(path: Path) -> str:
    return Path(path.stem).suffix.lower() if path.suffix.lower() == ".gz" else path.suffix.lower()


def _sniff_fasttext(path: Path, head: bytes, label: str) -> VectorFile:
    if len(head) < 8 + 12 * 4:
        raise VectorsError(f"{label}: {path}: fastText file is truncated ({len(head)} bytes)")
    _, version = struct.unpack_from("<ii", head, 0)
    dim = struct.unpack_from("<i", head, 8)[0]  # Args::save writes dim first
    if version > 12 or dim <= 0:
        raise VectorsError(f"{label}: {path}: corrupt fastText header (version {version}, dim {dim})")
    return VectorFile(str(path), "fasttext_bin", dim)


def _sniff_text(path: Path, label: str, max_lines: int) -> VectorFile:
    dim: int | None = None
    header: tuple[int, int] | None = None
    rows = 0
    with open_binary(path) as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno > max_lines:
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise VectorsError(f"{label}: {path}: line {lineno} is not UTF-8 text ({exc}); a .vec "
                                   f"file is UTF-8 (convert it, e.g. with iconv)") from exc
            if lineno == 1 and (header := parse_header(raw)) is not None:
                dim = header[1]
                if dim <= 0:
                    raise VectorsError(f"{label}: {path}: line 1: header {line.strip()!r} gives dimension {dim}")
                continue
            parts = line.rstrip("\n").rstrip("\r").rstrip(" ").split(" ")
            if parts == [""]:
                continue
            if dim is None:
                dim = len(parts) - 1
                if dim <= 0:
                    raise VectorsError(f"{label}: {path}: line {lineno} has a word but no values")
            if len(parts) != dim + 1:
                said = "the header says" if header else "line 1 has"
                raise VectorsError(f"{label}: {path}: line {lineno} has {len(parts) - 1} values, but {said} "
                                   f"{dim} dimensions")
            try:
                [float(v) for v in parts[1:]]
            except ValueError as exc:
                raise VectorsError(f"{label}: {path}: line {lineno}: not a number ({exc})") from exc
            rows += 1
    if dim is None or rows == 0:
        raise VectorsError(f"{label}: {path}: no vectors in the file (empty, or a header only)")
    return VectorFile(str(path), "word2vec_text", dim, header[0] if header else None)


def sniff_vector_file(path: str | Path, label: str = "vectors", *, max_lines: int = HEAD_LINES) -> VectorFile:
    """The form and dimension of the vector file ``path``, from its head; raises
    :class:`VectorsError` naming ``label``, the file and the line for every bad variant
    seen there (missing, empty, pickled, a ``.bin`` with a bad magic number, a row whose
    width disagrees with the header, text that is not UTF-8)."""
    path = Path(path)
    if not path.exists():
        raise VectorsError(f"{label}: {path} does not exist")
    if not path.is_file():
        raise VectorsError(f"{label}: {path} is not a file (give a fastText .bin or a .vec/.txt file)")
    if path.stat().st_size == 0:
        raise VectorsError(f"{label}: {path} is empty")
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if is_pickle(path, head):
        raise VectorsError(f"{label}: {path}: refused: {GENSIM_HINT}")
    if is_fasttext_bin(head):
        return _sniff_fasttext(path, head, label)
    if head[:2] == GZIP_MAGIC and _inner_suffix(path) == ".bin":
        raise VectorsError(f"{label}: {path}: a gzipped .bin; decompress it first (gunzip), fastText "
                           f"reads .bin files uncompressed")
    if path.suffix.lower() == ".bin":
        header = parse_header(head.split(b"\n", 1)[0])
        if header is None or b"\n" not in head:
            magic = int.from_bytes(head[:4], "little") if len(head) >= 4 else None
            raise VectorsError(f"{label}: {path}: not a fastText .bin (magic number {magic}, expected "
                               f"{FASTTEXT_MAGIC}) nor a word2vec binary file (no 'count dim' header line)")
        if header[1] <= 0:
            raise VectorsError(f"{label}: {path}: line 1: header gives dimension {header[1]}")
        return VectorFile(str(path), "word2vec_binary", header[1], header[0])
    if head[:2] != GZIP_MAGIC and _inner_suffix(path) not in _TEXT_SUFFIXES and b"\0" in head:
        raise VectorsError(f"{label}: {path}: binary content in a file that is not a .bin (give a fastText "
                           f".bin, or word vectors as .vec/.txt text)")
    return _sniff_text(path, label, max_lines)


def check_vector_inputs(cfg: AdaptConfig) -> dict[str, VectorFile]:
    """The run's own vector files, before any stage: each file's head
    (:func:`sniff_vector_file`), both languages' dimensions equal (or, with one file, equal
    to the ``vector_dim`` the other side is trained with), ``vectors_aligned`` only with
    both files, and ``token_vector_method='ngram'`` only with fastText ``.bin`` files."""
    given = {side: path for side, path in (("source", cfg.source_vectors), ("target", cfg.target_vectors)) if path}
    if cfg.vectors_aligned and len(given) != 2:
        raise VectorsError("vectors_aligned needs both source_vectors and target_vectors (vectors trained here "
                           "are not in the given file's space)")
    found = {side: sniff_vector_file(path, f"{side}_vectors") for side, path in given.items()}
    if len(found) == 2 and found["source"].dim != found["target"].dim:
        raise VectorsError(f"source_vectors {found['source'].path} have {found['source'].dim} dimensions but "
                           f"target_vectors {found['target'].path} have {found['target'].dim}; both languages' "
                           f"vectors need the same dimension")
    if len(found) == 1:
        (side, info), = found.items()
        other = "target" if side == "source" else "source"
        if info.dim != cfg.vector_dim:
            raise VectorsError(f"{side}_vectors {info.path} have {info.dim} dimensions but the {other} vectors "
                               f"trained here get vector_dim={cfg.vector_dim}; set vector_dim={info.dim}")
    if cfg.token_vector_method == "ngram":
        for side, info in found.items():
            if not info.has_ngrams:
                raise VectorsError(f"token_vector_method='ngram' needs fastText n-gram vectors, but {side}_vectors "
                                   f"{info.path} holds word vectors only ({info.form}); use "
                                   f"token_vector_method='word_average' (the default for such files)")
    return found
