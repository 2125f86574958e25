"""Learning-rate schedule: linear warmup, then constant or cosine decay to a floor.

The common recipe for continued pretraining (e.g. Gogoulou et al. 2023; WECHSEL's and
FOCUS's training runs): warm up so that Adam's moment estimates settle before large
updates, then decay with a half cosine to ``min_lr_ratio`` times the peak.
"""

from __future__ import annotations

import math
from typing import Literal

ScheduleName = Literal["constant", "cosine", "linear"]


def lr_at(
    step: int,
    *,
    peak: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: ScheduleName = "cosine",
    min_lr_ratio: float = 0.1,
) -> float:
    """Learning rate of update number ``step`` (1-based) of a stage of ``total_steps``."""
    if warmup_steps > 0 and step <= warmup_steps:
        return peak * step / warmup_steps
    if schedule == "constant":
        return peak
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    floor = peak * min_lr_ratio
    if schedule == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
