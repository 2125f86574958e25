"""The static-vector stages as cacheable pipeline units: "fasttext" and "align".

``fasttext``: fastText trained on the *train* split of Bible translations and/or corpus
files (DESIGN: nothing trained sees dev or test text), stored compactly.
``align``: both languages' vectors in one space by Procrustes (optionally refined) on a
dictionary file, an eflomal-induced dictionary from Bible verse pairs, or both; when an
evaluation dictionary (Ding) is given, its stable held-out 10% is removed from every
alignment dictionary and BLI P@1 is reported on it. Specs and builders follow
``transfer.stages`` (``StageSpec``, ``@builder``), so ``execute(spec, cache)`` caches them
like every other stage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from transfer.cache import StageOutput, file_sha256
from transfer.stages import BuildContext, StageSpec, builder, read_json, upstream_of, write_json

if TYPE_CHECKING:
    from transfer.config import AdaptConfig

Dictionaries = Literal["file", "induced", "file+induced"]


def fasttext_spec(
    bible: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    *,
    text_field: str = "text",
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
) -> StageSpec:
    """fastText on the train split of ``bible`` codes and ``files``. ``threads`` is part
    of the key: more than one thread changes (and unfixes) the result."""
    from transfer.corpus.bible import bible_content_hash
    from transfer.corpus.readers import corpus_content_hash
    from transfer.errors import CorpusError

    if not bible and not files:
        raise CorpusError("fastText stage: no corpus (give Bible codes or files)")
    inputs = {"bible": bible_content_hash(list(bible))} if bible else {}
    for i, path in enumerate(files):
        inputs[f"file{i}"] = corpus_content_hash(path)
    params = {"bible": list(bible), "files": [str(Path(p)) for p in files], "text_field": text_field,
              "model": model, "dim": dim, "epoch": epoch, "min_count": min_count, "minn": minn,
              "maxn": maxn, "bucket": bucket, "lowercase": lowercase, "seed": seed, "threads": threads,
              "max_verses": max_verses}
    return StageSpec(stage="fasttext", params=params, inputs=inputs)


@builder("fasttext")
def build_fasttext(spec: StageSpec, out: Path, context: BuildContext) -> None:
    from transfer.corpus.bible import read_texts
    from transfer.corpus.readers import iter_documents, split_documents
    from transfer.vectors.fasttext import load_trained, train_fasttext, write_training_text

    p = spec.params

    def lines():
        for code in p["bible"]:
            yield from read_texts(code, "train")[: p["max_verses"]]
        for path in p["files"]:
            yield from split_documents(iter_documents(path, p["text_field"]), "train")

    started = time.perf_counter()
    corpus = out / "train.tok.txt"
    counts = write_training_text(lines(), corpus, lowercase=p["lowercase"])
    try:
        train_fasttext(corpus, out / "vectors", model=p["model"], dim=p["dim"], epoch=p["epoch"],
                       min_count=p["min_count"], threads=p["threads"], seed=p["seed"], minn=p["minn"],
                       maxn=p["maxn"], bucket=p["bucket"], lowercase=p["lowercase"])
    finally:
        corpus.unlink(missing_ok=True)  # the tokenized copy is cheap to redo; keep the disk small
    vectors = load_trained(out / "vectors")
    write_json(out / "fasttext.json", {"params": p, "corpus": counts, "words": len(vectors),
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
    parallel: Sequence[tuple[str, str]] = (),
    max_parallel: int | None = None,
    min_count: int = 3,
    min_ratio: float = 0.3,
    refine_iterations: int = 0,
    csls_k: int = 10,
) -> StageSpec:
    """Align ``source`` onto ``target`` fastText stages. ``dictionary_reversed``: the file
    lists (target word, source word), as Ding's ``German :: English`` does for an English
    source. ``parallel``: (source code, target code) Bible pairs for eflomal induction."""
    from transfer.corpus.bible import bible_content_hash
    from transfer.errors import DictionaryError

    if dictionaries not in ("file", "induced", "file+induced"):
        raise DictionaryError(f"dictionaries={dictionaries!r}: use 'file', 'induced' or 'file+induced'")
    if "file" in dictionaries and dictionary_path is None:
        raise DictionaryError(f"dictionaries={dictionaries!r} needs dictionary_path")
    if "induced" in dictionaries and not parallel:
        raise DictionaryError(f"dictionaries={dictionaries!r} needs parallel Bible code pairs")
    inputs, upstream = upstream_of(source=source, target=target)
    for name, path in (("dictionary", dictionary_path), ("eval_dictionary", eval_dictionary_path)):
        if path is not None:
            if not Path(path).is_file():
                raise DictionaryError(f"{name}: {path} does not exist")
            inputs[name] = file_sha256(Path(path))
    if parallel:
        inputs["parallel"] = bible_content_hash(sorted({c for pair in parallel for c in pair}))
    params = {"dictionaries": dictionaries, "dictionary_path": str(dictionary_path) if dictionary_path else None,
              "dictionary_format": dictionary_format, "dictionary_reversed": dictionary_reversed,
              "eval_dictionary_path": str(eval_dictionary_path) if eval_dictionary_path else None,
              "eval_dictionary_reversed": eval_dictionary_reversed, "test_fraction": test_fraction,
              "parallel": [list(p) for p in parallel], "max_parallel": max_parallel, "min_count": min_count,
              "min_ratio": min_ratio, "refine_iterations": refine_iterations, "csls_k": csls_k}
    return StageSpec(stage="align", params=params, inputs=inputs, upstream=upstream)


def _induced_pairs(p: dict[str, Any], lowercase: bool) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    from transfer.corpus.bible import verse_pairs
    from transfer.vectors.fasttext import tokenize_words
    from transfer.vectors.word_alignment import align, induce_dictionary_report

    src_sents: list[list[str]] = []
    tgt_sents: list[list[str]] = []
    for src_code, tgt_code in p["parallel"]:
        rows = verse_pairs(src_code, tgt_code, "train")[: p["max_parallel"]]
        src_sents += [tokenize_words(s, lowercase=lowercase) for _, s, _ in rows]
        tgt_sents += [tokenize_words(t, lowercase=lowercase) for _, _, t in rows]
    alignment = align(src_sents, tgt_sents)
    induced = induce_dictionary_report(src_sents, tgt_sents, alignment, min_count=p["min_count"],
                                       min_ratio=p["min_ratio"])
    return induced.pairs, {**induced.report, "alignment": alignment.report}


@builder("align")
def build_align(spec: StageSpec, out: Path, context: BuildContext) -> None:
    from transfer.vectors.alignment import align_vectors, bli_evaluate
    from transfer.vectors.dictionaries import coverage, held_out_split, load_dictionary
    from transfer.vectors.fasttext import load_trained, save_vectors

    p = spec.params
    source = load_trained(spec.upstream_path("source") / "vectors")
    target = load_trained(spec.upstream_path("target") / "vectors")
    report: dict[str, Any] = {"params": p}
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
        induced, induced_report = _induced_pairs(p, source.lowercase)
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


def load_aligned(stage: StageOutput) -> tuple[Any, Any, dict[str, Any]]:
    """(source vectors, target vectors, report) of a finished "align" stage."""
    from transfer.vectors.fasttext import load_compact

    return (load_compact(stage.path / "source"), load_compact(stage.path / "target"),
            read_json(stage.path / "align.json"))


# ---------------------------------------------------------------- from the run's config

def vector_specs(cfg: AdaptConfig) -> tuple[StageSpec, StageSpec]:
    """fastText on the source-language and the target-language train text."""
    
    common = {"dim": cfg.vector_dim, "epoch": cfg.vector_epochs, "seed": cfg.seed,
              "max_verses": cfg.vector_max_verses}
    return (fasttext_spec(bible=cfg.source_train_bible, **common),
            fasttext_spec(bible=cfg.target_bible, files=cfg.target_files, text_field=cfg.text_field, **common))


def align_stage_spec(cfg: AdaptConfig, source_vectors: StageOutput, target_vectors: StageOutput) -> StageSpec:
    """Procrustes on a dictionary file (Ding for German) or on an eflomal-induced one."""
    from transfer.vectors.dictionaries import DING_DE_EN
    
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
