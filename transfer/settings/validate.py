"""Refuse a run's bad input before any expensive work starts (CONTRIBUTING: bad input is
a ``transfer.errors`` subclass naming the file or parameter and what is wrong).

Everything here costs seconds and writes nothing: strategy parameter names and values,
names that become folders or registry entries, and every file the run will read (exists,
readable, and its head sniffed: compressed as its name says or not, binary or text, UTF-8,
the format's first lines; a Parquet file's footer). Damage further into a large file is
found by the stage that reads it.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.errors import CorpusError, TrainingError, VocabTransferError
from transfer.settings.config import AdaptConfig, freeze_source_rows_problem
from transfer.settings.keep_tokens import check_keep_tokens
from transfer.settings.names import check_path_component

if TYPE_CHECKING:
    from transfer.train.memory import MemoryEstimate

#: How much of each file validation reads (decompressed): enough for the first lines.
HEAD_BYTES = 1 << 16
# the first JSON lines of a corpus file checked up front (the stage checks every line)
_JSONL_HEAD_LINES = 20


def validate_config(cfg: AdaptConfig, *, planning_only: bool = False) -> MemoryEstimate | None:
    """Check strategy, corpus, Bible codes, the data the strategy needs and the source;
    return the training memory estimate it checked (None without training). Runs once
    per run, inside ``transfer.planning.plan.plan_adaptation``. ``planning_only`` (a dry
    run) with ``device_memory`` plans for that hardware: the devices need not be here."""
    other_hardware = planning_only and cfg.device_memory is not None
    from transfer.corpus.bible import translation_codes
    from transfer.corpus.bible_languages import target_corpus_problem
    from transfer.init import check_strategy_params
    from transfer.init.resources import needs
    from transfer.settings.strategy_choice import missing_data
    from transfer.source.loading import source_fingerprint

    if cfg.hydra:  # a Hydra run plans each language as a run of its own (transfer/hydra/run.py)
        raise TrainingError("hydra: a Hydra run is planned by transfer.hydra.run.plan_hydra (adapt --hydra), "
                            "not as one model")
    check_strategy_params(cfg.strategy, cfg.strategy_params)  # also refuses an unknown strategy
    freeze_problem = freeze_source_rows_problem(cfg)
    if freeze_problem:
        raise TrainingError(freeze_problem)
    if (cfg.nproc_per_node > 1 or cfg.nnodes > 1) and cfg.total_train_steps:
        check_processes(cfg, other_hardware)
    if cfg.activation_checkpointing and cfg.total_train_steps:
        _check_activation_checkpointing(cfg)
    if cfg.loss_kernel == "fused" and cfg.total_train_steps and not other_hardware:
        _check_fused_loss(cfg)
    if cfg.compile and cfg.total_train_steps and not other_hardware:
        from transfer.engine.devices import pick_device
        from transfer.train.run_inputs import check_compile

        check_compile(True, pick_device(cfg.device))  # before any stage, not at the train stage
    _check_names(cfg)
    from transfer.settings.helper_checks import check_helper_inputs

    check_helper_inputs(cfg)  # target_tokenizer, helper_model, progressive
    _check_target_files(cfg)
    _check_eval_files(cfg)
    codes = cfg.target_bible + cfg.source_bible + cfg.source_train_bible
    if codes:
        available = translation_codes()
        unknown = [c for c in codes if c not in available]
        if unknown:
            raise CorpusError(f"Bible translation codes {unknown} are unknown; available: {available}")
    if cfg.several_languages:  # each language its own corpus, named when it has none
        from transfer.corpus.languages import several_languages_problem

        corpus_problem = several_languages_problem(cfg)
    else:
        corpus_problem = target_corpus_problem(cfg.target_bible, cfg.target_files, cfg.target_language)
    if corpus_problem:
        raise CorpusError(corpus_problem)
    _check_parallel_files(cfg)
    from transfer.evaluate.lm_eval_tasks import check_lm_eval_tasks
    from transfer.evaluate.srb_stage import check_srb

    check_srb(cfg)  # opt-in SR-B: the target language has a Bible with verses shared with English
    check_lm_eval_tasks(cfg)  # harness installed, every task known, its data loads (offline too)
    # which data a strategy needs, and whether the run has it, is strategy_choice's rule
    lacking = missing_data(cfg, cfg.strategy)
    if lacking:
        raise CorpusError(f"strategy {cfg.strategy!r} needs {lacking}")
    kinds = needs(cfg.strategy)
    if "vectors" in kinds:
        from transfer.vectors.pretrained import check_vector_inputs

        check_vector_inputs(cfg)  # the user's own vector files: form, dimensions, token method
        if cfg.dictionary not in ("auto", "ding", "induced"):
            _check_dictionary_file(Path(cfg.dictionary))
        if cfg.dictionary == "ding":
            from transfer.vectors.dictionaries import DING_DE_EN

            if not DING_DE_EN.is_file():
                raise CorpusError(f"dictionary 'ding' reads {DING_DE_EN}, which is missing: install the Debian "
                                  f"package trans-de-en, or give a dictionary file or 'induced'")
    # raises for a missing file or folder, and for a hub id offline without a cached copy
    source_fingerprint(cfg.source_model, cfg.source_revision)
    _check_source_weights(cfg)
    check_keep_tokens(cfg)  # entries, and a folder source's added tokens
    from transfer.settings.memory_budget import check_training_memory

    # the trainer's memory estimate, refused before any stage
    return check_training_memory(cfg, planning_only=planning_only)


def _check_eval_files(cfg: AdaptConfig) -> None:
    """Each evaluation file exists, is UTF-8 text or JSON lines, and holds a text (its first
    text read; the corpus stage reads the rest)."""
    from transfer.corpus.eval_sets import parse_eval_files
    from transfer.evaluate.texts import read_eval_texts

    for eval_set in parse_eval_files(cfg.eval_files):
        try:
            read_eval_texts(eval_set.path, max_texts=1)
        except CorpusError as error:
            raise CorpusError(f"eval_files ({eval_set.name}): {error}") from error


def check_processes(cfg: AdaptConfig, other_hardware: bool = False) -> None:
    """Several training processes (``nproc_per_node`` on each of ``nnodes`` machines): the
    rendezvous of several machines, an equal share of every optimizer step for each process,
    on a GPU each its own device, and what sharding cannot do (transfer/train/sharding.py)."""
    from transfer.engine.devices import pick_device
    from transfer.train.launch import per_process_batch, rendezvous_problem
    from transfer.train.sharding import fsdp_problem

    problem = rendezvous_problem(cfg.nnodes, cfg.rdzv_endpoint)
    if problem:
        raise TrainingError(problem)
    world = cfg.nproc_per_node * cfg.nnodes
    per_process_batch(cfg.batch_size, cfg.grad_accumulation, world,
                      what=f"nproc_per_node={cfg.nproc_per_node} x nnodes={cfg.nnodes} = {world} processes"
                      if cfg.nnodes > 1 else None)
    device = pick_device(cfg.device) if not other_hardware else None  # a dry run for other hardware
    if device is not None and device.type == "cuda":
        import torch

        if torch.cuda.device_count() < cfg.nproc_per_node:
            raise TrainingError(f"nproc_per_node={cfg.nproc_per_node} needs as many GPUs; this machine has "
                                f"{torch.cuda.device_count()}")
    if cfg.sharding == "fsdp":
        problem = fsdp_problem(distills=cfg.objective != "next_token", compiles=bool(cfg.compile))
        if problem:
            raise TrainingError(problem)
        _check_fsdp_layers(cfg)


def _check_fsdp_layers(cfg: AdaptConfig) -> None:
    """``sharding: fsdp`` needs the architecture's repeated layers, none sharing a weight
    with another group: checked on the model's shapes (meta device, no weights read)."""
    from transfer.settings.memory_budget import source_model_config, training_model_shape
    from transfer.train.sharding import check_shardable

    config = source_model_config(cfg)
    if config is not None:
        check_shardable(training_model_shape(cfg, config))


