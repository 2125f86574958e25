"""The order of a run's stages: the one place that knows it.

``walk_stages`` hands every stage's spec to a callback, in order, and gives back the
stage graph. The plan (``transfer.planning.plan``) calls it once per run with a callback
that only computes keys and folders (nothing is built); the run then executes the
planned specs without walking again.
"""

from __future__ import annotations

from collections.abc import Callable

from transfer.corpus.eval_sets import eval_set_label, parse_eval_files
from transfer.corpus.stage import corpus_spec
from transfer.engine.cache import StageOutput
from transfer.engine.graph import StageGraph
from transfer.engine.stage_table import stage_label
from transfer.engine.stages import StageSpec
from transfer.evaluate.lm_eval_stage import lm_eval_spec
from transfer.evaluate.srb_stage import srb_spec
from transfer.evaluate.stage import evaluate_spec
from transfer.init.links import links_spec
from transfer.init.registry import needs
from transfer.init.stage import init_spec
from transfer.planning.progressive import progressive_helper_config
from transfer.publish.labels import LANGUAGE_MODELS, language_label
from transfer.settings.config import AdaptConfig
from transfer.source.stage import helper_spec, source_spec
from transfer.tokenizer.stage import tokenizer_spec
from transfer.train.stage import train_spec
from transfer.vectors.stage import align_stage_spec, vector_specs

#: (spec, label) -> the stage's folder (built, or where it would be built)
StageVisitor = Callable[[StageSpec, str], StageOutput]


def walk_stages(cfg: AdaptConfig, visit: StageVisitor) -> StageGraph:
    """Every stage of ``cfg``'s run, in order, each handed to ``visit`` with its label."""
    stages: dict[str, StageOutput] = {}

    def stage(spec: StageSpec, qualifier: str | None = None) -> StageOutput:
        label = stage_label(spec.stage, qualifier)
        stages[label] = visit(spec, label)
        return stages[label]

    corpus = stage(corpus_spec(cfg))
    source = stage(source_spec(cfg))
    helper = stage(helper_spec(cfg), "helper") if cfg.helper_model else None
    tokenizer = stage(tokenizer_spec(cfg, corpus, source, helper=helper))
    helper_models: dict[str, StageOutput] = {}
    if cfg.progressive:
        # CLP-Transfer's progressive setting: the small model adapted first, with the large
        # source's target tokenizer, becomes the large model's helper
        small_cfg = progressive_helper_config(cfg)
        small_source = stage(source_spec(small_cfg), PROGRESSIVE)
        small_init, helper = _adapted(small_cfg, corpus, small_source, tokenizer, None, stage, PROGRESSIVE)
        helper_models = {"progressive_step0": small_init}
        if helper is not small_init:
            helper_models["progressive_trained"] = helper
    init, final = _adapted(cfg, corpus, source, tokenizer, helper, stage, None)
    models = {"source_model_on_target": (source, "target"), "adapted_step0": (init, "target")}
    if cfg.source_bible and cfg.target_bible:
        models["source_model_on_source_language"] = (source, "source")
    if final is not init:
        models["adapted_trained"] = (final, "target")
    if cfg.helper_model and helper is not None:
        models["helper_model_on_target"] = (helper, "target")
    for label, model in helper_models.items():
        models[label] = (model, "target")
    if cfg.vocab_mode == "extend" and cfg.source_bible and cfg.target_bible:
        # extension keeps the source's tokens: measure what the model still knows of its language
        models["adapted_step0_on_source_language"] = (init, "source")
        if final is not init:
            models["adapted_trained_on_source_language"] = (final, "source")
    if cfg.several_languages:
        # each language's held-out texts; the labels without a language become the
        # byte-weighted means of these (the pipeline's, transfer/publish/labels.py)
        for name in LANGUAGE_MODELS:
            model_texts = models.pop(name, None)
            for lang in cfg.target_languages if model_texts else ():
                stage(evaluate_spec(cfg, model_texts[0], corpus, f"target:{lang}"), language_label(name, lang))
    for label, (model, texts) in models.items():
        stage(evaluate_spec(cfg, model, corpus, texts), label)
    for eval_set in parse_eval_files(cfg.eval_files):
        # the user's own evaluation files: the source model, then the adapted model before
        # and after training, each on the set
        for name, model in (("source_model", source), ("adapted_step0", init), ("adapted_trained", final)):
            if name == "adapted_trained" and final is init:
                continue
            stage(evaluate_spec(cfg, model, corpus, f"eval:{eval_set.name}"), eval_set_label(name, eval_set.name))
    for name, model in (("source_model", source), ("adapted_step0", init), ("adapted_trained", final)):
        # opt-in task scores of the same models: SR-B retrieval, lm-evaluation-harness tasks
        if name == "adapted_trained" and final is init:
            continue
        if cfg.srb:
            stage(srb_spec(cfg, model), name)
        if cfg.lm_eval_tasks:
            stage(lm_eval_spec(cfg, model), name)
    if final is not init and cfg.curve_texts and cfg.dev_fraction > 0:
        # the source model on the learning curve's own texts, so curves have a line to beat
        # measured on the same texts (the same stage as above when those are the eval texts)
        stage(evaluate_spec(cfg, source, corpus, "target", split="dev", n_texts=cfg.curve_texts),
              "source_model_on_curve_texts")
    return StageGraph(stages)


#: label qualifier of the small model's stages in a progressive run
PROGRESSIVE = "progressive"


def _adapted(cfg: AdaptConfig, corpus: StageOutput, source: StageOutput, tokenizer: StageOutput,
             helper: StageOutput | None, stage: Callable[..., StageOutput],
             prefix: str | None) -> tuple[StageOutput, StageOutput]:
    """(init, final) of ``source`` adapted with ``tokenizer``: the strategy's data stages,
    init and (with training) train, their labels qualified by ``prefix`` when given."""
    def qualified(qualifier: str | None) -> str | None:
        if prefix is None:
            return qualifier
        return f"{prefix}_{qualifier}" if qualifier else prefix

    kinds = needs(cfg.strategy)
    vectors = None
    if "vectors" in kinds:
        source_spec_v, target_spec_v = vector_specs(cfg, corpus)
        # fasttext.<side>, or pretrained_vectors.<side> for the user's own file
        source_vectors = stage(source_spec_v, qualified("source"))
        target_vectors = stage(target_spec_v, qualified("target"))
        vectors = stage(align_stage_spec(cfg, source_vectors, target_vectors, corpus), qualified(None))
    links = stage(links_spec(cfg, source, tokenizer, corpus), qualified(None)) if "parallel" in kinds else None
    init = stage(init_spec(cfg, source, tokenizer, corpus=corpus, vectors=vectors, links=links, helper=helper),
                 qualified(None))
    if not cfg.total_train_steps:
        return init, init
    return init, stage(train_spec(cfg, init, corpus, source, tokenizer), qualified(None))
