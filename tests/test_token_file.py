"""Training data streams into a memory-mapped token file (issue 13, item 4): the same ids in
the same blocks as the in-RAM packing (``iter_blocks``, the old code's packing), uint32 when
a vocabulary outgrows uint16, the same training and checkpoint identity, packing memory that
does not grow with the corpus, and evaluation samples read no further than they need.

This file is also the worker script of the memory test
(``PYTHONPATH=. python tests/test_token_file.py --lines N --folder DIR [--in-ram]``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tests.tiny import GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
from transfer.corpus.stage import read_lines
from transfer.errors import TrainingError
from transfer.train import PhaseConfig, TrainingConfig, data_file, pack_train_split, train
from transfer.train.data import iter_blocks, open_packed

ROOT = Path(__file__).resolve().parents[1]


def _lines(n: int, offset: int = 0):
    """``n`` distinct German lines, generated (never held as a list)."""
    for i in range(offset, offset + n):
        yield f"{GERMAN_SENTENCES[i % len(GERMAN_SENTENCES)]} ({i})"


def worker(n_lines: int, in_ram: bool, folder: Path) -> None:
    """Pack ``n_lines`` then ``2 * n_lines`` lines; print the peak RSS (KiB) after warm-up,
    after the first packing and after the second."""
    import resource

    tokenizer = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 350)

    def pack(n: int, name: str) -> int:
        if in_ram:  # the old code's packing: every block's ids as Python lists, then a tensor
            return int(torch.tensor(list(iter_blocks(tokenizer, _lines(n), 64, 0)), dtype=torch.long).size(0))
        return pack_train_split(tokenizer, _lines(n), 64, separator_id=0, path=folder / name).n_blocks

    pack(2000, "warm.bin")  # the tokenizer's and numpy's first-call allocations
    peaks = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]
    blocks = []
    for i, n in enumerate((n_lines, 2 * n_lines)):
        blocks.append(pack(n, f"run{i}.bin"))
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(json.dumps({"peaks_kib": peaks, "blocks": blocks}))


pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [f"{s} ({i})" for i in range(6) for s in GERMAN_SENTENCES]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 350)


def old_packing(tokenizer, texts, block_size: int, separator: int) -> torch.Tensor:
    """The in-RAM packing ``pack_train_split`` did before the token file."""
    return torch.tensor(list(iter_blocks(tokenizer, iter(texts), block_size, separator)), dtype=torch.long)


@pytest.mark.parametrize("chunk", [None, 3])  # default batches, and tails carried over many batches
def test_token_file_holds_the_old_packing(tokenizer, tmp_path, monkeypatch, chunk):
    if chunk:
        monkeypatch.setattr(data_file, "TOKENIZE_CHUNK", chunk)
        monkeypatch.setattr(data_file, "TOKENIZE_CHUNK_BYTES", 200)
    path = tmp_path / "tokens.bin"
    packed = pack_train_split(tokenizer, iter(TEXTS), 16, path=path)
    expected = old_packing(tokenizer, TEXTS, 16, 0)
    assert isinstance(packed.blocks, np.memmap) and packed.blocks.dtype == np.uint16
    assert packed.blocks.shape == tuple(expected.shape)
    assert np.array_equal(np.asarray(packed.blocks), expected.numpy())
    assert path.stat().st_size == expected.numel() * 2  # 2 bytes a token, nothing else
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.bin", "tokens.json"]  # no temp file left
    in_ram = pack_train_split(tokenizer, TEXTS, 16)
    assert torch.equal(in_ram.blocks, expected)
    assert (packed.n_documents, packed.n_bytes, packed.n_tokens) == (
        in_ram.n_documents, in_ram.n_bytes, in_ram.n_tokens) == (
        len(TEXTS), sum(len(t.encode()) for t in TEXTS), in_ram.n_tokens)
    # the checkpoint identity of the data does not depend on where the ids are kept
    assert packed.fingerprint() == in_ram.fingerprint()
    assert packed.id_range() == (int(expected.min()), int(expected.max()))
    indices = torch.tensor([3, 0, 3, 1])
    assert torch.equal(packed.rows(indices), expected[indices]) and packed.rows(indices).dtype == torch.long
    reopened = open_packed(path)
    assert np.array_equal(reopened.blocks, packed.blocks) and reopened.n_tokens == packed.n_tokens


def big_vocabulary_tokenizer(size: int = 70_000) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of ``size`` made-up words: ids beyond uint16."""
    vocab = {"[UNK]": 0, "[SEP]": 1, **{f"w{i}": i + 2 for i in range(size - 2)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]")


def test_a_vocabulary_beyond_uint16_packs_as_uint32(tmp_path):
    tok = big_vocabulary_tokenizer()
    texts = [f"w{i} w{65_000 + i} w{69_990 - i} w7" for i in range(40)]
    packed = pack_train_split(tok, texts, 8, separator_id=1, path=tmp_path / "tokens.bin")
    expected = old_packing(tok, texts, 8, 1)
    assert packed.blocks.dtype == np.uint32 and int(expected.max()) > 65_535
    assert np.array_equal(np.asarray(packed.blocks), expected.numpy())
    assert packed.fingerprint() == pack_train_split(tok, texts, 8, separator_id=1).fingerprint()
    assert data_file.token_dtype(65_536) == np.uint16 and data_file.token_dtype(65_537) == np.uint32


def test_too_few_tokens_and_bad_arguments_are_refused_before_a_file_appears(tokenizer, tmp_path):
    with pytest.raises(TrainingError, match="fewer than one block"):
        pack_train_split(tokenizer, TEXTS[:1], 4096, path=tmp_path / "tokens.bin")
    with pytest.raises(TrainingError, match="not one string"):
        pack_train_split(tokenizer, "one text", 16, path=tmp_path / "tokens.bin")
    assert list(tmp_path.iterdir()) == []
    packed = pack_train_split(tokenizer, TEXTS, 16, path=tmp_path / "tokens.bin")
    with open(tmp_path / "tokens.bin", "ab") as handle:
        handle.write(b"\0\0")
    with pytest.raises(TrainingError, match="sidecar says"):
        open_packed(tmp_path / "tokens.bin")
    del packed


def test_training_on_the_token_file_is_training_on_ram_blocks(tokenizer, tmp_path):
    """Same losses and weights; a checkpoint of one resumes the other (same data identity);
    ids outside the model's embedding rows are refused from the file too."""
    config = TrainingConfig(phases=[PhaseConfig("embeddings", 2, 1e-2), PhaseConfig("full", 2, 1e-3)],
                            batch_size=3, seed=5, eval_at_start=False, eval_at_end=False, checkpoint_every=2)
    results, weights = [], []
    for data in (pack_train_split(tokenizer, TEXTS, 16),
                 pack_train_split(tokenizer, TEXTS, 16, path=tmp_path / "tokens.bin")):
        model = tiny_llama(len(tokenizer), seed=0)
        results.append(train(model, data, config, tokenizer=tokenizer, device="cpu",
                             checkpoint_dir=tmp_path / f"ckpt{len(results)}"))
        weights.append(model.state_dict())
    assert results[0].losses == results[1].losses and results[0].bytes_seen == results[1].bytes_seen
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    resumed = train(tiny_llama(len(tokenizer), seed=0), open_packed(tmp_path / "tokens.bin"), config,
                    tokenizer=tokenizer, device="cpu", checkpoint_dir=tmp_path / "ckpt0")
    assert resumed.resumed_from == 4 and resumed.losses == results[0].losses
    with pytest.raises(TrainingError, match="outside"):
        train(tiny_llama(100, seed=0), open_packed(tmp_path / "tokens.bin"), config, device="cpu")


def test_packing_memory_does_not_grow_with_the_corpus(tmp_path):
    """Peak RSS of packing 2N lines is that of packing N lines (the old in-RAM packing grows
    by about 8 MB more for the second corpus here, ``--in-ram``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--lines", "8000",
                          "--folder", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    warm, first, second = report["peaks_kib"]
    assert report["blocks"][1] >= 2 * report["blocks"][0] - 1  # the second corpus really is twice as big
    assert first - warm < 16 * 1024, report  # KiB: packing N lines costs a bounded batch
    assert second - first < 4 * 1024, report  # ... and 2N lines no more


def test_read_lines_reads_no_further_than_its_sample(tmp_path):
    """An evaluation sample of the first lines is read without decoding the rest of the file
    (here the rest is not even UTF-8)."""
    path = tmp_path / "dev.txt"
    path.write_bytes(("".join(f"line {i}\n" for i in range(20_000))).encode() + b"\xff\xfe broken\n")
    assert read_lines(path, 3) == ["line 0", "line 1", "line 2"]
    with pytest.raises(UnicodeDecodeError):
        read_lines(path)


def test_eval_texts_of_a_user_corpus_are_a_bounded_sample(tmp_path, tiny_corpus, monkeypatch):
    """The corpus stage keeps the first MAX_EVAL_TEXTS dev/test texts in hash order (the same
    first texts as sorting the whole split) instead of holding and writing the whole split."""
    from transfer.corpus import stage as corpus_stage
    from transfer.engine.cache import StageCache
    from transfer.engine.stages import execute
    from transfer.settings.config import AdaptConfig

    monkeypatch.setattr(corpus_stage, "MAX_EVAL_TEXTS", 5, raising=False)  # (absent before)
    cfg = AdaptConfig(target_bible=[], source_bible=[], target_files=[str(tiny_corpus)], dev_fraction=0.2,
                      test_fraction=0.2, cache_dir=tmp_path / "cache")
    out, _ = execute(corpus_stage.corpus_spec(cfg), StageCache(cfg.cache_dir))
    for split in ("dev", "test"):
        everything = sorted(read_lines(out.path / f"{split}.txt"), key=corpus_stage._hash_order)
        assert len(everything) > 5
        assert read_lines(out.path / corpus_stage.eval_file(split, "target")) == everything[:5]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, required=True)
    parser.add_argument("--in-ram", action="store_true")
    parser.add_argument("--folder", type=Path, required=True)
    args = parser.parse_args()
    worker(args.lines, args.in_ram, args.folder)
