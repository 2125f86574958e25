"""Compressed corpus files: which compression a name promises, which one the bytes are, and
a streamed binary reader for each (gzip, bzip2, xz from the standard library; zstd from
``zstandard``).

Every reader decompresses in bounded pieces, so a file of gigabytes is never held whole,
and every reader raises at the end of a truncated file instead of ending quietly (the
``zstandard`` stream reader ends quietly there, hence ``_ZstdStream``).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from pathlib import Path
from typing import BinaryIO, Literal

import zstandard

Compression = Literal["gzip", "bz2", "xz", "zstd"]

#: The last suffix of a compressed file, and the compression it promises.
COMPRESSION_SUFFIXES: dict[str, Compression] = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
SUFFIX_OF: dict[Compression, str] = {kind: suffix for suffix, kind in COMPRESSION_SUFFIXES.items()}

# The leading bytes of each format. bzip2's is its stream header plus the first block's
# magic (pi in BCD), so plain text that happens to start with "BZh" is not taken for it.
_MAGIC: dict[Compression, tuple[bytes, ...]] = {
    "gzip": (b"\x1f\x8b",),
    "bz2": tuple(b"BZh" + bytes([d]) + b"\x31\x41\x59\x26\x53\x59" for d in b"123456789"),
    "xz": (b"\xfd7zXZ\x00",),
    "zstd": (b"\x28\xb5\x2f\xfd",),
}
MAGIC_BYTES = 10  # enough to tell every format above apart

#: What a broken compressed stream raises while it is read (bzip2's bad data is an OSError).
DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (
    EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, zstandard.ZstdError,
)

_ZSTD_INPUT = 1 << 16  # compressed bytes fed per step: bounds the output of one step


def compression_of_name(path: Path) -> Compression | None:
    """The compression a file's last suffix promises (None: not compressed)."""
    return COMPRESSION_SUFFIXES.get(path.suffix.lower())


def sniff_compression(head: bytes) -> Compression | None:
    """The compression the first bytes of a file are (None: none of ours)."""
    for kind, magics in _MAGIC.items():
        if any(head.startswith(magic) for magic in magics):
            return kind
    # an empty bzip2 stream of another block size: header, then the end-of-stream magic
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] == b"\x17\x72\x45\x38\x50\x90":
        return "bz2"
    return None


def open_decompressed(path: Path, compression: Compression | None) -> BinaryIO:
    """A binary stream of the file's (decompressed) bytes; OSError when it cannot be opened."""
    if compression is None:
        return open(path, "rb")
    if compression == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if compression == "bz2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if compression == "xz":
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return io.BufferedReader(_ZstdStream(path), buffer_size=1 << 20)  # type: ignore[return-value]


class _ZstdStream(io.RawIOBase):
    """The frames of a zstd file, decompressed one after another (``zstd`` writes one frame
    per call of a streaming compressor, ``pzstd`` many), raising ``ZstdError`` when the file
    ends inside a frame: the one check a truncated download needs."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close(): the stream owns it)
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = self._decompressor.decompressobj()
        self._frame_started = False  # bytes fed to the current frame's decompressor
        self._pending = memoryview(b"")
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._ended:
            self._pending = memoryview(self._step())
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _step(self) -> bytes:
        chunk = self._file.read(_ZSTD_INPUT)
        if not chunk:
            if self._frame_started and not self._frame.eof:
                raise zstandard.ZstdError("the file ends inside a zstd frame (truncated?)")
            self._ended = True
            return b""
        out = []
        while chunk:
            out.append(self._frame.decompress(chunk))
            self._frame_started = True
            if not self._frame.eof:
                break
            # the frame ended inside this chunk: the rest starts the next frame
            chunk = self._frame.unused_data
            self._frame = self._decompressor.decompressobj()
            self._frame_started = False
        return b"".join(out)

    def close(self) -> None:
        self._file.close()
        super().close()
