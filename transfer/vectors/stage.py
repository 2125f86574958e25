"""The static-vector stages as cacheable pipeline units: "fasttext" and "align".

``fasttext``: fastText trained on the *train* split the corpus stage wrote (DESIGN: nothing
trained sees dev or test text), the source-language translations or the target text,
stored compactly.
``pretrained_vectors``: the user's own vectors for one language (a fastText ``.bin`` or a
``.vec`` text file) stored in the same compact form as trained ones, so ``align`` and
``init`` do not care where vectors came from; it replaces that language's ``fasttext``.
``align``: both languages' vectors in one space by Procrustes (optionally refined) on a
dictionary file, an eflomal-induced dictionary from the corpus stage's train sentence
pairs, or both; when an evaluation dictionary (Ding) is given, its stable held-out 10% is
removed from every alignment dictionary and BLI P@1 is reported on it. Vectors already
aligned across languages (``method="identity"``) get no map; BLI is reported on the
dictionary file when there is one. Specs and builders follow
``transfer.engine.stages`` (``StageSpec``, ``@builder``), so ``execute(spec, cache)`` caches them
like every other stage.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from transfer.engine.cache import StageOutput, file_sha256
from transfer.engine.file_identity import file_identity
from transfer.engine.stages import (
    BuildContext,
    StageSpec,
    builder,
    read_json,
    upstream_of,
    write_json,
)

if TYPE_CHECKING:
    from transfer.settings.config import AdaptConfig

Dictionaries = Literal["file", "induced", "file+induced", "none"]
AlignMethod = Literal["procrustes", "identity"]
Texts = Literal["source", "target"]


def fasttext_spec(
    corpus: StageOutput,
    texts: Texts = "target",
    *,
    model: str = "skipgram",
    dim: int = 100,
    epoch: int = 5,
    min_count: int = 3,
    minn: int = 3,
    maxn: int = 6,
    bucket: int = 200_000,
    lowercase: bool = False,
    seed: int = 0,
    threads: int = 1,
    max_verses: int | None = None,
    max_documents: int | None = None,
) -> StageSpec:
    """fastText on the train split the ``corpus`` stage wrote: ``texts="target"`` its
    target text, ``"source"`` its source-language translations. ``max_verses`` caps each
    Bible translation, ``max_documents`` each corpus file (None: read whole; a corpus of
    gigabytes would otherwise be read whole ``epoch`` times). ``threads`` is part of the key:
    more than one thread changes (and unfixes) the result."""
    from transfer.errors import CorpusError

    if texts not in ("source", "target"):
        raise CorpusError(f"fastText stage: texts={texts!r}, expected 'source' or 'target'")
    inputs, upstream = upstream_of(corpus=corpus)
    params = {"texts": texts, "model": model, "dim": dim, "epoch": epoch, "min_count": min_count,
              "minn": minn, "maxn": maxn, "bucket": bucket, "lowercase": lowercase, "seed": seed,
              "threads": threads, "max_verses": max_verses}
    if max_documents is not None:  # in the key only when set: uncapped runs keep their keys
        params["max_documents"] = max_documents
    return StageSpec(stage="fasttext", params=params, inputs=inputs, upstream=upstream)


def _texts_read(spec: StageSpec) -> dict[str, list[str]]:
    """The Bible codes and files a fastText stage's texts came from (for its record and the
    model card), from the corpus stage's record."""
    from transfer.corpus.stage import corpus_record

    params = corpus_record(spec.upstream_path("corpus"))["params"]
    if spec.params["texts"] == "source":
        return {"bible": params["source_train_bible"], "files": []}
    return {"bible": params["target_bible"], "files": params["target_files"]}


def _pairs_read(spec: StageSpec) -> dict[str, list]:
    """Where an align stage's sentence pairs came from: (source, target) Bible code pairs
    or the user's parallel files, from the corpus stage's record."""
    from transfer.corpus.stage import corpus_record

    params = corpus_record(spec.upstream_path("corpus"))["params"]
    files = [entry["entry"] for entry in params.get("parallel", [])]
    if files or not params["target_bible"]:
        return {"parallel": [], "parallel_files": files}
    return {"parallel": [[code, params["target_bible"][0]] for code in params["source_train_bible"]],
            "parallel_files": []}


def fasttext_lines(spec: StageSpec) -> Iterator[str]:
    """The texts a fastText stage trains on, all read from its corpus stage's folder."""
    from transfer.corpus.stage import corpus_record, iter_lines, iter_sections, source_train_file

    corpus = spec.upstream_path("corpus")
    cap = spec.params["max_verses"]
    if spec.params["texts"] == "source":
        for code in corpus_record(corpus)["params"]["source_train_bible"]:
            yield from itertools.islice(iter_lines(corpus / source_train_file(code)), cap)  # streamed
    else:
        documents = spec.params.get("max_documents")
        yield from iter_sections(corpus, "train.txt", lambda part: cap if part.startswith("bible:") else documents)


