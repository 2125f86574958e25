"""``custom_dataset`` of the harness task ``bible_continuation`` (the YAML beside it): the
documents are built by ``transfer.evaluate.lm_eval_bible``, where the task is described."""

from transfer.evaluate.lm_eval_bible import load_dataset

__all__ = ["load_dataset"]
