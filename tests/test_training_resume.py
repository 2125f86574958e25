"""Exact resume: a training process killed with SIGKILL mid-run, resumed from its last
checkpoint, ends with the same loss curve and the same weights (sha256) as a run that was
never interrupted (tiny Llama with dropout, CPU, one thread).

This file is also the worker script the test starts (``python tests/test_training_resume.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _weights_sha256(model) -> str:
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def worker(out: Path, checkpoints: Path, slow: bool) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.tiny import GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
    from transfer.train import (
        PhaseConfig,
        TrainingCallback,
        TrainingConfig,
        dev_evaluator,
        pack_train_split,
        train,
    )

    torch.set_num_threads(1)
    tokenizer = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, 350)
    model = tiny_llama(len(tokenizer), seed=0, attention_dropout=0.2)  # dropout: the RNG state matters
    data = pack_train_split(tokenizer, [f"{s} ({i})" for i in range(6) for s in GERMAN_SENTENCES], 16)

    class Announce(TrainingCallback):
        def on_step(self, step, metrics) -> None:
            print(f"STEP {step}", flush=True)
            if slow and step == 5:
                time.sleep(60)  # the parent kills us here, mid-run, between checkpoints

    config = TrainingConfig(
        phases=[PhaseConfig("embeddings", 3, 1e-2, warmup_steps=1), PhaseConfig("full", 7, 1e-3, warmup_steps=2)],
        batch_size=2, grad_accumulation=2, seed=3, eval_every=3, checkpoint_every=2,
    )
    result = train(model, data, config, tokenizer=tokenizer, device="cpu", checkpoint_dir=checkpoints,
                   evaluate=dev_evaluator(tokenizer, GERMAN_SENTENCES[:3], device="cpu"),
                   callbacks=[Announce()])
    out.write_text(json.dumps({
        "losses": result.losses, "sha256": _weights_sha256(model), "resumed_from": result.resumed_from,
        "curve": [(p.step, p.dev_bpb, p.train_loss, p.bytes_seen) for p in result.curve.points],
    }))


def _command(out: Path, checkpoints: Path, slow: bool = False) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--checkpoints", str(checkpoints)] + (
        ["--slow"] if slow else [])


@pytest.mark.usefixtures("one_torch_thread")  # the worker below sets one thread; restored after
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    killed_out, clean_out = tmp_path / "killed.json", tmp_path / "clean.json"
    victim = subprocess.Popen(_command(killed_out, tmp_path / "ck-killed", slow=True), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    # the uninterrupted run, in this process while the victim starts (one process start less)
    worker(clean_out, tmp_path / "ck-clean", slow=False)
    seen = []
    for line in victim.stdout:
        seen.append(line.strip())
        if line.strip() == "STEP 5":  # mid stage two: the last checkpoint (step 4) holds its optimizer state
            victim.send_signal(signal.SIGKILL)
            break
    assert victim.wait(timeout=120) == -signal.SIGKILL, (seen, victim.stderr.read())
    assert not killed_out.exists()
    latest = json.loads((tmp_path / "ck-killed" / "latest.json").read_text())
    assert latest["step"] == 4
    assert all((path / "state.json").exists() for path in (tmp_path / "ck-killed").glob("step-*"))

    resumed = subprocess.run(_command(killed_out, tmp_path / "ck-killed"), capture_output=True, text=True,
                             check=False, env=env, cwd=ROOT, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.split()[:2] == ["STEP", "5"]  # it continued, it did not start over

    after_crash, uninterrupted = json.loads(killed_out.read_text()), json.loads(clean_out.read_text())
    assert after_crash["resumed_from"] == 4 and uninterrupted["resumed_from"] is None
    assert len(uninterrupted["losses"]) == 10
    assert after_crash["losses"] == uninterrupted["losses"]
    assert after_crash["curve"] == uninterrupted["curve"]
    assert after_crash["sha256"] == uninterrupted["sha256"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--slow", action="store_true")
    args = parser.parse_args()
    worker(args.out, args.checkpoints, args.slow)
