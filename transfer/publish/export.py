"""Export the final model folder beside the others, atomically."""

from __future__ import annotations

import shutil
from pathlib import Path

from transfer.engine.cache import StageOutput, replacing_directory


def export_model(model_stage: StageOutput, destination: Path) -> Path:
    """Copy the final model folder to ``destination`` atomically (replacing an old copy)."""
    with replacing_directory(destination) as tmp:
        shutil.copytree(model_stage.path / "model", tmp, dirs_exist_ok=True)
    return destination
