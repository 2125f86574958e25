"""Stage ``corpus``: split every text the run is given into train/dev/test files once; every
later stage reads only what this stage wrote (``read_lines``/``iter_lines``, ``eval_file``).

The folder holds, besides the target ``{train,dev,test}.txt`` and the evaluation files:

- ``train.source.<code>.txt``: the train verses of each source-language translation
  (``source_train_bible``), for the source language's static vectors;
- ``parallel.train.tsv``: train sentence pairs, source TAB target: the user's parallel
  files when given, else the verse pairs of each source translation with the first target
  translation;
- ``corpus.json``: the parameters, counts per split, the files each ``target_files`` entry
  stood for (a folder's, in the order read, with their formats), and the *sections* of
  ``train.txt`` and ``parallel.train.tsv`` (which lines came from which translation or
  file), so a stage can cap each part as before (``vector_max_verses``, ``parallel_max_pairs``).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer.corpus.many_languages import PARALLEL_TRAIN, split_file
from transfer.corpus.many_languages import eval_file as language_eval_file
from transfer.engine.stages import BuildContext, StageSpec, builder, write_json
from transfer.errors import CorpusError

if TYPE_CHECKING:
    from transfer.corpus.splits import SplitFractions
    from transfer.settings.config import AdaptConfig


def corpus_spec(cfg: AdaptConfig) -> StageSpec:
    from transfer.corpus.bible import bible_content_hash
    from transfer.corpus.eval_sets import parse_eval_files
    from transfer.corpus.parallel_files import parallel_content_hash, resolve_parallel
    from transfer.corpus.readers import corpus_content_hash

    codes = sorted(set(cfg.target_bible + cfg.source_bible + cfg.source_train_bible))
    inputs = {"bible": bible_content_hash(codes)}
    for i, path in enumerate(cfg.target_files):
        inputs[f"file{i}"] = corpus_content_hash(path, cfg.cache_dir)
    from transfer.corpus.languages import language_corpora, parallel_language

    parallel = [resolve_parallel(entry, cfg.parallel_source_language, parallel_language(cfg, i), cfg.parallel_fields)
                for i, entry in enumerate(cfg.parallel_files)]
    for i, source in enumerate(parallel):
        inputs[f"parallel{i}"] = parallel_content_hash(source, cfg.cache_dir)
    sets = parse_eval_files(cfg.eval_files)
    for i, eval_set in enumerate(sets):
        inputs[f"eval{i}"] = corpus_content_hash(eval_set.path, cfg.cache_dir)
    params = {
        "target_bible": cfg.target_bible,
        "target_files": [str(Path(p)) for p in cfg.target_files],
        "text_field": cfg.text_field,
        "document_boundary": cfg.document_boundary,
        "source_bible": cfg.source_bible,
        "source_train_bible": cfg.source_train_bible,
        "parallel": [source.to_dict() for source in parallel],
        "dev_fraction": cfg.dev_fraction,
        "test_fraction": cfg.test_fraction,
        "normalization": cfg.normalization,
    }
    if cfg.several_languages:  # only then, so runs of one language keep their keys
        params["languages"] = [{**corpus.to_dict(), "files": [str(Path(f)) for f in corpus.files],
                                "parallel": [i for i, lang in enumerate(cfg.parallel_file_languages)
                                             if lang == corpus.language]}
                               for corpus in language_corpora(cfg)]
        params["sampling_alpha"] = cfg.language_sampling_alpha
        params["sampling_seed"] = cfg.seed
    if sets:  # only then, so runs without evaluation sets keep their keys
        params["eval_sets"] = [{"name": s.name, "path": str(Path(s.path))} for s in sets]
    # a limit that refuses input, not one that changes what is written: not in the key
    runtime = {"parallel_max_line_chars": cfg.parallel_max_line_chars}
    return StageSpec(stage="corpus", params=params, inputs=inputs, runtime=runtime)


def source_train_file(code: str) -> str:
    """The corpus stage's file of one source-language translation's train verses."""
    return f"train.source.{code}.txt"


def eval_file(split: str, texts: str) -> str:
    """The corpus stage's file of evaluation texts: ``<split>.<target|source>.txt``, one
    language's of a run of several (``target:<lang>`` -> ``<split>.target.<lang>.txt``), or an
    evaluation set's (``texts`` = ``eval:<name>``, any split)."""
    if texts.startswith("eval:"):
        from transfer.corpus.eval_sets import eval_set_file

        return eval_set_file(texts.removeprefix("eval:"))
    return language_eval_file(split, texts)


#: Evaluation texts kept from a user corpus's dev/test split (the first ones in hash
#: order): a bounded sample at any corpus size (eval_texts default 300; a larger eval_texts
#: or curve_texts scores at most this many).
MAX_EVAL_TEXTS = 10_000


def read_lines(path: Path, limit: int | None = None) -> list[str]:
    """The first ``limit`` lines (all when None), read no further than that: a bounded
    sample of a corpus file of any size."""
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in itertools.islice(handle, limit)]


def iter_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\n")


Sections = list[tuple[str, int]]  # (part name, lines) in file order


