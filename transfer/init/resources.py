"""How the pipeline provides the data each strategy needs beyond the embeddings.

Strategies declare the data kinds they need where they register
(``@register(name, needs=...)``, read back by ``needs``) and receive the data in
``StrategyInputs.resources``; this module is the one place that builds it from finished
stage folders, so the pipeline's init stage stays generic:

- ``trans_tokenization`` / ``combined`` (``parallel``): the token link counts c(t, s) of the
  ``links`` stage (``transfer.init.links``: the corpus stage's train sentence pairs, tokenized
  by both tokenizers and aligned with eflomal once), a sparse target-token x source-row
  matrix in ``StrategyResources.link_counts``;
- ``focus``: the target train text;
- ``wechsel`` / ``ofa``: both languages' static vectors aligned in one space (the
  ``fasttext`` and ``align`` stages of ``transfer.vectors.stage``);
- ``clp`` / ``omp`` (``helper``): the helper model's embedding matrices (its ``source``
  stage folder, or the progressive run's adapted small model), row t for target id t.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.init.base import StrategyResources
from transfer.init.registry import needs

__all__ = ["VectorSpace", "build_resources", "needs"]


@dataclass(frozen=True)
class VectorSpace:
    """Both languages' static vectors in one space (what WECHSEL/OFA read)."""

    source: Any
    target: Any


def build_resources(strategy: str, params: dict[str, Any], upstream: dict[str, Path]) -> StrategyResources:
    """Resources for ``strategy`` from the init stage's parameters and upstream folders."""
    kinds = needs(strategy)
    resources: dict[str, Any] = {}
    if "parallel" in kinds:
        from transfer.init.links import read_link_counts

        resources["link_counts"] = read_link_counts(upstream["links"])  # aligned once, by the links stage
    if "target_corpus" in kinds:
        resources["target_corpus"] = upstream["corpus"] / "train.txt"
    if "vectors" in kinds:
        from transfer.engine.cache import StageOutput
        from transfer.vectors.stage import load_aligned

        path = upstream["vectors"]
        source, target, _ = load_aligned(StageOutput("align", path.name, path))
        resources["aligned_vectors"] = VectorSpace(source=source, target=target)
        resources["token_vector_method"] = params["token_vector_method"]
    if "helper" in kinds:
        resources["helper_embeddings"] = helper_embeddings(upstream["helper"])
    return StrategyResources(**resources)


def helper_embeddings(helper_stage: Path):
    """The helper model's input embeddings, untied head and bias (float32), from a model
    stage's folder; the rest of the model is dropped at once."""
    from transfer.init.surgery import get_source_embeddings
    from transfer.source.loading import load_source

    model, _ = load_source(str(helper_stage / "model"))
    embeddings = get_source_embeddings(model)
    del model
    return embeddings
