"""GGUF and safetensors headers are checked with the other files, before the first stage: a
truncated download or a damaged header is refused naming the file (issue #31)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import config
from tests.refusals import make_artifacts, refused
from transfer.errors import ModelLoadError
from transfer.source.weight_files import check_weight_file, gguf_header


def _tiny_gguf(path: Path) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.ones((8, 4), dtype=np.float32))
    writer.add_tensor("output.weight", np.ones((8, 4), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def test_a_whole_gguf_passes_and_its_header_is_read(tmp_path: Path) -> None:
    path = _tiny_gguf(tmp_path / "tiny.gguf")
    header = gguf_header(path)
    assert header.tensors == {"token_embd.weight": 32, "output.weight": 32}
    assert header.data_end == path.stat().st_size  # the data ends exactly where the file does
    check_weight_file(path)


@pytest.mark.parametrize("damage", ["data", "header", "magic", "version"])
def test_a_damaged_gguf_is_refused_naming_the_file(tmp_path: Path, damage: str) -> None:
    path = _tiny_gguf(tmp_path / "tiny.gguf")
    size = path.stat().st_size
    if damage == "data":
        _truncate(path, size - 10)
    elif damage == "header":
        _truncate(path, 40)
    else:
        data = bytearray(path.read_bytes())
        if damage == "magic":
            data[:4] = b"GGUX"
        else:
            data[4:8] = struct.pack("<I", 99)
        path.write_bytes(bytes(data))
    expected = {"data": "truncated", "header": "ends inside its header", "magic": "no GGUF magic",
                "version": "GGUF version 99"}[damage]
    with pytest.raises(ModelLoadError, match=expected) as error:
        check_weight_file(path)
    assert str(path) in str(error.value)


def _artifacts_config(tmp_path: Path, source: Path, corpus: Path):
    artifacts = make_artifacts(tmp_path)
    return artifacts, config(tmp_path, source, corpus, cache_dir=artifacts / "cache", output_dir=artifacts / "models")


def test_truncated_safetensors_source_is_refused_before_any_stage(tmp_path: Path, tiny_source: Path,
                                                                  tiny_corpus: Path) -> None:
    from transfer.planning.plan import plan_adaptation

    source = tmp_path / "src"
    shutil.copytree(tiny_source, source)
    weights = source / "model.safetensors"
    _truncate(weights, weights.stat().st_size // 2)
    artifacts, cfg = _artifacts_config(tmp_path, source, tiny_corpus)
    refused("source folder with a truncated model.safetensors", "validate_config (plan) -> check_source_weights",
            lambda: plan_adaptation(cfg), "safetensors file is truncated", artifacts, ModelLoadError)
    weights.write_bytes(b"\xff" * 16)  # a length no header has
    refused("source folder whose model.safetensors header is garbage", "validate_config (plan) -> check_source_weights",
            lambda: plan_adaptation(cfg), "not a readable safetensors file", artifacts, ModelLoadError)


def test_truncated_gguf_source_is_refused_before_any_stage(tmp_path: Path, tiny_corpus: Path) -> None:
    from transfer.planning.plan import plan_adaptation

    path = _tiny_gguf(tmp_path / "model.gguf")
    _truncate(path, path.stat().st_size - 1)
    artifacts, cfg = _artifacts_config(tmp_path, path, tiny_corpus)
    refused("a .gguf source one byte short", "validate_config (plan) -> check_source_weights",
            lambda: plan_adaptation(cfg), "truncated", artifacts, ModelLoadError)
