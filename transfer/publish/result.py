"""What a run produced (``AdaptResult``) and where its files are."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from transfer.config import AdaptConfig
from transfer.publish.registry import Registration


class AdaptResult(BaseModel):
    """What a run produced: metrics, where things are, and which stages were cached."""

    config: AdaptConfig
    code_version: str
    model_dir: str
    stage_keys: dict[str, str]
    stages_cached: dict[str, bool]
    bpb: dict[str, float]  # every evaluation's value of ``metric`` (BPB unless a masked LM)
    metric: Literal["bpb", "mlm_loss"] = "bpb"
    fertility: dict[str, dict[str, float]]
    init_report: dict[str, Any]
    train_log: dict[str, Any] | None
    seconds: float
    registration: Registration | None = None


def trainer_curve_file(result: AdaptResult) -> Path | None:
    """The trainer's dev-BPB learning curve (``curve.json`` in the train stage folder), when
    the run trained and wrote one."""
    if result.train_log is None:
        return None
    path = Path(result.config.cache_dir) / "train" / result.stage_keys["final"] / "curve.json"
    return path if path.is_file() else None
