"""Several processes: ``torchrun --nproc_per_node=2`` on CPU (gloo) gives the same losses and
weights as one process with the same effective batch (tiny Llama, both stages).

This file is also the worker script (``python tests/test_training_distributed.py``, alone or
under torchrun).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 4


def worker(out: Path) -> None:
    import torch
    from safetensors.torch import save_model

    sys.path.insert(0, str(ROOT))
    from tests.tiny import GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
    from transfer.train import PhaseConfig, TrainingConfig, pack_train_split, train

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    tokenizer = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 350)
    # float64: see the assert on the weights below
    model = tiny_llama(len(tokenizer), seed=0).double()
    data = pack_train_split(tokenizer, [f"{s} ({i})" for i in range(6) for s in GERMAN_SENTENCES], 16)
    config = TrainingConfig(
        phases=[PhaseConfig("embeddings", 2, 1e-2), PhaseConfig("full", 3, 1e-3, warmup_steps=1)],
        batch_size=GLOBAL_BATCH // world, seed=1, eval_at_start=False, eval_at_end=False,
    )
    result = train(model, data, config, tokenizer=tokenizer, device="cpu")
    if int(os.environ.get("RANK", "0")) == 0:
        save_model(model, str(out.with_suffix(".safetensors")))
        out.write_text(json.dumps({"losses": result.losses, "world_size": result.world_size,
                                   "tokens_seen": result.tokens_seen}))


@pytest.mark.usefixtures("one_torch_thread")  # the worker below sets one thread; restored after
def test_torchrun_two_processes_match_one(tmp_path):
    import torch
    from safetensors.torch import load_file

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    script = str(Path(__file__).resolve())
    two = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
         "--out", str(tmp_path / "two.json")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the one-process run, in this process while torchrun starts (one process start less)
    assert "WORLD_SIZE" not in os.environ
    worker(tmp_path / "one.json")
    output = two.communicate(timeout=300)[0]
    assert two.returncode == 0, output[-4000:]

    single, double = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert single["world_size"] == 1 and double["world_size"] == 2
    assert single["tokens_seen"] == double["tokens_seen"] == 5 * GLOBAL_BATCH * 16
    # the trainer sums a step's loss in a float32 tensor: a few float32 ulps (~1e-7 relative)
    assert double["losses"] == pytest.approx(single["losses"], rel=1e-5)
    weights_one = load_file(str(tmp_path / "one.safetensors"))
    weights_two = load_file(str(tmp_path / "two.safetensors"))
    assert weights_one.keys() == weights_two.keys()
    # The all-reduce sums the gradient in another order than one process does, and AdamW's
    # m/(sqrt(v)+eps) scales that rounding difference by up to lr/eps = 1e6 where a gradient
    # is near zero: in float32 no fixed atol is safe (1.3e-5 seen in the accumulation test,
    # tests/test_training_core.py). The difference scales with the unit roundoff, ~1e-14 in
    # float64, so atol 1e-9 has a wide margin.
    for name, tensor in weights_one.items():
        assert tensor.dtype == torch.float64, name
        assert torch.allclose(tensor, weights_two[name], rtol=0, atol=1e-9), name


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    worker(parser.parse_args().out)