def _check_activation_checkpointing(cfg: AdaptConfig) -> None:
    """``activation_checkpointing`` needs an architecture transformers can recompute layer
    by layer (``supports_gradient_checkpointing``), read from the source's config."""
    from transfer.settings.memory_budget import source_model_config
    from transfer.source.objective import auto_model_class

    config = source_model_config(cfg)
    if config is None:
        return
    model_class = auto_model_class(config)
    model_class = getattr(model_class, "_model_mapping", {}).get(type(config), model_class)  # the concrete class
    if not getattr(model_class, "supports_gradient_checkpointing", True):
        raise TrainingError(f"activation_checkpointing: the source's architecture ({model_class.__name__}) does "
                            "not support gradient checkpointing in transformers; turn activation_checkpointing off")


def _check_fused_loss(cfg: AdaptConfig) -> None:
    """loss_kernel 'fused' needs a GPU and Liger Kernel or cut-cross-entropy installed: said
    before the first stage, not at the train stage after the corpus, tokenizer and init."""
    from transfer.engine.devices import pick_device
    from transfer.train.linear_cross_entropy import fused_library

    device = pick_device(cfg.device)
    if device.type != "cuda":
        raise TrainingError(f"loss_kernel='fused' runs on CUDA only; this run trains on {device.type}: use "
                            "'auto' (chunked there) or 'chunked'")
    if fused_library() is None:
        raise TrainingError("loss_kernel='fused' needs Liger Kernel or cut-cross-entropy (pip install "
                            "'vocab-transfer[gpu]'); use 'auto' to fall back to the chunked loss")