def corpus_record(corpus_dir: Path) -> dict[str, Any]:
    """The corpus stage's record: its parameters, counts and sections."""
    return json.loads((corpus_dir / "corpus.json").read_text())


def corpus_sections(corpus_dir: Path, filename: str) -> Sections:
    """Which lines of ``train.txt`` or ``parallel.train.tsv`` came from which part:
    ``bible:<code>`` and ``file:<i>`` (target text), ``bible:<source>-<target>`` and
    ``parallel:<i>`` (pairs)."""
    return [(name, int(n)) for name, n in corpus_record(corpus_dir)["sections"][filename]]


def iter_sections(corpus_dir: Path, filename: str, limit: Callable[[str], int | None]) -> Iterator[str]:
    """The lines of a sectioned corpus file, at most ``limit(section)`` of each section
    (None: all), in file order."""
    # only "\n" ends a line here, as the corpus stage counted them ("\r" may be inside a text)
    with open(corpus_dir / filename, encoding="utf-8", newline="\n") as handle:
        for name, n in corpus_sections(corpus_dir, filename):
            cap = limit(name)
            for i, line in enumerate(itertools.islice(handle, n)):
                if cap is None or i < cap:
                    yield line.removesuffix("\n")


def train_pairs(corpus_dir: Path, max_pairs: int | None = None) -> list[tuple[str, str]]:
    """The train sentence pairs (source, target) the corpus stage wrote, the first
    ``max_pairs`` of each source translation or parallel file when given."""
    pairs = []
    for line in iter_sections(corpus_dir, PARALLEL_TRAIN, lambda _: max_pairs):
        source, target = line.split("\t")
        pairs.append((source, target))
    return pairs


def train_pair_languages(corpus_dir: Path, max_pairs: int | None = None) -> list[str | None]:
    """The target language of each row :func:`train_pairs` returns (the same caps): a run of
    several languages names each section ``<part>@<lang>``; a run of one gives None."""
    languages: list[str | None] = []
    for name, n in corpus_sections(corpus_dir, PARALLEL_TRAIN):
        language = name.rpartition("@")[2] if "@" in name else None
        languages += [language] * (n if max_pairs is None else min(n, max_pairs))
    return languages


