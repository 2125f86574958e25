"""The split is decided once, by the corpus stage: fastText, dictionary induction and
trans-tokenization read only what it wrote, so with non-default dev/test fractions no
held-out verse reaches their training, and their keys follow the fractions. With the
default fractions they train on exactly the texts they always did (same verses, same order).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import BIBLE, vector_stages
from transfer.corpus.bible import read_texts, read_verses, verse_pairs
from transfer.corpus.readers import iter_documents, split_documents
from transfer.corpus.splits import SplitFractions, split_of
from transfer.engine.cache import StageCache
from transfer.engine.stages import execute, read_json
from transfer.init.links import parallel_pairs
from transfer.settings.config import AdaptConfig
from transfer.vectors.stage import (
    fasttext_lines,
    induced_parallel_pairs,
)

SKEWED = SplitFractions(dev=0.3, test=0.2)
def _held_out_only(code: str, fractions: SplitFractions) -> set[str]:
    """Texts of ``code``'s dev/test verses that no train verse shares (a repeated verse text
    in train is not a leak)."""
    verses = read_verses(code)
    train = {v.text for v in verses if split_of(v.key, fractions) == "train"}
    return {v.text for v in verses if split_of(v.key, fractions) != "train"} - train


def test_held_out_verses_never_reach_vectors_alignment_or_trans_tokenization(tmp_path: Path) -> None:
    cfg = AdaptConfig(**BIBLE, dev_fraction=SKEWED.dev, test_fraction=SKEWED.test, vector_max_verses=700,
                      parallel_max_pairs=500, cache_dir=tmp_path / "cache")
    corpus, source, target, align = vector_stages(cfg)
    held = {code: _held_out_only(code, SKEWED) for code in ("k", "4", "e")}
    assert all(len(texts) > 1000 for texts in held.values())

    source_lines = list(fasttext_lines(source))
    assert source_lines == read_texts("k", "train", fractions=SKEWED)[:700] + read_texts(
        "4", "train", fractions=SKEWED)[:700]
    assert not set(source_lines) & (held["k"] | held["4"])
    target_lines = list(fasttext_lines(target))
    assert target_lines == read_texts("e", "train", fractions=SKEWED)[:700]
    assert not set(target_lines) & held["e"]

    expected = [(s, t) for code in ("k", "4") for _, s, t in verse_pairs(code, "e", "train", fractions=SKEWED)[:500]]
    induced = induced_parallel_pairs(align)
    # the links stage aligns exactly parallel_pairs(corpus, parallel_max_pairs); trans-tokenization
    # and combined read only its counts (transfer/init/links.py)
    for pairs in (induced, parallel_pairs(corpus.path, 500)):
        assert pairs == expected
        assert not {s for s, _ in pairs} & (held["k"] | held["4"])
        assert not {t for _, t in pairs} & held["e"]

    # the builder trains on exactly those lines (its record counts the lines with words)
    built, _ = execute(source, StageCache(cfg.cache_dir))
    assert read_json(built.file("fasttext.json"))["corpus"]["lines"] == len(source_lines)


def test_default_fractions_train_on_the_same_texts_as_before(tmp_path: Path, tiny_corpus: Path) -> None:
    """The selections the stages made before the corpus stage wrote them, recomputed."""
    cfg = AdaptConfig(**{**BIBLE, "target_bible": ["e", "s"]}, target_files=[str(tiny_corpus)],
                      cache_dir=tmp_path / "cache")
    corpus, source, target, align = vector_stages(cfg)
    assert list(fasttext_lines(source)) == read_texts("k", "train") + read_texts("4", "train")
    old_target = read_texts("e", "train") + read_texts("s", "train") + list(
        split_documents(iter_documents(tiny_corpus), "train"))
    assert list(fasttext_lines(target)) == old_target
    old_pairs = [(s, t) for code in ("k", "4") for _, s, t in verse_pairs(code, "e", "train")]
    assert induced_parallel_pairs(align) == old_pairs
    assert parallel_pairs(corpus.path) == old_pairs

    capped = cfg.model_copy(update={"vector_max_verses": 300, "parallel_max_pairs": 200})
    corpus, source, target, align = vector_stages(capped)
    assert list(fasttext_lines(source)) == read_texts("k", "train")[:300] + read_texts("4", "train")[:300]
    # the cap is per Bible translation; corpus files are read whole, as before
    assert list(fasttext_lines(target)) == (read_texts("e", "train")[:300] + read_texts("s", "train")[:300]
                                            + list(split_documents(iter_documents(tiny_corpus), "train")))
    capped_pairs = [(s, t) for code in ("k", "4") for _, s, t in verse_pairs(code, "e", "train")[:200]]
    assert induced_parallel_pairs(align) == capped_pairs
    assert parallel_pairs(corpus.path, 200) == capped_pairs


@pytest.mark.parametrize("strategy", ["wechsel", "trans_tokenization"])
def test_stage_keys_follow_the_split(tmp_path: Path, tiny_source: Path, strategy: str) -> None:
    from transfer.planning.plan import plan_adaptation

    def keys(**fractions: float) -> dict[str, str]:
        cfg = AdaptConfig(**BIBLE, source_model=str(tiny_source), strategy=strategy, train_steps=0,
                          cache_dir=tmp_path / "cache", **fractions)
        return {s.label: s.key for s in plan_adaptation(cfg, measure=False).stages}

    default, skewed = keys(), keys(dev_fraction=SKEWED.dev, test_fraction=SKEWED.test)
    labels = ["fasttext.source", "fasttext.target", "align", "init"] if strategy == "wechsel" else ["init"]
    assert set(labels) <= set(default)
    for label in labels:
        assert default[label] != skewed[label], label
