"""Stage ``evaluate``: one model's metric on one set of held-out texts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from transfer.cache import StageOutput
from transfer.corpus.stage import eval_file, read_lines
from transfer.errors import CorpusError
from transfer.stages import BuildContext, StageSpec, builder, upstream_of, write_json

if TYPE_CHECKING:
    from transfer.config import AdaptConfig


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
    """Bits per byte of a causal model on held-out texts (DESIGN.md's definition); the
    masked-LM loss (fixed seed and 15% rate) for a masked LM. ``metric``/``value`` name the
    number either way; a ``bpb`` key is present only for causal models."""
    from transfer.evaluate.bpb import bits_per_byte
    from transfer.evaluate.masked_lm import masked_lm_loss
    from transfer.source.loading import load_source
    from transfer.source.objective import METRIC_OF, model_objective

    p = spec.params
    path = spec.upstream_path("corpus") / eval_file(p["split"], p["texts"])
    if not path.exists():
        raise CorpusError(f"{path}: no {p['texts']}-language evaluation texts for split {p['split']!r}")
    texts = read_lines(path, p["n_texts"])
    model, tokenizer = load_source(str(spec.upstream_path("model") / "model"))
    batch_size, device = spec.runtime.get("batch_size", 16), spec.runtime.get("device")
    objective = model_objective(model)
    if objective == "masked":
        result = masked_lm_loss(model, tokenizer, texts, batch_size=batch_size, device=device)
        value = result.loss
    else:
        result = bits_per_byte(model, tokenizer, texts, batch_size=batch_size, device=device)
        value = result.bpb
    metric = {"metric": METRIC_OF[objective], "value": value}
    write_json(out / "metrics.json", {"texts": p["texts"], "split": p["split"], **metric,
                                      **result.to_dict()})
