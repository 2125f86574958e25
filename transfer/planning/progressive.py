"""Progressive transfer (CLP-Transfer, Ostendorff & Rehm 2023) as one run.

To move a large source model to a new language, first adapt a *small* model to it (the
ordinary pipeline, with the target tokenizer trained for the *large* source's family),
then use that adapted small model as the large model's helper: its embeddings say which
target tokens are alike, and ``clp``/``omp`` turn that into the large model's new rows.
The walk (``transfer.planning.walk``) plans the small model's stages with the label
qualifier ``progressive``; this module only derives the small run's config.
"""

from __future__ import annotations

from transfer.settings.config import AdaptConfig
from transfer.settings.strategy_choice import AUTO, choose_strategy


def progressive_helper_config(cfg: AdaptConfig) -> AdaptConfig:
    """The small model's run: ``progressive_source`` adapted with the run's own corpus,
    training and evaluation settings and its default (``auto``) strategy, given the large
    run's target tokenizer (so its rows are the large model's target ids)."""
    small = cfg.model_copy(update={
        "source_model": cfg.progressive_source, "source_revision": None, "progressive": False,
        "helper_model": None, "helper_revision": None, "strategy": AUTO, "strategy_params": {},
        "strategy_choice": None, "vocab_mode": "replace", "freeze_source_rows": False,
    })
    strategy, why = choose_strategy(small)
    return small.model_copy(update={"strategy": strategy, "strategy_choice": why})
