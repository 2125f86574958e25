"""How the pipeline provides the data each strategy needs beyond the embeddings.

Strategies declare the data kinds they need where they register
(``@register(name, needs=...)``, read back by ``needs``) and receive the data in
``StrategyInputs.resources``; this module is the one place that builds it from finished
stage folders, so the pipeline's init stage stays generic:

- ``trans_tokenization``: the parallel corpus (train verses only), source translations
  paired with the first target translation;
- ``focus``: the target train text;
- ``wechsel`` / ``ofa``: both languages' static vectors aligned in one space (the
  ``fasttext`` and ``align`` stages of ``transfer.vectors.stage``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.errors import CorpusError
from transfer.init.base import StrategyResources
from transfer.init.registry import needs

__all__ = ["VectorSpace", "build_resources", "needs", "parallel_pairs"]


@dataclass(frozen=True)
class VectorSpace:
    """Both languages' static vectors in one space (what WECHSEL/OFA read)."""

    source: Any
    target: Any


def parallel_pairs(source_codes: list[str], target_code: str, max_pairs: int | None = None) -> list[tuple[str, str]]:
    """(source verse, target verse) pairs of the train split, for every source translation
    (the first ``max_pairs`` of each, in canonical verse order, when given)."""
    from transfer.corpus.bible import verse_pairs

    pairs = [(s, t) for code in source_codes
             for _, s, t in verse_pairs(code, target_code, "train")[:max_pairs]]
    if not pairs:
        raise CorpusError(f"no train verse pairs between {source_codes} and {target_code!r}")
    return pairs


def build_resources(strategy: str, params: dict[str, Any], upstream: dict[str, Path]) -> StrategyResources:
    """Resources for ``strategy`` from the init stage's parameters and upstream folders."""
    kinds = needs(strategy)
    resources: dict[str, Any] = {}
    if "parallel" in kinds:
        resources["parallel"] = parallel_pairs(params["parallel_source_bible"], params["parallel_target_bible"],
                                               params.get("parallel_max_pairs"))
    if "target_corpus" in kinds:
        resources["target_corpus"] = upstream["corpus"] / "train.txt"
    if "vectors" in kinds:
        from transfer.cache import StageOutput
        from transfer.vectors.stage import load_aligned

        path = upstream["vectors"]
        source, target, _ = load_aligned(StageOutput("align", path.name, path))
        resources["aligned_vectors"] = VectorSpace(source=source, target=target)
        resources["token_vector_method"] = params["token_vector_method"]
    return StrategyResources(**resources)
