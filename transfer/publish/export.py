"""Export the final model folder beside the others, atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from transfer.cache import StageOutput


def export_model(model_stage: StageOutput, destination: Path) -> Path:
    """Copy the final model folder to ``destination`` atomically (replacing an old copy)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-", dir=destination.parent))
    try:
        shutil.copytree(model_stage.path / "model", tmp, dirs_exist_ok=True)
        if destination.exists():
            shutil.rmtree(destination)
        tmp.rename(destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return destination
