"""What a Hydra run refuses before its first stage, naming the setting or the language.

Each target language is also planned as a run of it alone (``transfer.hydra.run``), so every
check of ``validate_config`` applies to each language's corpus, tokenizer and strategy; part A's
checks of several languages (each with its own corpus, none listed twice: the config refuses
that) apply to the run's list. This module adds what only a Hydra run cannot do.
"""

from __future__ import annotations

from transfer.settings.config import AdaptConfig


def hydra_problem(cfg: AdaptConfig) -> str | None:
    """Why ``cfg`` cannot be a Hydra run (None: it can)."""
    from transfer.corpus.languages import several_languages_problem

    source = cfg.parallel_source_language
    if source in cfg.target_languages:
        return (f"hydra: target language {source!r} is the source language (parallel_source_language): its table "
                f"and head are the source model's own; give only new languages as target_language")
    refused = {
        "progressive": cfg.progressive,
        "objective": cfg.objective != "next_token",
        "freeze_source_rows": cfg.freeze_source_rows,
        "sharding": cfg.sharding == "fsdp",
        "activation_checkpointing": cfg.activation_checkpointing,
        "strategy": cfg.strategy == "ofa",  # a factorized table is not one nn.Embedding per language
    }
    for name, bad in refused.items():
        if bad:
            return (f"hydra: {name}={getattr(cfg, name)!r} is not supported with hydra (next-token objective, "
                    f"plain embedding tables, no sharding); leave {name} at its default")
    if not cfg.total_train_steps:
        return "hydra: train_steps and full_steps are both 0; a Hydra run trains its tables and heads (train_steps >= 1)"
    return several_languages_problem(cfg) if cfg.several_languages else None


def hydra_notes(cfg: AdaptConfig) -> list[str]:
    """Warnings about valid but suspicious input of a Hydra run (a language under 1% of the text)."""
    from transfer.corpus.languages import small_language_warnings

    return small_language_warnings(cfg)
