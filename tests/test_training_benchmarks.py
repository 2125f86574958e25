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
        assert all(row["curve"]["points"][0]["step"] == 0 for row in record["rows"])
    else:
        assert record["cpu"]["ratio_trainer_over_ours"] > 0
