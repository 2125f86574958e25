"""The headers of weight files (GGUF, safetensors), read without the weights: the one
reader behind the memory estimate, the plan's parameter count, and the check that refuses
a damaged file before the first stage.

A truncated download keeps a readable beginning, so the check also compares the file's
size with where its last tensor ends (GGUF: the data section's alignment plus each
tensor's offset and byte size by its ggml type; safetensors: the header's data offsets).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from transfer.errors import ModelLoadError

# GGUF value types (ggml's gguf_type): struct format of the fixed-size ones
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_VERSIONS = (2, 3)
_GGUF_DEFAULT_ALIGNMENT = 32


def _read(handle: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise EOFError("the file ends inside its header")
    return struct.unpack(fmt, data)[0]


def _read_bytes(handle: BinaryIO, n: int) -> bytes:
    data = handle.read(n)
    if len(data) != n:
        raise EOFError("the file ends inside its header")
    return data


def _gguf_value(handle: BinaryIO, kind: int) -> Any:
    """One GGUF value; an array gives its length only (the tokenizer's 49k strings are
    skipped, which is what makes this fast: ``gguf.GGUFReader`` takes seconds on them)."""
    if kind in _GGUF_SCALARS:
        return _read(handle, _GGUF_SCALARS[kind])
    if kind == _GGUF_STRING:
        return _read_bytes(handle, _read(handle, "<Q")).decode("utf-8", "replace")
    if kind == _GGUF_ARRAY:
        item, count = _read(handle, "<I"), _read(handle, "<Q")
        if item in _GGUF_SCALARS:
            handle.seek(count * struct.calcsize(_GGUF_SCALARS[item]), 1)
        else:
            for _ in range(count):
                _gguf_value(handle, item)
        return ("array", count)
    raise ValueError(f"unknown GGUF value type {kind}")


@dataclass(frozen=True)
class GGUFHeader:
    """A GGUF file's scalar metadata (arrays as ``("array", length)``), its tensors (name ->
    number of elements) and the byte where the last tensor's data ends."""

    version: int
    fields: dict[str, Any]
    tensors: dict[str, int]
    data_end: int


def _tensor_bytes(n_elements: int, ggml_type: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    return n_elements // block * size


def gguf_header(path: Path) -> GGUFHeader:
    """Read a GGUF file's header (ValueError or EOFError when it is not a readable one)."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file (no GGUF magic)")
        version = _read(handle, "<I")
        if version not in _GGUF_VERSIONS:
            raise ValueError(f"GGUF version {version} (readable: {_GGUF_VERSIONS})")
        n_tensors, n_fields = _read(handle, "<Q"), _read(handle, "<Q")
        fields = {}
        for _ in range(n_fields):
            key = _read_bytes(handle, _read(handle, "<Q")).decode("utf-8", "replace")
            fields[key] = _gguf_value(handle, _read(handle, "<I"))
        tensors: dict[str, int] = {}
        last = 0
        for _ in range(n_tensors):
            name = _read_bytes(handle, _read(handle, "<Q")).decode("utf-8", "replace")
            count = 1
            for _ in range(_read(handle, "<I")):
                count *= _read(handle, "<Q")
            ggml_type, offset = _read(handle, "<I"), _read(handle, "<Q")
            tensors[name] = count
            last = max(last, offset + _tensor_bytes(count, ggml_type))
        alignment = int(fields.get("general.alignment", _GGUF_DEFAULT_ALIGNMENT))
        data_start = -(-handle.tell() // alignment) * alignment
    return GGUFHeader(version, fields, tensors, data_start + last)


def safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """A safetensors file's tensor table (name -> dtype, shape, data_offsets) and the byte
    where its data ends (ValueError or EOFError when it is not a readable one)."""
    with open(path, "rb") as handle:
        length = _read(handle, "<Q")
        if length > 100 << 20:
            raise ValueError(f"header length {length} bytes is not plausible")
        header = json.loads(_read_bytes(handle, length))
    if not isinstance(header, dict):
        raise TypeError("the header is not a JSON object")
    tensors = {name: info for name, info in header.items() if name != "__metadata__"}
    ends = [int(info["data_offsets"][1]) for info in tensors.values()]
    return tensors, 8 + length + max(ends, default=0)


def safetensors_parameters(path: Path) -> int:
    """Number of elements in a safetensors file, from its header."""
    total = 0
    for info in safetensors_header(path)[0].values():
        count = 1
        for dim in info["shape"]:
            count *= dim
        total += count
    return total


def check_weight_file(path: Path) -> None:
    """Refuse a GGUF or safetensors file whose header is unreadable or that ends before its
    last tensor (a truncated download), naming the file; milliseconds, no weights read."""
    path = Path(path)
    kind = "GGUF" if path.suffix == ".gguf" else "safetensors"
    try:
        if kind == "GGUF":
            end = gguf_header(path).data_end
        else:
            end = safetensors_header(path)[1]
    except (ValueError, EOFError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: not a readable {kind} file ({error}); download it again") from error
    size = path.stat().st_size
    if size < end:
        raise ModelLoadError(f"{path}: the {kind} file is truncated ({size:,} bytes, its tensors end at "
                               f"{end:,}); download it again")


def check_source_weights(location: Path) -> None:
    """Every weight file of a local source (a ``.gguf`` file, or a folder's ``*.safetensors``)."""
    files = [location] if location.is_file() else sorted(location.glob("*.safetensors"))
    for path in files:
        check_weight_file(path)