@builder("fasttext")
def build_fasttext(spec: StageSpec, out: Path, context: BuildContext) -> None:
    from transfer.errors import CorpusError
    from transfer.vectors.fasttext_training import load_trained, train_fasttext, write_training_text

    p = spec.params
    started = time.perf_counter()
    corpus = out / "train.tok.txt"
    counts = write_training_text(fasttext_lines(spec), corpus, lowercase=p["lowercase"])
    if not counts["lines"]:
        raise CorpusError(f"fastText stage ({p['texts']} texts): the corpus stage wrote no train text for it")
    try:
        train_fasttext(corpus, out / "vectors", model=p["model"], dim=p["dim"], epoch=p["epoch"],
                       min_count=p["min_count"], threads=p["threads"], seed=p["seed"], minn=p["minn"],
                       maxn=p["maxn"], bucket=p["bucket"], lowercase=p["lowercase"])
    finally:
        corpus.unlink(missing_ok=True)  # the tokenized copy is cheap to redo; keep the disk small
    vectors = load_trained(out / "vectors")
    write_json(out / "fasttext.json", {"params": {**p, **_texts_read(spec)}, "corpus": counts, "words": len(vectors),
                                       "seconds": round(time.perf_counter() - started, 2)})


def pretrained_vectors_spec(path: str | Path, texts: Texts, *, cache_dir: str | Path | None = None) -> StageSpec:
    """The user's vector file for the ``texts`` side, read and stored compactly. Its key
    holds the file's content identity (sha256, remembered by path, size and mtime under
    ``cache_dir``, so a 7 GB file is hashed once), not its path."""
    from transfer.errors import VectorsError

    if texts not in ("source", "target"):
        raise VectorsError(f"pretrained vectors: texts={texts!r}, expected 'source' or 'target'")
    path = Path(path)
    if not path.is_file():
        raise VectorsError(f"{texts}_vectors: {path} does not exist")
    inputs = {"vectors_file": file_identity(path, cache_dir)}
    params = {"texts": texts, "path": str(path)}
    return StageSpec(stage="pretrained_vectors", params=params, inputs=inputs, upstream={})


