"""Stage ``init``: initialize the target embeddings with a strategy and swap them in."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer.engine.cache import StageOutput
from transfer.engine.stages import BuildContext, StageSpec, builder, upstream_of, write_json

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig


def init_spec(cfg: AdaptConfig, source: StageOutput, tokenizer: StageOutput,
              corpus: StageOutput | None = None, vectors: StageOutput | None = None,
              links: StageOutput | None = None, helper: StageOutput | None = None) -> StageSpec:
    """Only the data the strategy needs (``transfer.init.resources``) enters the key. The
    alignment-based strategies read the ``links`` stage's counts (its key carries the pairs
    and the alignment settings), so every caller aligns the same way the pipeline does."""
    from transfer.errors import StrategyResourceError
    from transfer.init.resources import needs

    kinds = needs(cfg.strategy)
    if "parallel" in kinds and links is None:
        raise StrategyResourceError(
            f"strategy {cfg.strategy!r} reads token alignments: pass links= (the links stage, "
            "transfer.init.links.links_spec), as transfer.planning.walk.walk_stages does")
    if "helper" in kinds and helper is None:
        raise StrategyResourceError(
            f"strategy {cfg.strategy!r} reads a helper model's embeddings: set helper_model (a model whose "
            "tokenizer is the target tokenizer) or progressive")
    # the target train text (FOCUS) is the corpus stage's file: its key carries the split
    extra = {"corpus": corpus} if corpus is not None and "target_corpus" in kinds else {}
    if "vectors" in kinds and vectors is not None:
        extra["vectors"] = vectors
    if "parallel" in kinds:
        extra["links"] = links
    if "helper" in kinds:
        extra["helper"] = helper
    inputs, upstream = upstream_of(source=source, tokenizer=tokenizer, **extra)
    params: dict[str, Any] = {"strategy": cfg.strategy, "strategy_params": cfg.strategy_params,
                              "seed": cfg.seed}
    if "vectors" in kinds:
        params["token_vector_method"] = cfg.token_vector_method
    if cfg.several_languages:  # for the report's note only; runs of one language keep their keys
        params["target_languages"] = cfg.target_languages
    return StageSpec(stage="init", params=params, inputs=inputs, upstream=upstream)


@builder("init")
def build_init(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Initialize the target embeddings with the chosen strategy and swap them in. OFA's
    result keeps its factorized form (coordinates x source primitives): the folder holds
    the materialized matrix plus the factors, so training continues on the factors."""
    from transformers import AutoTokenizer

    from transfer.init import initialize
    from transfer.init.base import StrategyInputs
    from transfer.init.extension import keep_source_rows
    from transfer.init.factorized import factorize_model, factorized_summary, save_factorized
    from transfer.init.resources import build_resources
    from transfer.init.strategies.ofa import FactorizedTargetEmbeddings
    from transfer.init.surgery import get_source_embeddings, swap_vocabulary
    from transfer.source.loading import load_source, save_model
    from transfer.tokenizer.extension_record import read_first_new_id

    model, source_tokenizer = load_source(str(spec.upstream_path("source") / "model"))
    target_tokenizer = AutoTokenizer.from_pretrained(spec.upstream_path("tokenizer") / "tokenizer")
    upstream = {name: spec.upstream_path(name) for name in spec.upstream}
    inputs = StrategyInputs(
        source=get_source_embeddings(model),
        source_tokenizer=source_tokenizer,
        target_tokenizer=target_tokenizer,
        seed=spec.params["seed"],
        resources=build_resources(spec.params["strategy"], spec.params, upstream),
    )
    target = initialize(spec.params["strategy"], inputs, **spec.params["strategy_params"])
    # Vocabulary extension: the source's rows stay exactly (OFA's factorized form cannot
    # hold them, so an extended model is saved unfactorized).
    first_new_id = read_first_new_id(spec.upstream_path("tokenizer"))
    if first_new_id is not None:
        target = keep_source_rows(target, inputs.source, first_new_id)
    model = swap_vocabulary(model, target_tokenizer, target, source_tokenizer=source_tokenizer)
    report = target.report.to_dict()
    if "links" in upstream:
        from transfer.init.links import links_note

        report["notes"] = [links_note(upstream["links"]), *report.get("notes", [])]
    from transfer.corpus.many_languages import several_languages_note

    note = several_languages_note(spec.params.get("target_languages"), links="links" in upstream,
                                  vectors="vectors" in upstream)
    if note:  # a run of several target languages: how a token of several languages was set
        report["notes"] = [*report.get("notes", []), note]
    factorized = isinstance(target, FactorizedTargetEmbeddings) and target.primitives is not None
    if factorized and first_new_id is None:
        factorize_model(model, primitives=target.primitives)
        save_factorized(model, target_tokenizer, out / "model")
        report["factorized"] = factorized_summary(model)
    else:
        save_model(model, target_tokenizer, out / "model")
    write_json(out / "init_report.json", report)
