"""Stage ``evaluate``: one model's metric on one set of held-out texts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from transfer.corpus.stage import eval_file, read_lines
from transfer.engine.cache import StageOutput
from transfer.engine.stages import BuildContext, StageSpec, builder, upstream_of, write_json
from transfer.errors import CorpusError

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig


def evaluate_spec(cfg: AdaptConfig, model: StageOutput, corpus: StageOutput, texts: str,
                  split: str | None = None, n_texts: int | None = None) -> StageSpec:
    """``texts``: "target" (held-out target-language texts) or "source" (the same verses in
    the source model's language, for the no-transfer baseline); the first ``n_texts`` of
    ``split`` (default: ``cfg.eval_texts`` of ``cfg.eval_split``)."""
    inputs, upstream = upstream_of(model=model, corpus=corpus)
    return StageSpec(
        stage="evaluate",
        params={"texts": texts, "split": split or cfg.eval_split, "n_texts": n_texts or cfg.eval_texts},
        inputs=inputs,
        upstream=upstream,
        runtime={"device": cfg.device, "batch_size": cfg.eval_batch_size},
    )


@builder("evaluate")
def build_evaluate(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Bits per byte of a causal model on held-out texts (docs/DESIGN.md's definition); the
    masked-LM loss (fixed seed and 15% rate) for a masked LM. ``metric``/``value`` name the
    number either way; a ``bpb`` key is present only for causal models."""
    from transfer.evaluate.score import score_model
    from transfer.source.loading import load_source

    p = spec.params
    path = spec.upstream_path("corpus") / eval_file(p["split"], p["texts"])
    if not path.exists():
        raise CorpusError(f"{path}: no {p['texts']}-language evaluation texts for split {p['split']!r}")
    texts = read_lines(path, p["n_texts"])
    model, tokenizer = load_source(str(spec.upstream_path("model") / "model"))
    score = score_model(model, tokenizer, texts, batch_size=spec.runtime.get("batch_size", 16),
                        device=spec.runtime.get("device"))
    write_json(out / "metrics.json", {"texts": p["texts"], "split": p["split"], "metric": score.metric,
                                      "value": score.value, **score.details})