def _check_source_weights(cfg: AdaptConfig) -> None:
    """A local source's weight files: headers readable and no file shorter than its tensors
    (a truncated .gguf used to fail only when the source stage opened it, after the corpus
    stage had run)."""
    from transfer.source.loading import resolve_source
    from transfer.source.weight_files import check_source_weights

    spec = resolve_source(cfg.source_model, cfg.source_revision)
    if spec.kind in ("gguf", "folder"):
        check_source_weights(Path(spec.location))
    if spec.kind == "folder":  # a tokenizer of another model: more tokens than embedding rows
        from transfer.errors import ModelLoadError
        from transfer.source.tokenizer_fit import tokenizer_fit_problem

        problem = tokenizer_fit_problem(Path(spec.location))
        if problem:
            raise ModelLoadError(problem)


def _check_parallel_files(cfg: AdaptConfig) -> None:
    """Each parallel corpus's form, its first lines and (Moses) its line counts: cheap
    enough for a GB-sized file; the corpus stage checks every line as it splits them."""
    from transfer.corpus.compressed import compression_of_name
    from transfer.corpus.languages import parallel_language
    from transfer.corpus.parallel_files import check_parallel_head, resolve_parallel
    from transfer.errors import ParallelCorpusError
    from transfer.settings.language_id import check_parallel_languages

    for i, entry in enumerate(cfg.parallel_files):
        target_language = parallel_language(cfg, i)  # a run of several: the entry's own
        source = resolve_parallel(entry, cfg.parallel_source_language, target_language, cfg.parallel_fields)
        for file in source.files:
            path = Path(file)
            _text_head(path, compression_of_name(path), "parallel file", ParallelCorpusError)
        check_parallel_head(source, max_chars=cfg.parallel_max_line_chars)
        # sides that each read as the other's language: swapped columns, fields or files
        check_parallel_languages(source, cfg.parallel_source_language, target_language,
                                 cfg.parallel_max_line_chars)


def _check_names(cfg: AdaptConfig) -> None:
    """Names that become a folder (the model's) or a registry entry: one safe component each
    (the config's validators already refused a bad language tag or prefix)."""
    check_path_component(cfg.model_name(), "model name (source-language-strategy)")
    check_path_component(cfg.registered_model_prefix + cfg.target_language, "registered model name")


def _check_target_files(cfg: AdaptConfig) -> None:
    """Each target corpus path: its files exist, are readable, and their heads are the text,
    JSON lines or Parquet their names promise; a corpus whose every file is empty is refused."""
    from transfer.corpus.parquet import parquet_head
    from transfer.corpus.readers import corpus_files, file_format

    documents = 0
    every_file_whole = True
    for entry in cfg.target_files:
        files = corpus_files(entry)  # a missing path or a folder without corpus files
        for path in files:
            fmt, compression = file_format(path)  # refuses a compressed .parquet
            what = f"target_files: corpus file {str(path)!r}"
            if fmt == "parquet" and _size(path, what) > 0:  # a 0-byte file is empty, as text
                n, whole = parquet_head(path, cfg.text_field, what, whole_bytes=HEAD_BYTES)
                documents += n
                every_file_whole &= whole
                continue
            lines, whole = _text_head(path, compression, "target_files: corpus file", CorpusError)
            every_file_whole &= whole
            if fmt == "jsonl":
                _check_jsonl_head(path, lines, cfg.text_field)
            elif cfg.document_boundary == "blank_line" and not whole and all(line.strip() for line in lines):
                raise CorpusError(f"{what}: document_boundary is 'blank_line' but its first {HEAD_BYTES // 1024} "
                                  f"KiB hold no blank line; if it has a document per line, use "
                                  f"document_boundary='line'")
            documents += sum(1 for line in lines if line.strip())
    if cfg.target_files and documents == 0 and every_file_whole:
        raise CorpusError(f"target_files {cfg.target_files}: no text (every file is empty or blank)")
    if cfg.target_files and every_file_whole and not cfg.target_bible:
        _check_splits_not_empty(cfg)


