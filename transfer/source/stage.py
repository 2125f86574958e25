"""Stage ``source``: the source model as a clean Hugging Face folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from transfer.engine.stages import BuildContext, StageSpec, builder, write_json

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig


def source_spec(cfg: AdaptConfig) -> StageSpec:
    """The run's source model."""
    return model_spec(cfg.source_model, cfg.source_revision)


def helper_spec(cfg: AdaptConfig) -> StageSpec:
    """The helper model (CLP-Transfer, OMP): loaded and cleaned exactly as a source is, so
    a ``.gguf`` or hub id helper works the same way and one already loaded as a source
    shares its folder."""
    if cfg.helper_model is None:
        raise ValueError("helper_spec needs cfg.helper_model")
    return model_spec(cfg.helper_model, cfg.helper_revision)


def model_spec(model: str, revision: str | None) -> StageSpec:
    """A hub id's revision is pinned here, once: the key and the builder name the commit
    (so ``org/name@main`` and ``org/name`` with that commit as the revision share a key)."""
    from transfer.source.loading import identify_source

    identity = identify_source(model, revision)
    params: dict[str, str] = {"source_model": model}
    if identity.commit is not None:
        params = {"source_model": identity.source.location, "revision": identity.commit}
    return StageSpec(stage="source", params=params, inputs={"weights": identity.fingerprint})


@builder("source")
def build_source(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Load the source model (de-quantizing a GGUF) and save a clean Hugging Face copy."""
    from tokenizer_builds.families import detect_family
    from transfer.source.heads import is_tied
    from transfer.source.loading import load_source, save_model

    revision = spec.params.get("revision")  # a hub id's pinned commit, None otherwise
    model, tokenizer = load_source(spec.params["source_model"], revision=revision)
    dropped = save_model(model, tokenizer, out / "model")
    write_json(out / "source.json", {
        "remote_code_dropped": dropped,
        "source_model": spec.params["source_model"],
        "revision": revision,
        "fingerprint": spec.inputs["weights"],
        "architecture": type(model).__name__,
        "vocab_size": len(tokenizer),
        "tied": is_tied(model),
        "tokenizer_family": detect_family(tokenizer).value,
        "parameters": sum(p.numel() for p in model.parameters()),
    })