def _hash_order(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@builder("corpus")
def build_corpus(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Split by verse key (Bible) or document hash (files) into train/dev/test files; the
    ``*.target.txt``/``*.source.txt`` files hold the first translation's held-out verses and
    the same verses in the source language, in a stable hash order for evaluation."""
    from transfer.corpus.bible import read_verses
    from transfer.corpus.normalization import normalizer
    from transfer.corpus.splits import SplitFractions

    p = spec.params
    norm = normalizer(p.get("normalization", "none"))
    fractions = SplitFractions(dev=p["dev_fraction"], test=p["test_fraction"])
    if p.get("languages"):  # several target languages: each split on its own, train text sampled
        from transfer.corpus.many_languages import write_languages

        sections, stats, files_used = write_languages(p, out, fractions, norm, spec.runtime.get("parallel_max_line_chars"),
                                                      write_target=_write_target, write_parallel=_write_parallel)
    else:
        sections, stats, files_used = _write_target(p, out, fractions, norm)
        sections[PARALLEL_TRAIN], stats["parallel"] = _write_parallel(
            p, fractions, out / PARALLEL_TRAIN, spec.runtime.get("parallel_max_line_chars"), norm)
    for code in p.get("source_train_bible", []):
        texts = [norm(v.text) for v in read_verses(code, "train", fractions=fractions)]
        (out / source_train_file(code)).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        stats["train"][f"source_texts:{code}"] = len(texts)
    for eval_set in p.get("eval_sets", []):
        from transfer.corpus.eval_sets import eval_set_file
        from transfer.evaluate.texts import read_eval_texts

        texts = [norm(t) for t in read_eval_texts(eval_set["path"], max_texts=MAX_EVAL_TEXTS).texts]
        (out / eval_set_file(eval_set["name"])).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        stats.setdefault("eval_sets", {})[eval_set["name"]] = len(texts)
    write_json(out / "corpus.json", {"params": p, "stats": stats, "files": files_used, "sections": sections})


def _write_target(p: dict[str, Any], out: Path, fractions: SplitFractions, norm: Callable[[str], str],
                  language: str | None = None) -> tuple[dict[str, Sections], dict[str, Any], dict[str, Any]]:
    """One target language's text: ``{train,dev,test}.txt`` and the evaluation files (of
    ``language`` in a run of several: ``train.<language>.txt``, ``test.target.<language>.txt``);
    its sections, counts and the files each ``target_files`` entry stood for."""
    from transfer.corpus.bible import read_verses
    from transfer.corpus.readers import corpus_files, format_name, iter_documents
    from transfer.corpus.splits import SPLITS, document_key, split_of

    boundary = p.get("document_boundary", "line")
    # which files each entry stood for (a folder's in the order read): the record says what was used
    files_used = {f"file:{i}": [{"path": str(f), "format": format_name(f)} for f in corpus_files(path)]
                  for i, path in enumerate(p["target_files"])}
    stats: dict[str, Any] = {split: {"documents": 0, "bytes": 0} for split in SPLITS}
    train_parts: Sections = []
    with ExitStack() as stack:
        # one pass over each file, routing every document to its split: a compressed corpus of
        # gigabytes is decompressed once, not once per split
        handles = {split: stack.enter_context(open(out / split_file(split, language), "w", encoding="utf-8"))
                   for split in SPLITS}

        def write(split: str, text: str) -> None:
            handles[split].write(text + "\n")
            stats[split]["documents"] += 1
            stats[split]["bytes"] += len(text.encode())

        for code in p["target_bible"]:
            for split in SPLITS:
                verses = read_verses(code, split, fractions=fractions)
                for verse in verses:
                    write(split, norm(verse.text))
                if split == "train":
                    train_parts.append((f"bible:{code}", len(verses)))
        for i, path in enumerate(p["target_files"]):
            n_lines = 0
            for doc in iter_documents(path, p["text_field"], boundary):
                doc = norm(doc)  # before the split key: both forms of a text land in one split
                split = split_of(document_key(doc), fractions)
                write(split, doc)
                if split == "train":
                    # a JSON or Parquet text, or a blank-line document, may hold line ends
                    n_lines += doc.count("\n") + 1
            train_parts.append((f"file:{i}", n_lines))
    sections: dict[str, Sections] = {split_file("train", language): train_parts}
    target, source = ("target", "source") if language is None else (f"target:{language}", f"source:{language}")
    for split in SPLITS:
        if stats[split]["documents"] == 0:
            raise CorpusError(
                f"target corpus{'' if language is None else f' of {language!r}'} (bible={p['target_bible']}, "
                f"files={p['target_files']}) has no "
                f"{split} documents: the corpus is empty or too small to split"
            )
    for split in SPLITS:
        if split == "train":
            continue
        # evaluation texts: first target source, ordered by a stable hash of the key
        if p["target_bible"]:
            verses = read_verses(p["target_bible"][0], split, fractions=fractions)
            keyed = sorted(((v.key, norm(v.text)) for v in verses), key=lambda kv: _hash_order(kv[0]))
            target_by_key = dict(keyed)
            (out / eval_file(split, target)).write_text("".join(t + "\n" for _, t in keyed))
            if p["source_bible"]:
                by_key = {v.key: norm(v.text) for v in read_verses(p["source_bible"][0], split, fractions=fractions)}
                lines = [by_key[k] for k, _ in keyed if k in by_key]
                (out / eval_file(split, source)).write_text("".join(t + "\n" for t in lines))
                stats[split]["source_eval_texts"] = len(lines)
            stats[split]["target_eval_texts"] = len(target_by_key)
        else:
            # the first MAX_EVAL_TEXTS of the split sorted by hash, holding no more than those
            docs = heapq.nsmallest(MAX_EVAL_TEXTS, iter_lines(out / split_file(split, language)), key=_hash_order)
            (out / eval_file(split, target)).write_text("".join(d + "\n" for d in docs))
            stats[split]["target_eval_texts"] = len(docs)
    return sections, stats, files_used


def _write_parallel(p: dict[str, Any], fractions: SplitFractions, path: Path,
                    max_chars: int | None, norm: Callable[[str], str]) -> tuple[Sections, dict[str, int]]:
    """Train sentence pairs (source TAB target): the user's parallel files, split by the
    pair's text, else the Bible's verse pairs of each source translation with the first
    target translation, split by verse key (held out in every translation alike)."""
    from transfer.corpus.bible import verse_pairs
    from transfer.corpus.parallel_files import DEFAULT_MAX_CHARS, ParallelInput, iter_pairs
    from transfer.corpus.splits import pair_key, split_of

    parts: Sections = []
    counts = {"train": 0, "dev": 0, "test": 0} if p.get("parallel") else {"train": 0}
    with open(path, "w", encoding="utf-8") as handle:
        if p.get("parallel"):
            for i, entry in enumerate(p["parallel"]):
                n = 0
                for source, target in iter_pairs(ParallelInput.from_dict(entry), max_chars=max_chars or DEFAULT_MAX_CHARS):
                    source, target = norm(source), norm(target)
                    split = split_of(pair_key(source, target), fractions)
                    counts[split] += 1
                    if split == "train":
                        handle.write(f"{source}\t{target}\n")
                        n += 1
                parts.append((f"parallel:{i}", n))
            if not counts["train"]:
                raise CorpusError(f"parallel files {[e['entry'] for e in p['parallel']]}: no train pairs "
                                  f"(too few pairs to split: {counts})")
        elif p["target_bible"]:
            target = p["target_bible"][0]
            for code in p.get("source_train_bible", []):
                rows = verse_pairs(code, target, "train", fractions=fractions)
                for _, source, text in rows:  # verse text is whitespace-normalized: no tabs
                    handle.write(f"{norm(source)}\t{norm(text)}\n")
                parts.append((f"bible:{code}-{target}", len(rows)))
                counts["train"] += len(rows)
    return parts, counts