def _check_splits_not_empty(cfg: AdaptConfig) -> None:
    """A corpus small enough to have been read whole above is split here by the corpus
    stage's own rule, so one that leaves a split empty is refused before any stage."""
    from transfer.corpus.readers import iter_documents, split_documents
    from transfer.corpus.splits import SPLITS, SplitFractions

    fractions = SplitFractions(dev=cfg.dev_fraction, test=cfg.test_fraction)
    docs = [doc for entry in cfg.target_files for doc in iter_documents(entry, cfg.text_field, cfg.document_boundary)]
    sizes = {split: sum(1 for _ in split_documents(docs, split, fractions)) for split in SPLITS}
    empty = [split for split, n in sizes.items() if n == 0]
    if empty:
        raise CorpusError(
            f"target_files {cfg.target_files}: {len(docs)} documents split into "
            + ", ".join(f"{split} {n}" for split, n in sizes.items())
            + f" (dev_fraction {cfg.dev_fraction}, test_fraction {cfg.test_fraction}), so "
            f"{' and '.join(empty)} would be empty: give more text (a few hundred documents at least)"
        )


def _check_jsonl_head(path: Path, lines: list[str], text_field: str) -> None:
    from transfer.corpus.readers import jsonl_text

    for lineno, line in enumerate(lines[:_JSONL_HEAD_LINES], start=1):
        if not line.strip():
            continue
        jsonl_text(line, text_field, f"target_files: corpus file {str(path)!r}, line {lineno}")


def _check_dictionary_file(path: Path) -> None:
    from transfer.vectors.dictionaries import detect_format

    if not path.is_file():
        raise CorpusError(f"dictionary: {path} does not exist")
    lines, _ = _text_head(path, False, "dictionary", CorpusError)
    detect_format("\n".join(lines), path)  # DictionaryError: empty, or neither MUSE nor Ding


def _size(path: Path, what: str) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise CorpusError(f"{what}: cannot read ({exc.strerror or exc})") from exc


def _text_head(path: Path, compression: str | bool | None, what: str,
               error: type[VocabTransferError]) -> tuple[list[str], bool]:
    """The complete lines of a text file's first ``HEAD_BYTES`` (decompressed) and whether
    they are the whole file. Refuses an unreadable file, a compression name without that
    compression's data (and compressed data without the name), Parquet data under a text
    name, binary data (NUL bytes) and bytes that are not UTF-8. A 0-byte file is empty."""
    from transfer.corpus.compressed import (
        DECOMPRESSION_ERRORS,
        MAGIC_BYTES,
        SUFFIX_OF,
        open_decompressed,
        sniff_compression,
    )
    from transfer.corpus.parquet import looks_like_parquet

    kind = ("gzip" if compression else None) if isinstance(compression, bool) else compression
    name = f"{what} {str(path)!r}"
    try:
        with open(path, "rb") as raw:
            magic = raw.read(MAGIC_BYTES)
        if not magic:
            return [], True
        found = sniff_compression(magic)
        if kind is not None and found != kind:
            actual = f"{found} data" if found else f"not {kind} data (it starts with {magic[:4]!r})"
            raise error(f"{name}: named {SUFFIX_OF[kind]} but is {actual}"
                        + (f"; give it a {SUFFIX_OF[found]} name" if found else ""))
        if kind is None and found is not None:
            raise error(f"{name}: is {found}-compressed data; give it a {SUFFIX_OF[found]} name "
                        f"(e.g. {path.name}{SUFFIX_OF[found]})")
        if kind is None and looks_like_parquet(path):
            raise error(f"{name}: is Parquet data; give it a .parquet name (e.g. {path.stem}.parquet)")
        with open_decompressed(path, kind) as handle:
            head = handle.read(HEAD_BYTES + 1)
    except DECOMPRESSION_ERRORS as exc:
        raise error(f"{name}: broken {kind} data ({exc})") from exc
    except OSError as exc:
        if kind is not None:  # bzip2 reports bad data as an OSError ("Invalid data stream")
            raise error(f"{name}: broken {kind} data or unreadable file ({exc.strerror or exc})") from exc
        raise error(f"{name}: cannot read ({exc.strerror or exc})") from exc
    whole = len(head) <= HEAD_BYTES
    head = head[:HEAD_BYTES]
    if b"\0" in head:
        offset = head.index(b"\0")
        raise error(f"{name}: binary data (a NUL byte at offset {offset}), not text; give a UTF-8 text file")
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=whole)
    except UnicodeDecodeError as exc:
        line = head[:exc.start].count(b"\n") + 1
        raise error(f"{name}, line {line}: not valid UTF-8 (byte {head[exc.start]:#04x} at offset {exc.start}); "
                    f"re-encode the file as UTF-8") from exc
    lines = text.removeprefix("\ufeff").split("\n")
    if not whole:
        lines = lines[:-1]  # the last line may be cut off by the head's end
    return [line.rstrip("\r") for line in lines], whole
