"""Continue BPE training from an existing segmentation (vocabulary extension).

BPE (Sennrich et al., 2016) learns merges greedily: count adjacent symbol pairs over a
word-frequency table, merge the most frequent pair everywhere, repeat. The `tokenizers`
trainer always starts from characters, so it cannot resume from a pretrained model's
merges. This learner starts instead from the *source tokenizer's own segmentation* of each
target-language word: every merge it learns joins two tokens the source already produces,
and, appended after the source's merges (lowest priority), it applies exactly to the
segmentation the source would have produced - the old merges run first and never involve
a new token, so the two sets compose.

Pair counts are kept incrementally (only the words containing the merged pair are
recounted) with a lazy max-heap, so N merges over W distinct words cost about the number
of symbols touched, not N x W.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from transfer.errors import TokenizerBuildError

Pair = tuple[str, str]


@dataclass(frozen=True)
class LearnedMerge:
    """One learned merge: its two parts, the token it makes and its count when chosen."""

    left: str
    right: str
    token: str
    count: int


def concatenate(prefix: str = "") -> Callable[[str, str], str]:
    """How BPE spells a merge's result: the two parts joined, the right part without the
    continuing-subword ``prefix`` (as `tokenizers` builds merged tokens)."""
    cut = len(prefix)
    return lambda left, right: left + (right[cut:] if cut and right.startswith(prefix) else right)


def _pairs(symbols: Sequence[str]) -> list[Pair]:
    return list(itertools.pairwise(symbols))


def _apply(symbols: list[str], pair: Pair, token: str) -> list[str]:
    """Merge every non-overlapping occurrence of ``pair``, left to right (as BPE does)."""
    merged: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == pair[0] and symbols[i + 1] == pair[1]:
            merged.append(token)
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged


def learn_merges(
    segmented: Mapping[tuple[str, ...], int],
    n_merges: int,
    *,
    known: Collection[str],
    min_frequency: int = 2,
    join: Callable[[str, str], str] = concatenate(),
    mergeable: Callable[[str], bool] = lambda _: True,
) -> list[LearnedMerge]:
    """Learn up to ``n_merges`` merges on top of an existing segmentation.

    ``segmented`` maps each word's current tokens (the source's segmentation) to the
    word's frequency. A pair is a candidate when both parts are ``mergeable`` (byte-fallback
    pieces are not: their concatenation spells nothing) and its result is not ``known``
    (every merge adds one new token; the source's tokens and added tokens are never made
    again). The most frequent candidate wins, ties broken by the pair's strings so the
    result does not depend on dictionary order; learning stops early when the best count
    falls below ``min_frequency``.
    """
    if not isinstance(n_merges, int) or n_merges < 0:
        raise TokenizerBuildError(f"added_tokens={n_merges!r} must be an integer >= 0")
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise TokenizerBuildError(f"min_frequency={min_frequency!r} must be an integer >= 1")
    words = [list(symbols) for symbols in segmented]
    freqs = list(segmented.values())
    counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)  # pair -> words that contain it
    taken = set(known)

    def candidate(pair: Pair) -> bool:
        return mergeable(pair[0]) and mergeable(pair[1])

    for index, symbols in enumerate(words):
        for pair in _pairs(symbols):
            if candidate(pair):
                counts[pair] += freqs[index]
                where[pair].add(index)
    heap = [(-count, pair) for pair, count in counts.items()]
    heapq.heapify(heap)

    learned: list[LearnedMerge] = []
    while heap and len(learned) < n_merges:
        negative, pair = heapq.heappop(heap)
        count = counts.get(pair, 0)
        if count != -negative:  # stale entry: the pair's count changed since it was pushed
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        if count < min_frequency:
            break
        token = join(*pair)
        if token in taken:
            continue  # dropped for good: its result exists already
        taken.add(token)
        learned.append(LearnedMerge(pair[0], pair[1], token, count))
        changed: set[Pair] = set()
        for index in where.pop(pair, ()):
            before = words[index]
            after = _apply(before, pair, token)
            for old in _pairs(before):
                if candidate(old):
                    counts[old] -= freqs[index]
                    changed.add(old)
            for new in _pairs(after):
                if candidate(new):
                    counts[new] += freqs[index]
                    where[new].add(index)
                    changed.add(new)
            words[index] = after
        counts.pop(pair, None)
        for other in changed:
            if other != pair and counts.get(other, 0) > 0:
                heapq.heappush(heap, (-counts[other], other))
    return learned
