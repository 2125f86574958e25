"""Stage ``links``: token-level alignment counts c(t, s) of the train sentence pairs.

Trans-tokenization (Remy et al., 2024) and ``combined`` both start from the same evidence:
the parallel corpus tokenized by the source and the target tokenizer, aligned with eflomal,
and the links counted per (target token, source token). Aligning is the slow part (minutes
on the Bible's verse pairs) and eflomal cannot be seeded, so computed inside each
strategy it was paid twice in a comparison, and the two strategies saw different links.
As its own cached stage it runs once per (corpus, source, target tokenizer, pair cap,
iterations) and every alignment-based init of the run, the comparison or a later run reads
the same counts (``StrategyResources.link_counts``).

Files: ``link_counts.npz`` (scipy sparse CSR, target tokens x source rows; loaded without
pickle) and ``links.json`` (pairs aligned and dropped, links, seconds).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer.engine.cache import StageOutput
from transfer.engine.stages import (
    BuildContext,
    StageSpec,
    builder,
    read_json,
    upstream_of,
    write_json,
)
from transfer.errors import CorpusError

if TYPE_CHECKING:
    import scipy.sparse as sp

    from transfer.settings.config import AdaptConfig

COUNTS_FILE, RECORD_FILE = "link_counts.npz", "links.json"


def parallel_pairs(corpus_dir: Path, max_pairs: int | None = None) -> list[tuple[str, str]]:
    """(source, target) train sentence pairs of the corpus stage in ``corpus_dir``, for
    every source translation or parallel file (the first ``max_pairs`` of each, in corpus
    order, when given)."""
    from transfer.corpus.stage import train_pairs

    pairs = train_pairs(corpus_dir, max_pairs)
    if not pairs:
        raise CorpusError(f"corpus stage {corpus_dir.name}: no train sentence pairs (give parallel_files, "
                          f"or target_bible and source_train_bible codes)")
    return pairs


def links_spec(cfg: AdaptConfig, source: StageOutput, tokenizer: StageOutput, corpus: StageOutput) -> StageSpec:
    """The alignment's own settings only (not the strategy's weighting of the links), so
    trans-tokenization, ``combined`` and their variants share one stage."""
    inputs, upstream = upstream_of(source=source, tokenizer=tokenizer, corpus=corpus)
    params: dict[str, Any] = {
        "parallel_max_pairs": cfg.parallel_max_pairs,
        "align_rel_iterations": float(cfg.strategy_params.get("align_rel_iterations", 1.0)),
        "seed": cfg.seed,  # recorded by eflomal's wrapper; eflomal itself cannot be seeded
    }
    return StageSpec(stage="links", params=params, inputs=inputs, upstream=upstream)


@builder("links")
def build_links(spec: StageSpec, out: Path, context: BuildContext) -> None:
    import scipy.sparse as sp
    from transformers import AutoTokenizer

    from transfer.init.strategies.trans_tokenization import align_token_links
    from transfer.source.loading import load_source_shape

    p = spec.params
    # only the source's row count is needed here, not its weights: the meta device reads none
    model, source_tokenizer = load_source_shape(spec.upstream_path("source") / "model")
    target_tokenizer = AutoTokenizer.from_pretrained(spec.upstream_path("tokenizer") / "tokenizer")
    pairs = parallel_pairs(spec.upstream_path("corpus"), p["parallel_max_pairs"])
    counts, stats = align_token_links(source_tokenizer, target_tokenizer, model.get_input_embeddings().weight.shape[0],
                                      pairs, seed=p["seed"], rel_iterations=p["align_rel_iterations"])
    sp.save_npz(out / COUNTS_FILE, counts.tocsr(), compressed=True)
    write_json(out / RECORD_FILE, {"params": p, "pairs": stats.pairs, "dropped_pairs": stats.dropped_pairs,
                                   "links": stats.links, "seconds": round(stats.seconds, 2),
                                   "shape": list(counts.shape)})


def read_link_counts(folder: Path) -> sp.csr_matrix:
    """The counts of a finished ``links`` stage (``np.load`` without pickle underneath)."""
    import scipy.sparse as sp

    return sp.load_npz(folder / COUNTS_FILE).tocsr()


def links_note(folder: Path) -> str:
    """The init report's line about the alignment the counts came from (the same words as a
    strategy that aligns for itself)."""
    from transfer.init.strategies.trans_tokenization import AlignmentStats, alignment_note

    record = read_json(folder / RECORD_FILE)
    stats = AlignmentStats(record["pairs"], record["dropped_pairs"], record["links"], record["seconds"])
    return alignment_note(stats)[:-1] + "; stage links, shared by every alignment-based strategy)"
