"""Publishing a finished run beside its exported model, the step after the stages (DESIGN,
"Stages"): the run manifest, the model card, ``adaptation.json`` and (when asked) the
registry entry, all naming the run's lineage (every stage's ``stage:key``, vector stages
included)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transfer.engine.stages import write_json
from transfer.publish.result import AdaptResult


def publish_run(result: AdaptResult, *, lineage: Mapping[str, str], corpus_hashes: Mapping[str, str],
                plan: Mapping[str, Any] | None = None) -> None:
    """Write manifest (with ``plan``, the run plan's record), card (with ``cfg.card_samples`` generations) and record into
    ``result.model_dir``; register if configured (``result.registration`` is filled in then)."""
    from transfer.publish.manifest import build_manifest, write_manifest
    from transfer.publish.model_card import write_model_card
    from transfer.publish.samples import card_samples

    cfg, model_dir = result.config, Path(result.model_dir)
    if not result.task_scores:  # SR-B and lm-eval stages: their scores.json, for the card and the registry
        from transfer.publish.result import task_scores_of

        result.task_scores = task_scores_of(lineage, cfg.cache_dir)
    write_manifest(build_manifest(cfg, stage_keys=dict(lineage), plan=dict(plan) if plan else None), model_dir)
    # after every evaluation: the samples read the exported folder and change no metric
    samples = card_samples(model_dir, cfg.target_language, cfg.card_samples, device=cfg.device)
    write_model_card(result, model_dir, samples=samples)
    write_json(model_dir / "adaptation.json", result.model_dump(mode="json"))
    if cfg.register_model:
        from transfer.publish.registry_store import register_result

        result.registration = register_result(result, corpus_hashes=corpus_hashes, stage_keys=lineage)
        write_json(model_dir / "adaptation.json", result.model_dump(mode="json"))
