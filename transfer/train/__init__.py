"""Continued pretraining: packed data, objectives, the staged trainer, checkpoints, memory
estimate, learning curves and several-process support (see ``trainer`` for the loop)."""

from transfer.train.callbacks import RichProgress, TrainingCallback
from transfer.train.config import PhaseConfig, TrainingConfig, per_device_defaults
from transfer.train.curves import CurvePoint, LearningCurve, plot_curves, save_curve_files
from transfer.train.data import BlockOrder, PackedData, pack_blocks, pack_train_split
from transfer.train.evaluation import dev_evaluator
from transfer.train.freezing import (
    embedding_parameters,
    freeze_all_but_embeddings,
    set_trainable,
)
from transfer.train.memory import MemoryEstimate, estimate_training_memory
from transfer.train.trainer import TrainResult, train

__all__ = [
    "BlockOrder",
    "CurvePoint",
    "LearningCurve",
    "MemoryEstimate",
    "PackedData",
    "PhaseConfig",
    "RichProgress",
    "TrainResult",
    "TrainingCallback",
    "TrainingConfig",
    "dev_evaluator",
    "embedding_parameters",
    "estimate_training_memory",
    "freeze_all_but_embeddings",
    "pack_blocks",
    "pack_train_split",
    "per_device_defaults",
    "plot_curves",
    "save_curve_files",
    "set_trainable",
    "train",
]