@builder("pretrained_vectors")
def build_pretrained_vectors(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Load the file once (:mod:`transfer.vectors.pretrained` picks the reader) and save it
    as :func:`~transfer.vectors.compact_vectors.save_vectors` does for trained vectors: the word
    matrix, plus for a ``.bin`` the n-gram buckets its vocabulary uses."""
    from transfer.vectors.compact_vectors import save_vectors
    from transfer.vectors.pretrained import sniff_vector_file
    from transfer.vectors.vector_formats import load_fasttext_bin, load_word2vec

    started = time.perf_counter()
    path = Path(spec.params["path"])
    label = f"{spec.params['texts']}_vectors"
    found = sniff_vector_file(path, label)
    if found.form == "fasttext_bin":
        vectors = load_fasttext_bin(path)
    else:
        vectors = load_word2vec(path, binary=found.form == "word2vec_binary")
    vectors.meta = {**vectors.meta, "pretrained": str(path), "form": found.form}
    save_vectors(vectors, out / "vectors")
    write_json(out / "vectors.json", {"params": {**spec.params, "form": found.form},
                                      "sha256": spec.inputs["vectors_file"], "words": len(vectors),
                                      "dim": vectors.dim, "ngrams": vectors.ngrams is not None,
                                      "seconds": round(time.perf_counter() - started, 2)})


def align_spec(
    source: StageOutput,
    target: StageOutput,
    *,
    dictionaries: Dictionaries = "file",
    dictionary_path: str | Path | None = None,
    dictionary_format: str = "auto",
    dictionary_reversed: bool = True,
    eval_dictionary_path: str | Path | None = None,
    eval_dictionary_reversed: bool = True,
    test_fraction: float = 0.1,
    corpus: StageOutput | None = None,
    max_parallel: int | None = None,
    min_count: int = 3,
    min_ratio: float = 0.3,
    refine_iterations: int = 0,
    csls_k: int = 10,
    method: AlignMethod = "procrustes",
) -> StageSpec:
    """Align ``source`` onto ``target`` fastText stages. ``dictionary_reversed``: the file
    lists (target word, source word), as Ding's ``German :: English`` does for an English
    source. ``corpus``: the corpus stage whose train sentence pairs eflomal induces a
    dictionary from (the first ``max_parallel`` of each source translation or file).
    ``method="identity"``: the vectors are already in one space; no map is learned, and a
    dictionary file (``dictionaries="file"``) only measures BLI ("none": no BLI)."""
    from transfer.errors import DictionaryError

    if method not in ("procrustes", "identity"):
        raise DictionaryError(f"align method={method!r}: use 'procrustes' or 'identity'")
    allowed = ("file", "none") if method == "identity" else ("file", "induced", "file+induced")
    if dictionaries not in allowed:
        raise DictionaryError(f"dictionaries={dictionaries!r}: use one of {allowed} with method={method!r}")
    if "file" in dictionaries and dictionary_path is None:
        raise DictionaryError(f"dictionaries={dictionaries!r} needs dictionary_path")
    if "induced" in dictionaries and corpus is None:
        raise DictionaryError(f"dictionaries={dictionaries!r} needs the corpus stage's parallel text")
    stages = {"source": source, "target": target}
    if "induced" in dictionaries and corpus is not None:
        stages["corpus"] = corpus
    inputs, upstream = upstream_of(**stages)
    for name, path in (("dictionary", dictionary_path), ("eval_dictionary", eval_dictionary_path)):
        if path is not None:
            if not Path(path).is_file():
                raise DictionaryError(f"{name}: {path} does not exist")
            inputs[name] = file_sha256(Path(path))
    params = {"dictionaries": dictionaries, "dictionary_path": str(dictionary_path) if dictionary_path else None,
              "dictionary_format": dictionary_format, "dictionary_reversed": dictionary_reversed,
              "eval_dictionary_path": str(eval_dictionary_path) if eval_dictionary_path else None,
              "eval_dictionary_reversed": eval_dictionary_reversed, "test_fraction": test_fraction,
              "max_parallel": max_parallel, "min_count": min_count,
              "min_ratio": min_ratio, "refine_iterations": refine_iterations, "csls_k": csls_k}
    if method != "procrustes":  # Procrustes keys stay as they were
        params["method"] = method
    return StageSpec(stage="align", params=params, inputs=inputs, upstream=upstream)


def induced_parallel_pairs(spec: StageSpec) -> list[tuple[str, str]]:
    """The train sentence pairs an align stage induces its dictionary from."""
    from transfer.corpus.stage import train_pairs

    return train_pairs(spec.upstream_path("corpus"), spec.params["max_parallel"])


def _induced_pairs(spec: StageSpec, lowercase: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """One eflomal run over every pair; the dictionary read per target language (a run of
    several: ``induce_dictionary_by_language``)."""
    from transfer.corpus.stage import train_pair_languages
    from transfer.vectors.static_vectors import tokenize_words
    from transfer.vectors.word_alignment import align, induce_dictionary_by_language

    p = spec.params
    rows = induced_parallel_pairs(spec)
    languages = train_pair_languages(spec.upstream_path("corpus"), p["max_parallel"])
    src_sents = [tokenize_words(s, lowercase=lowercase) for s, _ in rows]
    tgt_sents = [tokenize_words(t, lowercase=lowercase) for _, t in rows]
    alignment = align(src_sents, tgt_sents)
    induced = induce_dictionary_by_language(src_sents, tgt_sents, alignment, languages, min_count=p["min_count"],
                                            min_ratio=p["min_ratio"])
    return induced.pairs, {**induced.report, "alignment": alignment.report}


@builder("align")
def build_align(spec: StageSpec, out: Path, context: BuildContext) -> None:
    from transfer.vectors.alignment import align_vectors, bli_evaluate
    from transfer.vectors.compact_vectors import save_vectors
    from transfer.vectors.dictionaries import coverage, held_out_split, load_dictionary
    from transfer.vectors.fasttext_training import load_trained

    p = spec.params
    source = load_trained(spec.upstream_path("source") / "vectors")
    target = load_trained(spec.upstream_path("target") / "vectors")
    report: dict[str, Any] = {"params": {**p, **(_pairs_read(spec) if "induced" in p["dictionaries"] else {})}}
    if p.get("method") == "identity":
        _identity_alignment(spec, source, target, report, out)
        return
    split = None
    if p["eval_dictionary_path"]:
        evaluation = load_dictionary(p["eval_dictionary_path"], lowercase=source.lowercase)
        if p["eval_dictionary_reversed"]:
            evaluation = evaluation.reversed()
        split = held_out_split(evaluation.pairs, p["test_fraction"])
        report["held_out"] = coverage(split.test, source, target)
    pairs: list[tuple[str, str]] = []
    if "file" in p["dictionaries"]:
        given = load_dictionary(p["dictionary_path"], p["dictionary_format"], lowercase=source.lowercase)
        if p["dictionary_reversed"]:
            given = given.reversed()
        file_pairs = split.excludes(given.pairs) if split else given.pairs
        report["file_dictionary"] = {**given.report, **coverage(file_pairs, source, target)}
        pairs += file_pairs
    if "induced" in p["dictionaries"]:
        induced, induced_report = _induced_pairs(spec, source.lowercase)
        induced = split.excludes(induced) if split else induced
        report["induced_dictionary"] = {**induced_report, **coverage(induced, source, target)}
        pairs += induced
    aligned = align_vectors(source, target, list(dict.fromkeys(pairs)),
                            refine_iterations=p["refine_iterations"], csls_k=p["csls_k"])
    report["alignment"] = aligned.report
    if split is not None:
        report["bli"] = {"source->target": bli_evaluate(aligned, split.test, p["csls_k"]),
                         "target->source": bli_evaluate(aligned, split.test, p["csls_k"], reverse=True)}
    save_vectors(aligned.source, out / "source")
    save_vectors(aligned.target, out / "target")
    write_json(out / "align.json", report)


def _identity_alignment(spec: StageSpec, source: Any, target: Any, report: dict[str, Any], out: Path) -> None:
    """Vectors already in one space: the identity map; BLI on the whole dictionary file
    when there is one (nothing was fitted on it, so every pair is a test pair)."""
    from transfer.vectors.alignment import bli_evaluate, identity_pair
    from transfer.vectors.compact_vectors import save_vectors
    from transfer.vectors.dictionaries import coverage, load_dictionary

    p = spec.params
    aligned = identity_pair(source, target)
    report["alignment"] = aligned.report
    if p["dictionaries"] == "file":
        given = load_dictionary(p["dictionary_path"], p["dictionary_format"], lowercase=source.lowercase)
        if p["dictionary_reversed"]:
            given = given.reversed()
        report["file_dictionary"] = {**given.report, **coverage(given.pairs, source, target)}
        report["bli"] = {"source->target": bli_evaluate(aligned, given.pairs, p["csls_k"]),
                         "target->source": bli_evaluate(aligned, given.pairs, p["csls_k"], reverse=True)}
    save_vectors(aligned.source, out / "source")
    save_vectors(aligned.target, out / "target")
    write_json(out / "align.json", report)


def load_aligned(stage: StageOutput) -> tuple[Any, Any, dict[str, Any]]:
    """(source vectors, target vectors, report) of a finished "align" stage."""
    from transfer.vectors.compact_vectors import load_compact

    return (load_compact(stage.path / "source"), load_compact(stage.path / "target"),
            read_json(stage.path / "align.json"))


# ---------------------------------------------------------------- from the run's config

def vector_specs(cfg: AdaptConfig, corpus: StageOutput) -> tuple[StageSpec, StageSpec]:
    """Each language's static vectors: the user's file (``source_vectors``,
    ``target_vectors``) read by a ``pretrained_vectors`` stage, else fastText trained on
    that language's train text of ``corpus``. The pipeline labels each ``<stage>:<side>``."""
    common = {"dim": cfg.vector_dim, "epoch": cfg.vector_epochs, "seed": cfg.seed,
              "max_verses": cfg.vector_max_verses, "max_documents": cfg.vector_max_documents}
    given = {"source": cfg.source_vectors, "target": cfg.target_vectors}
    specs = [pretrained_vectors_spec(given[side], side, cache_dir=cfg.cache_dir) if given[side]
             else fasttext_spec(corpus, side, **common) for side in ("source", "target")]
    return specs[0], specs[1]


def align_stage_spec(cfg: AdaptConfig, source_vectors: StageOutput, target_vectors: StageOutput,
                     corpus: StageOutput) -> StageSpec:
    """Procrustes on a dictionary file (Ding for German) or on one induced with eflomal
    from the corpus stage's train sentence pairs."""
    from transfer.vectors.dictionaries import DING_DE_EN

    choice = cfg.dictionary
    if choice == "auto":
        choice = "ding" if cfg.target_language == "de" and DING_DE_EN.is_file() else "induced"
    if cfg.vectors_aligned:
        # already one space: a dictionary file only measures BLI; nothing is induced
        if choice == "induced":
            return align_spec(source_vectors, target_vectors, dictionaries="none", method="identity")
        return align_spec(source_vectors, target_vectors, dictionaries="file",
                          dictionary_path=DING_DE_EN if choice == "ding" else choice,
                          dictionary_reversed=choice == "ding", method="identity")
    if choice == "induced":
        return align_spec(source_vectors, target_vectors, dictionaries="induced", corpus=corpus,
                          max_parallel=cfg.parallel_max_pairs)
    path = DING_DE_EN if choice == "ding" else choice
    # Ding lists "German :: English", i.e. (target, source) for an English source model
    return align_spec(source_vectors, target_vectors, dictionaries="file", dictionary_path=path,
                      dictionary_reversed=choice == "ding")
