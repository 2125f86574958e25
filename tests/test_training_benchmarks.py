"""The training benchmarks run end to end in their --smoke form and write their records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["cpu_budget", "train_throughput"])
def test_benchmark_smoke(script: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, f"benchmarks/{script}.py", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    record = json.loads((tmp_path / f"{script}_smoke.json").read_text())
    if script == "cpu_budget":
        assert len(record["rows"]) == 3 and (tmp_path / "cpu_budget_smoke.png").exists()
        # --smoke: 2 + 2 steps of 2 x 16 tokens, scored every 2 steps from step 0
        for row in record["rows"]:
            points = row["curve"]["points"]
            assert [(p["step"], p["tokens_seen"]) for p in points] == [(0, 0), (2, 64), (4, 128)]
            assert (row["step0_dev_bpb"], row["final_dev_bpb"]) == (points[0]["dev_bpb"], points[-1]["dev_bpb"])
        # the line to beat is the last run's (the source model's) step-0 score
        assert record["source_step0_dev_bpb"] == record["rows"][-1]["step0_dev_bpb"]
    else:
        cpu = record["cpu"]
        ours, trainer = cpu["results"]["ours"], cpu["results"]["transformers_trainer"]
        # --smoke: one round of 4 steps, the first one (warm-up) untimed, batch 2 x 32 tokens
        assert (len(ours), len(trainer), cpu["batch"], cpu["block"]) == (1, 1, 2, 32)
        # 2 layers of hidden 32 (4 attention + 3 MLP matrices, 2 norms), untied 512 x 32
        # embeddings and head, the final norm
        assert cpu["model"]["parameters"] == 2 * (4 * 32 * 32 + 3 * 32 * 64 + 2 * 32) + 2 * 512 * 32 + 32
        assert ours[0]["steps_timed"] == trainer[0]["steps_timed"] == 3
        assert ours[0]["tokens_per_s"] == pytest.approx(64 / ours[0]["median_step_s"])
        assert cpu["ratio_trainer_over_ours"] == pytest.approx(
            trainer[0]["median_step_s"] / ours[0]["median_step_s"])
