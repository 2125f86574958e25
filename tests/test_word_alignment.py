"""eflomal word alignment, symmetrization and dictionary induction on a tiny corpus."""

from __future__ import annotations

import random

import pytest

from transfer.errors import AlignmentError
from transfer.vectors.word_alignment import align, grow_diag_final_and, induce_dictionary_report

LEXICON = {"house": "Haus", "dog": "Hund", "sees": "sieht", "the": "das", "big": "große",
           "small": "kleine", "Moses": "Mose", "child": "Kind", "water": "Wasser", "bread": "Brot"}


def _corpus(n: int = 300, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    """Word-for-word translations with a target-side reordering of two adjacent words,
    plus numbers that stay identical (seeds)."""
    rng = random.Random(seed)
    words = list(LEXICON)
    source, target = [], []
    for k in range(n):
        sent = rng.sample(words, 5) + [str(k % 7)]
        trans = [LEXICON.get(w, w) for w in sent]
        trans[0], trans[1] = trans[1], trans[0]
        source.append(sent)
        target.append(trans)
    return source, target


def test_align_and_induce_recover_the_lexicon():
    source, target = _corpus()
    alignment = align(source, target, seed=0)
    assert len(alignment.links) == len(source) == len(alignment.forward) == len(alignment.reverse)
    for links, s, t in zip(alignment.links, source, target):
        assert all(0 <= i < len(s) and 0 <= j < len(t) for i, j in links)
    correct = sum(LEXICON.get(s[i], s[i]) == t[j] for links, s, t in zip(alignment.links, source, target)
                  for i, j in links)
    assert correct / sum(map(len, alignment.links)) > 0.9
    pairs = induce_dictionary_report(source, target, alignment, min_count=5, min_ratio=0.3).pairs
    found = dict(pairs)
    assert sum(found.get(en) == de for en, de in LEXICON.items()) >= 9
    assert ("3", "3") in pairs  # identical numbers become seeds
    stricter = induce_dictionary_report(source, target, alignment, min_count=10_000, with_identical=False).pairs
    assert stricter == []


def test_grow_diag_final_and():
    forward = [(0, 0), (1, 1), (2, 1)]
    reverse = [(0, 0), (1, 1), (2, 2)]
    # intersection {(0,0),(1,1)}, then grows into the union links (2,1) and (2,2), which
    # neighbour (1,1) and cover a still unaligned source or target word
    assert grow_diag_final_and(forward, reverse, 3, 3) == [(0, 0), (1, 1), (2, 1), (2, 2)]
    # no intersection: final-and adds links whose two words are both unaligned
    assert grow_diag_final_and([(0, 1)], [(1, 0)], 2, 2) == [(0, 1), (1, 0)]


def test_bad_parallel_input():
    with pytest.raises(AlignmentError, match="2 source sentences but 1 target"):
        align([["a"], ["b"]], [["x"]])
    with pytest.raises(AlignmentError, match="empty"):
        align([], [])
    with pytest.raises(AlignmentError, match="whitespace"):
        align([["a b"]], [["x"]])


def test_the_dictionary_of_several_languages_is_read_per_language() -> None:
    """'god' links to a different word in each of four languages: pooled, each pair holds a
    quarter of its links (under min_ratio 0.3) and none is kept; read per language, each
    language keeps its own."""
    from transfer.vectors.word_alignment import (
        Alignment,
        induce_dictionary_by_language,
        induce_dictionary_report,
    )

    words = {"sw": "mungu", "id": "allah", "tr": "tanrı", "pl": "bóg"}
    source, target, links, languages = [], [], [], []
    for lang, word in words.items():
        for _ in range(6):
            source.append(["god", "said"])
            target.append([word, f"said_{lang}"])
            links.append([(0, 0), (1, 1)])
            languages.append(lang)
    alignment = Alignment(links, links, links)
    pooled = induce_dictionary_report(source, target, alignment, min_count=3, min_ratio=0.3, with_identical=False)
    assert not [p for p in pooled.pairs if p[0] == "god"]
    found = induce_dictionary_by_language(source, target, alignment, languages, min_count=3, min_ratio=0.3,
                                          with_identical=False)
    assert {("god", word) for word in words.values()} <= set(found.pairs)
    assert found.report["per_language"]["sw"]["pairs"] == 2 and found.report["pairs"] == 8
    # one language (or none named): exactly the pooled reading
    single = induce_dictionary_by_language(source, target, alignment, [None] * len(source), min_count=3,
                                           min_ratio=0.3, with_identical=False)
    assert single.pairs == pooled.pairs


def test_each_train_pair_knows_its_language(tmp_path) -> None:
    """A run of several languages names its pair sections ``<part>@<lang>``; the languages
    follow train_pairs' rows under the same cap."""
    import json

    from transfer.corpus.stage import PARALLEL_TRAIN, train_pair_languages, train_pairs

    rows = [f"s{i}\tt{i}\n" for i in range(7)]
    (tmp_path / PARALLEL_TRAIN).write_text("".join(rows))
    sections = [["bible:k-h@sw", 3], ["bible:4-h@sw", 2], ["parallel:0@id", 2]]
    (tmp_path / "corpus.json").write_text(json.dumps({"sections": {PARALLEL_TRAIN: sections}}))
    assert train_pair_languages(tmp_path) == ["sw"] * 5 + ["id"] * 2
    capped = train_pair_languages(tmp_path, 2)
    assert capped == ["sw", "sw", "sw", "sw", "id", "id"] and len(capped) == len(train_pairs(tmp_path, 2))
    (tmp_path / "corpus.json").write_text(json.dumps({"sections": {PARALLEL_TRAIN: [["bible:k-e", 7]]}}))
    assert train_pair_languages(tmp_path) == [None] * 7
