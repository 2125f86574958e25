"""Stage ``corpus``: split every text the run is given into train/dev/test files once; every
later stage reads only what this stage wrote (``read_lines``/``iter_lines``, ``eval_file``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer.errors import CorpusError
from transfer.stages import BuildContext, StageSpec, builder, write_json

if TYPE_CHECKING:
    from transfer.config import AdaptConfig


def corpus_spec(cfg: AdaptConfig) -> StageSpec:
    from transfer.corpus.bible import bible_content_hash
    from transfer.corpus.readers import corpus_content_hash

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


def eval_file(split: str, texts: str) -> str:
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
def build_corpus(spec: StageSpec, out: Path, context: BuildContext) -> None:
    """Split by verse key (Bible) or document hash (files) into train/dev/test files; the
    ``*.target.txt``/``*.source.txt`` files hold the first translation's held-out verses and
    the same verses in the source language, in a stable hash order for evaluation."""
    from transfer.corpus.bible import read_verses
    from transfer.corpus.readers import iter_documents, split_documents
    from transfer.corpus.splits import SPLITS, SplitFractions

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
            (out / eval_file(split, "target")).write_text("".join(t + "\n" for _, t in keyed))
            if p["source_bible"]:
                source = {v.key: v.text for v in read_verses(p["source_bible"][0], split, fractions=fractions)}
                lines = [source[k] for k, _ in keyed if k in source]
                (out / eval_file(split, "source")).write_text("".join(t + "\n" for t in lines))
                stats[split]["source_eval_texts"] = len(lines)
            stats[split]["target_eval_texts"] = len(target_by_key)
        else:
            docs = read_lines(out / f"{split}.txt")
            docs.sort(key=_hash_order)
            (out / eval_file(split, "target")).write_text("".join(d + "\n" for d in docs))
            stats[split]["target_eval_texts"] = len(docs)
    write_json(out / "corpus.json", {"params": p, "stats": stats})
