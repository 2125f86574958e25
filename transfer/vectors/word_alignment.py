"""Word alignment with eflomal, and a bilingual dictionary induced from it.

eflomal (Östling and Tiedemann, 2016, "Efficient word alignment with Markov Chain Monte
Carlo") aligns a parallel corpus with a Bayesian IBM/HMM/fertility model in both
directions. The two directions are symmetrized with grow-diag-final-and (Koehn et al.,
2005): start from the intersection, grow into neighbouring union links, then add union
links of still unaligned words. Trans-tokenization reuses :func:`align` on token sequences.

Dictionary induction keeps word pairs that are aligned often enough and make up a large
enough share of both words' links, plus identical strings (numbers, names) found on both
sides, as seeds for Procrustes when no dictionary exists.

Reproducibility: eflomal seeds its sampler from ``/dev/urandom`` and offers no seed, so
two runs differ slightly; ``seed`` is recorded but cannot fix that. The stage cache is what
makes a pipeline's result stable.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transfer.errors import AlignmentError

Link = tuple[int, int]


@dataclass
class Alignment:
    """Per sentence: forward links (source -> target model), reverse links and the
    symmetrized set; every link is (source index, target index)."""

    forward: list[list[Link]]
    reverse: list[list[Link]]
    links: list[list[Link]]
    symmetrization: str = "grow-diag-final-and"
    report: dict[str, object] = field(default_factory=dict)


def _parse_links(path: Path, n: int) -> list[list[Link]]:
    lines = path.read_text().splitlines()
    if len(lines) != n:
        raise AlignmentError(f"eflomal wrote {len(lines)} link lines for {n} sentence pairs")
    out = []
    for line in lines:
        links = []
        for item in line.split():
            i, j = item.split("-")
            links.append((int(i), int(j)))
        out.append(links)
    return out


def grow_diag_final_and(forward: Sequence[Link], reverse: Sequence[Link], n_src: int, n_tgt: int) -> list[Link]:
    """Symmetrize two directional alignments of one sentence pair."""
    fwd, rev = set(forward), set(reverse)
    union = fwd | rev
    result = fwd & rev
    src_aligned = {i for i, _ in result}
    tgt_aligned = {j for _, j in result}
    neighbours = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    added = True
    while added:
        added = False
        for i, j in sorted(result):
            for di, dj in neighbours:
                ni, nj = i + di, j + dj
                if not (0 <= ni < n_src and 0 <= nj < n_tgt) or (ni, nj) in result:
                    continue
                if (ni, nj) in union and (ni not in src_aligned or nj not in tgt_aligned):
                    result.add((ni, nj))
                    src_aligned.add(ni)
                    tgt_aligned.add(nj)
                    added = True
    for direction in (fwd, rev):  # final-and: both words still unaligned
        for i, j in sorted(direction):
            if i not in src_aligned and j not in tgt_aligned:
                result.add((i, j))
                src_aligned.add(i)
                tgt_aligned.add(j)
    return sorted(result)


def _symmetrize(fwd: Sequence[Link], rev: Sequence[Link], n_src: int, n_tgt: int, how: str) -> list[Link]:
    if how == "intersection":
        return sorted(set(fwd) & set(rev))
    if how == "union":
        return sorted(set(fwd) | set(rev))
    return grow_diag_final_and(fwd, rev, n_src, n_tgt)


def align(
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
    *,
    seed: int = 0,
    model: Literal[1, 2, 3] = 3,
    symmetrization: Literal["grow-diag-final-and", "intersection", "union"] = "grow-diag-final-and",
    rel_iterations: float = 1.0,
    n_samplers: int = 3,
) -> Alignment:
    """Align tokenized sentence pairs with eflomal (both directions) and symmetrize.

    ``model``: 1 = IBM1, 2 = HMM, 3 = HMM + fertility (eflomal's default). Empty
    sentences are allowed (no links). ``seed`` is recorded only (see module docstring)."""
    from transfer.vectors.eflomal_process import run_eflomal

    if len(source) != len(target):
        raise AlignmentError(f"parallel corpus: {len(source)} source sentences but {len(target)} target sentences")
    if not source:
        raise AlignmentError("parallel corpus is empty")
    if symmetrization not in ("grow-diag-final-and", "intersection", "union"):
        raise AlignmentError(f"unknown symmetrization {symmetrization!r}")
    for side, sents in (("source", source), ("target", target)):
        for k, sent in enumerate(sents):
            for tok in sent:
                if not tok or any(ch.isspace() for ch in tok):
                    raise AlignmentError(f"{side} sentence {k}: token {tok!r} is empty or contains whitespace")
    src_lines = [" ".join(s) + "\n" for s in source]
    tgt_lines = [" ".join(t) + "\n" for t in target]
    with tempfile.TemporaryDirectory(prefix="eflomal-") as tmp:
        fwd_path, rev_path = Path(tmp) / "fwd", Path(tmp) / "rev"
        run_eflomal(src_lines, tgt_lines, fwd_path, rev_path, model=model, n_samplers=n_samplers,
                    rel_iterations=rel_iterations)
        forward = _parse_links(fwd_path, len(source))
        reverse = _parse_links(rev_path, len(source))
    links = [
        _symmetrize(f, r, len(s), len(t), symmetrization)
        for f, r, s, t in zip(forward, reverse, source, target)
    ]
    report = {"sentences": len(source), "source_tokens": sum(map(len, source)),
              "target_tokens": sum(map(len, target)), "links": sum(map(len, links)),
              "model": model, "seed_recorded": seed}
    return Alignment(forward, reverse, links, symmetrization, report)


@dataclass
class InducedDictionary:
    pairs: list[tuple[str, str]]
    report: dict[str, Any]  # counts; a dictionary of several languages also each one's


def induce_dictionary_report(
    source_sents: Sequence[Sequence[str]],
    target_sents: Sequence[Sequence[str]],
    alignment: Alignment,
    *,
    min_count: int = 5,
    min_ratio: float = 0.3,
    max_per_word: int = 1,
    identical_min_count: int = 2,
    with_identical: bool = True,
) -> InducedDictionary:
    """Word pairs from symmetrized links: ``count(s, t) >= min_count`` and
    ``count(s, t) / links(s) >= min_ratio`` and ``count(s, t) / links(t) >= min_ratio``;
    at most ``max_per_word`` targets per source word (most frequent first). Identical
    strings seen ``identical_min_count`` times on both sides (capitalized or with a digit:
    names, numbers) are added as seeds. Pairs come sorted by count, most reliable first,
    with counts of what was kept."""
    if len(alignment.links) != len(source_sents) or len(source_sents) != len(target_sents):
        raise AlignmentError(f"alignment has {len(alignment.links)} sentences, corpus "
                             f"{len(source_sents)} / {len(target_sents)}")
    if min_count < 1 or not 0 <= min_ratio <= 1:
        raise AlignmentError(f"min_count={min_count} must be >= 1 and min_ratio={min_ratio} in [0, 1]")
    pair_counts: Counter[tuple[str, str]] = Counter()
    src_links: Counter[str] = Counter()
    tgt_links: Counter[str] = Counter()
    for src, tgt, links in zip(source_sents, target_sents, alignment.links):
        for i, j in links:
            s, t = src[i], tgt[j]
            pair_counts[(s, t)] += 1
            src_links[s] += 1
            tgt_links[t] += 1
    kept: list[tuple[int, tuple[str, str]]] = []
    per_word: Counter[str] = Counter()
    for (s, t), c in pair_counts.most_common():
        if c < min_count:
            break
        if c / src_links[s] < min_ratio or c / tgt_links[t] < min_ratio:
            continue
        if per_word[s] >= max_per_word:
            continue
        per_word[s] += 1
        kept.append((c, (s, t)))
    n_aligned = len(kept)
    n_identical = 0
    if with_identical:
        src_freq = Counter(w for sent in source_sents for w in sent)
        tgt_freq = Counter(w for sent in target_sents for w in sent)
        have = {p for _, p in kept}
        for word, c in src_freq.items():
            # names and numbers only: identical lowercase function words are false friends
            name_or_number = word[:1].isupper() or any(ch.isdigit() for ch in word)
            if (name_or_number and c >= identical_min_count and (word, word) not in have
                    and tgt_freq.get(word, 0) >= identical_min_count):
                kept.append((min(c, tgt_freq[word]), (word, word)))
                n_identical += 1
    kept.sort(key=lambda item: -item[0])
    pairs = [p for _, p in kept]
    return InducedDictionary(pairs, {"candidate_pairs": len(pair_counts), "aligned_pairs": n_aligned,
                                     "identical_pairs": n_identical, "pairs": len(pairs)})


def induce_dictionary_by_language(
    source_sents: Sequence[Sequence[str]],
    target_sents: Sequence[Sequence[str]],
    alignment: Alignment,
    languages: Sequence[str | None],
    **options: Any,
) -> InducedDictionary:
    """:func:`induce_dictionary_report` on each target language's sentences apart (``languages``:
    each sentence's; all None: one language), the pairs of every language together. A run of
    several target languages aligns all their pairs in one eflomal run, but its dictionary must
    be read per language: an English word links to a word of each language, so pooled, none
    holds ``min_ratio`` of its links once there are four languages or more, and the dictionary
    keeps almost nothing but names (526 pairs from 75,000 verse pairs of five languages)."""
    if len(languages) != len(source_sents):
        raise AlignmentError(f"{len(languages)} languages for {len(source_sents)} sentences")
    groups: dict[str | None, list[int]] = {}
    for i, language in enumerate(languages):
        groups.setdefault(language, []).append(i)
    if len(groups) <= 1:
        return induce_dictionary_report(source_sents, target_sents, alignment, **options)
    pairs: dict[tuple[str, str], None] = {}
    totals: Counter[str] = Counter()
    per_language: dict[str, dict[str, int]] = {}
    for language, rows in groups.items():
        part = Alignment([alignment.forward[i] for i in rows], [alignment.reverse[i] for i in rows],
                         [alignment.links[i] for i in rows], alignment.symmetrization)
        found = induce_dictionary_report([source_sents[i] for i in rows], [target_sents[i] for i in rows], part,
                                         **options)
        pairs.update(dict.fromkeys(found.pairs))
        per_language[str(language)] = found.report
        totals.update(found.report)
    report: dict[str, Any] = {**totals, "pairs": len(pairs), "per_language": per_language}
    return InducedDictionary(list(pairs), report)
