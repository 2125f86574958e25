"""The adaptation pipeline: the stages of DESIGN.md in order, each cached by its key.

``run_adaptation`` is the whole path as a plain library call. ``flows/`` runs the very
same sequence with each stage wrapped in a Prefect task, by passing ``execute_stage``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from transfer.cache import StageCache, StageOutput, code_version
from transfer.config import AdaptConfig
from transfer.errors import CorpusError
from transfer.registry import Registration
from transfer.stages import StageSpec, builder, execute, read_json, upstream_of, write_json

ExecuteStage = Callable[[StageSpec], StageOutput]
StageListener = Callable[[str, str], None]  # (stage label, "cached" | "built" | "running")


# ---------------------------------------------------------------- specs (what to compute)

def corpus_spec(cfg: AdaptConfig) -> StageSpec:
    from transfer.bible import bible_content_hash
    from transfer.corpus import corpus_content_hash

    inputs = {"bible": bible_content_hash(sorted(set(cfg.target_bible + cfg.source_bible)))}
    for i, path in enumerate(cfg.target_files):
        inputs[f"file{i}"] = corpus_content_hash(path)
    params = {
        "target_bible": cfg.target_bible,
        "target_files": [str(Path(p)) for p in cfg.target_files],
        "text_field": cfg.text_field,
        "source_bible": cfg.source_bible,
        "dev_fraction": cfg.dev_fraction,
        "test_fraction": cfg.test_fraction,
    }
    return StageSpec(stage="corpus", params=params, inputs=inputs)


def source_spec(cfg: AdaptConfig) -> StageSpec:
    from transfer.source_model import source_fingerprint

    return StageSpec(
        stage="source",
        params={"source_model": cfg.source_model},
        inputs={"weights": source_fingerprint(cfg.source_model)},
    )


def tokenizer_spec(cfg: AdaptConfig, corpus: StageOutput, source: StageOutput) -> StageSpec:
    inputs, upstream = upstream_of(corpus=corpus, source=source)
    return StageSpec(
        stage="tokenizer",
        params={"vocab_size": cfg.vocab_size, "min_frequency": cfg.min_frequency,
                "eval_split": cfg.eval_split, "eval_texts": cfg.eval_texts},
        inputs=inputs,
        upstream=upstream,
    )


def init_spec(cfg: AdaptConfig, source: StageOutput, tokenizer: StageOutput,
              corpus: StageOutput | None = None, vectors: StageOutput | None = None) -> StageSpec:
    """Only the data the strategy needs (``transfer.strategy_data``) enters the key."""
    from transfer.strategy_data import needs

    kinds = needs(cfg.strategy)
    extra = {"corpus": corpus} if corpus is not None and "target_corpus" in kinds else {}
    if "vectors" in kinds and vectors is not None:
        extra["vectors"] = vectors
    inputs, upstream = upstream_of(source=source, tokenizer=tokenizer, **extra)
    params: dict[str, Any] = {"strategy": cfg.strategy, "strategy_params": cfg.strategy_params,
                              "seed": cfg.seed}
    if "parallel" in kinds:
        from transfer.bible import bible_content_hash

        params["parallel_source_bible"] = cfg.source_train_bible
        params["parallel_target_bible"] = cfg.target_bible[0] if cfg.target_bible else None
        params["parallel_max_pairs"] = cfg.parallel_max_pairs
        inputs["parallel"] = bible_content_hash(sorted({*cfg.source_train_bible, *cfg.target_bible[:1]}))
    if "vectors" in kinds:
        params["token_vector_method"] = cfg.token_vector_method
    return StageSpec(stage="init", params=params, inputs=inputs, upstream=upstream)


def vector_specs(cfg: AdaptConfig) -> tuple[StageSpec, StageSpec]:
    """fastText on the source-language and the target-language train text."""
    from transfer.vector_stages import fasttext_spec

    common = {"dim": cfg.vector_dim, "epoch": cfg.vector_epochs, "seed": cfg.seed,
              "max_verses": cfg.vector_max_verses}
    return (fasttext_spec(bible=cfg.source_train_bible, **common),
            fasttext_spec(bible=cfg.target_bible, files=cfg.target_files, text_field=cfg.text_field, **common))


def align_stage_spec(cfg: AdaptConfig, source_vectors: StageOutput, target_vectors: StageOutput) -> StageSpec:
    """Procrustes on a dictionary file (Ding for German) or on an eflomal-induced one."""
    from transfer.dictionaries import DING_DE_EN
    from transfer.vector_stages import align_spec

    pairs = [(code, cfg.target_bible[0]) for code in cfg.source_train_bible] if cfg.target_bible else []
    choice = cfg.dictionary
    if choice == "auto":
        choice = "ding" if cfg.target_language == "de" and DING_DE_EN.is_file() else "induced"
    if choice == "induced":
        return align_spec(source_vectors, target_vectors, dictionaries="induced", parallel=pairs,
                          max_parallel=cfg.parallel_max_pairs)
    path = DING_DE_EN if choice == "ding" else choice
    # Ding lists "German :: English", i.e. (target, source) for an English source model
    return align_spec(source_vectors, target_vectors, dictionaries="file", dictionary_path=path,
                      dictionary_reversed=choice == "ding")


def train_spec(cfg: AdaptConfig, init: StageOutput, corpus: StageOutput) -> StageSpec:
    inputs, upstream = upstream_of(model=init, corpus=corpus)
    return StageSpec(
        stage="train",
        params={"steps": cfg.train_steps, "batch_size": cfg.batch_size,
                "block_size": cfg.block_size, "learning_rate": cfg.learning_rate, "seed": cfg.seed,
                "full_steps": cfg.full_steps, "full_learning_rate": cfg.full_learning_rate,
                "warmup_steps": cfg.warmup_steps, "lr_schedule": cfg.lr_schedule,
                "weight_decay": cfg.weight_decay, "grad_accumulation": cfg.grad_accumulation,
                "clip_norm": cfg.clip_norm, "precision": cfg.precision,
                "eval_every": cfg.eval_every, "curve_texts": cfg.curve_texts},
        inputs=inputs,
        upstream=upstream,
        runtime={"device": cfg.device, "checkpoint_every": cfg.checkpoint_every,
                 "checkpoint_dir": str(cfg.cache_dir / "_checkpoints" / "train"),
                 "eval_batch_size": cfg.eval_batch_size},
    )


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


# ---------------------------------------------------------------- builders (how to compute)

def _eval_file(split: str, texts: str) -> str:
    return f"{split}.{texts}.txt"


def read_lines(path: Path, limit: int | None = None) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle]
    return lines[:limit] if limit is not None else lines


def iter_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\n")


def _hash_order(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@builder("corpus")
def build_corpus(spec: StageSpec, out: Path) -> None:
    """Split by verse key (Bible) or document hash (files) into train/dev/test files; the
    ``*.target.txt``/``*.source.txt`` files hold the first translation's held-out verses and
    the same verses in the source language, in a stable hash order for evaluation."""
    from transfer.bible import read_verses
    from transfer.corpus import iter_documents, split_documents
    from transfer.splits import SPLITS, SplitFractions

    p = spec.params
    fractions = SplitFractions(dev=p["dev_fraction"], test=p["test_fraction"])
    stats: dict[str, Any] = {}
    for split in SPLITS:
        n_docs = n_bytes = 0
        with open(out / f"{split}.txt", "w", encoding="utf-8") as handle:
            for code in p["target_bible"]:
                for verse in read_verses(code, split, fractions=fractions):
                    handle.write(verse.text + "\n")
                    n_docs += 1
                    n_bytes += len(verse.text.encode())
            for path in p["target_files"]:
                for doc in split_documents(iter_documents(path, p["text_field"]), split, fractions):
                    handle.write(doc + "\n")
                    n_docs += 1
                    n_bytes += len(doc.encode())
        stats[split] = {"documents": n_docs, "bytes": n_bytes}
        if n_docs == 0:
            raise CorpusError(
                f"target corpus (bible={p['target_bible']}, files={p['target_files']}) has no "
                f"{split} documents: the corpus is empty or too small to split"
            )
        if split == "train":
            continue
        # evaluation texts: first target source, ordered by a stable hash of the key
        if p["target_bible"]:
            verses = read_verses(p["target_bible"][0], split, fractions=fractions)
            keyed = sorted(((v.key, v.text) for v in verses), key=lambda kv: _hash_order(kv[0]))
            target_by_key = dict(keyed)
            (out / _eval_file(split, "target")).write_text("".join(t + "\n" for _, t in keyed))
            if p["source_bible"]:
                source = {v.key: v.text for v in read_verses(p["source_bible"][0], split, fractions=fractions)}
                lines = [source[k] for k, _ in keyed if k in source]
                (out / _eval_file(split, "source")).write_text("".join(t + "\n" for t in lines))
                stats[split]["source_eval_texts"] = len(lines)
            stats[split]["target_eval_texts"] = len(target_by_key)
        else:
            docs = read_lines(out / f"{split}.txt")
            docs.sort(key=_hash_order)
            (out / _eval_file(split, "target")).write_text("".join(d + "\n" for d in docs))
            stats[split]["target_eval_texts"] = len(docs)
    write_json(out / "corpus.json", {"params": p, "stats": stats})


@builder("source")
def build_source(spec: StageSpec, out: Path) -> None:
    """Load the source model (de-quantizing a GGUF) and save a clean Hugging Face copy."""
    from tokenizer_builds.families import detect_family
    from transfer.source_model import load_source, save_model

    model, tokenizer = load_source(spec.params["source_model"])
    save_model(model, tokenizer, out / "model")
    write_json(out / "source.json", {
        "source_model": spec.params["source_model"],
        "fingerprint": spec.inputs["weights"],
        "architecture": type(model).__name__,
        "vocab_size": len(tokenizer),
        "tied": bool(getattr(model.config, "tie_word_embeddings", False)),
        "tokenizer_family": detect_family(tokenizer).value,
        "parameters": sum(p.numel() for p in model.parameters()),
    })


@builder("tokenizer")
def build_tokenizer(spec: StageSpec, out: Path) -> None:
    """Train the target tokenizer on train texts only; report fertility on held-out texts."""
    from transformers import AutoTokenizer

    from tokenizer_builds.build import build_target_tokenizer, save_tokenizer
    from transfer.fertility import compare_fertility

    corpus = spec.upstream_path("corpus")
    source_tokenizer = AutoTokenizer.from_pretrained(spec.upstream_path("source") / "model")
    target = build_target_tokenizer(
        source_tokenizer,
        iter_lines(corpus / "train.txt"),
        spec.params["vocab_size"],
        min_frequency=spec.params["min_frequency"],
    )
    save_tokenizer(target, out / "tokenizer")
    texts = read_lines(corpus / _eval_file(spec.params["eval_split"], "target"), spec.params["eval_texts"])
    fertility = compare_fertility(source_tokenizer, target, texts)
    write_json(out / "fertility.json", {k: v.to_dict() for k, v in fertility.items()})


@builder("init")
def build_init(spec: StageSpec, out: Path) -> None:
    """Initialize the target embeddings with the chosen strategy and swap them in. OFA's
    result keeps its factorized form (coordinates x source primitives): the folder holds
    the materialized matrix plus the factors, so training continues on the factors."""
    from transformers import AutoTokenizer

    from transfer.factorized import factorize_model, factorized_summary, save_factorized
    from transfer.source_model import load_source, save_model
    from transfer.strategies import initialize
    from transfer.strategies.base import StrategyInputs
    from transfer.strategies.ofa import FactorizedTargetEmbeddings
    from transfer.strategy_data import build_resources
    from transfer.surgery import get_source_embeddings, swap_vocabulary

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
    model = swap_vocabulary(model, target_tokenizer, target, source_tokenizer=source_tokenizer)
    report = target.report.to_dict()
    if isinstance(target, FactorizedTargetEmbeddings) and target.primitives is not None:
        factorize_model(model, primitives=target.primitives)
        save_factorized(model, target_tokenizer, out / "model")
        report["factorized"] = factorized_summary(model)
    else:
        save_model(model, target_tokenizer, out / "model")
    write_json(out / "init_report.json", report)


@builder("train")
def build_train(spec: StageSpec, out: Path) -> None:
    """Continued pretraining on the target train split: embeddings only (body frozen), then
    optionally the whole model; dev-BPB learning curves (CSV/JSON/PNG) go into the folder.
    An OFA init trains its coordinates and primitives (V*r + r*d), not a full V x d matrix."""
    from transfer.factorized import has_factors, load_factorized, save_factorized
    from transfer.source_model import load_source, save_model
    from transfer.training import (
        StageConfig,
        TrainingConfig,
        active_callbacks,
        dev_evaluator,
        pack_train_split,
        train,
    )
    from transfer.training.freezing import embedding_parameters

    p, runtime = spec.params, spec.runtime
    init_model = spec.upstream_path("model") / "model"
    factorized = has_factors(init_model)
    model, tokenizer = load_factorized(init_model) if factorized else load_source(str(init_model))
    embedding_trainable = sum(param.numel() for param in embedding_parameters(model))
    corpus = spec.upstream_path("corpus")
    data = pack_train_split(tokenizer, iter_lines(corpus / "train.txt"), p["block_size"])
    schedule = {"warmup_steps": p.get("warmup_steps", 0), "schedule": p.get("lr_schedule", "constant")}
    stages = [StageConfig("embeddings", steps=p["steps"], lr=p["learning_rate"], **schedule)]
    if p.get("full_steps", 0):
        stages.append(StageConfig("full", steps=p["full_steps"], lr=p["full_learning_rate"],
                                  weight_decay=p.get("weight_decay", 0.0), **schedule))
    checkpoint_every = runtime.get("checkpoint_every", 0)
    config = TrainingConfig(
        stages=stages, batch_size=p["batch_size"], grad_accumulation=p.get("grad_accumulation", 1),
        clip_norm=p.get("clip_norm", 1.0), seed=p["seed"], precision=p.get("precision", "auto"),
        eval_every=p.get("eval_every", 0), checkpoint_every=checkpoint_every,
    )
    dev_file = corpus / _eval_file("dev", "target")
    evaluate = None
    if p.get("curve_texts", 0) and dev_file.exists():
        # dev verses only: the test split stays for the final report
        evaluate = dev_evaluator(tokenizer, read_lines(dev_file, p["curve_texts"]),
                                 batch_size=runtime.get("eval_batch_size", 16), device=runtime.get("device"))
    checkpoints = Path(runtime["checkpoint_dir"]) / spec.key if checkpoint_every and runtime.get("checkpoint_dir") else None
    result = train(model, data, config, tokenizer=tokenizer, evaluate=evaluate, device=runtime.get("device"),
                   checkpoint_dir=checkpoints, curve_dir=out if evaluate else None, label="train",
                   callbacks=active_callbacks())
    (save_factorized if factorized else save_model)(model, tokenizer, out / "model")
    write_json(out / "train_log.json", {**result.to_dict(), "factorized": factorized,
                                        "embedding_trainable_parameters": embedding_trainable})


@builder("evaluate")
def build_evaluate(spec: StageSpec, out: Path) -> None:
    """Bits per byte of a causal model on held-out texts (DESIGN.md's definition); the
    masked-LM loss (fixed seed and 15% rate) for a masked LM. ``metric``/``value`` name the
    number either way; a ``bpb`` key is present only for causal models."""
    from transfer.evaluate import bits_per_byte
    from transfer.masked_lm import is_masked_lm, masked_lm_loss
    from transfer.source_model import load_source

    p = spec.params
    path = spec.upstream_path("corpus") / _eval_file(p["split"], p["texts"])
    if not path.exists():
        raise CorpusError(f"{path}: no {p['texts']}-language evaluation texts for split {p['split']!r}")
    texts = read_lines(path, p["n_texts"])
    model, tokenizer = load_source(str(spec.upstream_path("model") / "model"))
    batch_size, device = spec.runtime.get("batch_size", 16), spec.runtime.get("device")
    if is_masked_lm(model):
        result = masked_lm_loss(model, tokenizer, texts, batch_size=batch_size, device=device)
        metric = {"metric": "mlm_loss", "value": result.loss}
    else:
        result = bits_per_byte(model, tokenizer, texts, batch_size=batch_size, device=device)
        metric = {"metric": "bpb", "value": result.bpb}
    write_json(out / "metrics.json", {"texts": p["texts"], "split": p["split"], **metric,
                                      **result.to_dict()})


# ---------------------------------------------------------------- the whole path

class AdaptResult(BaseModel):
    """What a run produced: metrics, where things are, and which stages were cached."""

    config: AdaptConfig
    code_version: str
    model_dir: str
    stage_keys: dict[str, str]
    stages_cached: dict[str, bool]
    bpb: dict[str, float]  # every evaluation's value of ``metric`` (BPB unless a masked LM)
    metric: Literal["bpb", "mlm_loss"] = "bpb"
    fertility: dict[str, dict[str, float]]
    init_report: dict[str, Any]
    train_log: dict[str, Any] | None
    seconds: float
    registration: Registration | None = None


def trainer_curve_file(result: AdaptResult) -> Path | None:
    """The trainer's dev-BPB learning curve (``curve.json`` in the train stage folder), when
    the run trained and wrote one."""
    if result.train_log is None:
        return None
    path = Path(result.config.cache_dir) / "train" / result.stage_keys["final"] / "curve.json"
    return path if path.is_file() else None


def validate_config(cfg: AdaptConfig) -> None:
    """Refuse bad input before any expensive work starts."""
    from transfer.bible import translation_codes
    from transfer.source_model import source_fingerprint
    from transfer.strategies import check_strategy_params

    check_strategy_params(cfg.strategy, cfg.strategy_params)  # also refuses an unknown strategy
    for path in cfg.target_files:
        if not Path(path).exists():
            raise CorpusError(f"target_files: {path} does not exist")
    codes = cfg.target_bible + cfg.source_bible + cfg.source_train_bible
    if codes:
        available = translation_codes()
        unknown = [c for c in codes if c not in available]
        if unknown:
            raise CorpusError(f"Bible translation codes {unknown} are unknown; available: {available}")
    if not cfg.target_bible and not cfg.target_files:
        raise CorpusError("no target corpus: give target_bible codes or target_files")
    from transfer.strategy_data import needs

    kinds = needs(cfg.strategy)
    if "parallel" in kinds and not (cfg.target_bible and cfg.source_train_bible):
        raise CorpusError(
            f"strategy {cfg.strategy!r} needs a parallel corpus: give target_bible and source_train_bible codes"
        )
    if "vectors" in kinds:
        if not cfg.source_train_bible:
            raise CorpusError(f"strategy {cfg.strategy!r} needs source_train_bible to train source vectors")
        if cfg.dictionary not in ("auto", "ding", "induced") and not Path(cfg.dictionary).is_file():
            raise CorpusError(f"dictionary: {cfg.dictionary} does not exist")
        induced = cfg.dictionary == "induced" or (cfg.dictionary == "auto" and cfg.target_language != "de")
        if induced and not cfg.target_bible:
            raise CorpusError("an induced dictionary needs target_bible codes (verse-aligned text)")
    source_fingerprint(cfg.source_model)  # raises for a missing file or folder


def _local_execute(cache: StageCache, listener: StageListener | None) -> ExecuteStage:
    def run(spec: StageSpec) -> StageOutput:
        if listener:
            listener(spec.stage, "running")
        output, cached = execute(spec, cache)
        if listener:
            listener(spec.stage, "cached" if cached else "built")
        return output

    return run


def export_model(model_stage: StageOutput, destination: Path) -> Path:
    """Copy the final model folder to ``destination`` atomically (replacing an old copy)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-", dir=destination.parent))
    try:
        shutil.copytree(model_stage.path / "model", tmp, dirs_exist_ok=True)
        if destination.exists():
            shutil.rmtree(destination)
        tmp.rename(destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return destination


#: Runs (or, for a plan, only names) one stage: (spec, label) -> its output folder.
StageRunner = Callable[[StageSpec, str], StageOutput]


@dataclass(frozen=True)
class StageGraph:
    """The stages of one run, as ``walk_stages`` visited them."""

    corpus: StageOutput
    source: StageOutput
    tokenizer: StageOutput
    init: StageOutput
    final: StageOutput  # the trained model, or ``init`` when there is no training
    evaluations: dict[str, StageOutput]  # label -> evaluate stage


def walk_stages(cfg: AdaptConfig, stage: StageRunner) -> StageGraph:
    """Every stage of a run, in order, each handed to ``stage``: the one place that knows
    the order. ``run_adaptation`` builds them; ``flows.plan`` only computes their keys."""
    from transfer.strategy_data import needs

    corpus = stage(corpus_spec(cfg), "corpus")
    source = stage(source_spec(cfg), "source")
    tokenizer = stage(tokenizer_spec(cfg, corpus, source), "tokenizer")
    vectors = None
    if "vectors" in needs(cfg.strategy):
        source_spec_v, target_spec_v = vector_specs(cfg)
        source_vectors = stage(source_spec_v, "fasttext:source")
        target_vectors = stage(target_spec_v, "fasttext:target")
        vectors = stage(align_stage_spec(cfg, source_vectors, target_vectors), "align")
    init = stage(init_spec(cfg, source, tokenizer, corpus=corpus, vectors=vectors), "init")
    final = init
    if cfg.total_train_steps:
        final = stage(train_spec(cfg, init, corpus), "train")
    models = {
        "source_model_on_target": (source, "target"),
        "adapted_step0": (init, "target"),
    }
    if cfg.source_bible and cfg.target_bible:
        models["source_model_on_source_language"] = (source, "source")
    if final is not init:
        models["adapted_trained"] = (final, "target")
    evaluations = {label: stage(evaluate_spec(cfg, model, corpus, texts), f"evaluate:{label}")
                   for label, (model, texts) in models.items()}
    if final is not init and cfg.curve_texts and cfg.dev_fraction > 0:
        # the source model on the learning curve's own texts, so curves have a line to beat
        # measured on the same texts (the same stage as above when those are the eval texts)
        evaluations["source_model_on_curve_texts"] = stage(
            evaluate_spec(cfg, source, corpus, "target", split="dev", n_texts=cfg.curve_texts),
            "evaluate:source_model_on_curve_texts")
    return StageGraph(corpus, source, tokenizer, init, final, evaluations)


def run_adaptation(
    cfg: AdaptConfig,
    *,
    execute_stage: ExecuteStage | None = None,
    listener: StageListener | None = None,
) -> AdaptResult:
    """Adapt ``cfg.source_model`` to the target language; every stage is cached by its key."""
    started = time.perf_counter()
    validate_config(cfg)
    cache = StageCache(cfg.cache_dir)
    run = execute_stage or _local_execute(cache, listener)
    cached_before = {}

    def stage(spec: StageSpec, label: str) -> StageOutput:
        cached_before[label] = cache.is_complete(spec.stage, spec.key)
        return run(spec)

    graph = walk_stages(cfg, stage)
    corpus, source, tokenizer, init, final = graph.corpus, graph.source, graph.tokenizer, graph.init, graph.final
    train_log = read_json(final.file("train_log.json")) if final is not init else None
    bpb = {}
    metric = "bpb"
    for label, out in graph.evaluations.items():
        metrics = read_json(out.file("metrics.json"))
        metric = metrics.get("metric", "bpb")
        # masked LMs report the masked-LM loss ("value"); causal models keep "bpb"
        bpb[label] = metrics["bpb"] if "bpb" in metrics else metrics["value"]

    model_dir = export_model(final, cfg.output_dir / cfg.model_name())
    fertility = read_json(tokenizer.file("fertility.json"))
    stage_keys = {"corpus": corpus.key, "source": source.key, "tokenizer": tokenizer.key,
                  "init": init.key, "final": final.key}
    result = AdaptResult(
        config=cfg,
        code_version=code_version(),
        model_dir=str(model_dir),
        stage_keys=stage_keys,
        stages_cached=cached_before,
        bpb=bpb,
        metric=metric,
        fertility=fertility,
        init_report=read_json(init.file("init_report.json")),
        train_log=train_log,
        seconds=time.perf_counter() - started,
    )
    # stage 7: run manifest, model card and registration, beside the exported model
    from transfer.manifest import build_manifest, write_manifest
    from transfer.model_card import write_model_card

    run_keys = {label: f"{out.stage}:{out.key}" for label, out in (
        ("corpus", corpus), ("source", source), ("tokenizer", tokenizer), ("init", init), ("final", final))}
    run_keys.update({f"evaluate.{label}": f"evaluate:{out.key}" for label, out in graph.evaluations.items()})
    write_manifest(build_manifest(cfg, stage_keys=run_keys), model_dir)
    write_model_card(result, model_dir)
    write_json(model_dir / "adaptation.json", result.model_dump(mode="json"))
    if cfg.register_model:
        from transfer.registry import register_result

        result.registration = register_result(
            result, corpus_hashes=corpus_spec(cfg).inputs, stage_keys=run_keys)
        write_json(model_dir / "adaptation.json", result.model_dump(mode="json"))
    return result

