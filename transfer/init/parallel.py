"""A parallel corpus seen through two tokenizers, and word alignments turned into token links.

Trans-tokenization (Remy et al., 2024, "Trans-Tokenization and Cross-lingual Vocabulary
Transfers") tokenizes every (source sentence, target sentence) pair with the source and
the target tokenizer, aligns the two *token* sequences with a statistical word aligner,
and counts how often target token t is linked to source token s: c(t, s). This module
does the tokenizing (``tokenize_parallel``), writes the token sequences in the form an
aligner reads (``aligner_words``) and counts the links (``count_links``); the weights
p(s|t) and the embeddings are the strategy's business
(``transfer.init.strategies.trans_tokenization``).

Why token level (not word level with the links spread over each word's tokens): the
aligner then sees exactly the units that need an embedding, so a German suffix piece can
link to the English piece it corresponds to instead of inheriting the meaning of the
whole English word; it works for every tokenizer family without character offsets; and
with vocabularies trained on the language (about 1.2-1.3 tokens per word) the token
sequences are barely longer than the word sequences, so the aligner's job stays the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from transformers import PreTrainedTokenizerBase

from transfer.errors import ParallelCorpusError
from transfer.tokenizer.special_tokens import special_token_ids

_TOKENIZE_CHUNK = 2048


@dataclass(frozen=True)
class TokenizedParallel:
    """Token-id sequences of both sides, pair by pair (special tokens removed).

    Pairs where either side tokenizes to nothing are dropped (an aligner cannot use them);
    ``n_dropped`` says how many."""

    source_ids: list[list[int]]
    target_ids: list[list[int]]
    n_dropped: int = 0

    def __len__(self) -> int:
        return len(self.source_ids)


def check_pairs(pairs: object, *, name: str = "parallel") -> list[tuple[str, str]]:
    """The pairs as a list of (source, target) strings, or a ``ParallelCorpusError``.

    Accepts (source, target) pairs and the (key, source, target) triples of
    ``transfer.corpus.bible.verse_pairs``."""
    if pairs is None:
        raise ParallelCorpusError(f"{name}: no parallel corpus given")
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
        raise ParallelCorpusError(
            f"{name}: expected a sequence of (source sentence, target sentence) pairs, "
            f"got {type(pairs).__name__}"
        )
    out: list[tuple[str, str]] = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) not in (2, 3):
            raise ParallelCorpusError(
                f"{name}[{i}]: expected a (source, target) pair or a (key, source, target) "
                f"triple, got {pair!r:.80}"
            )
        source, target = pair[-2], pair[-1]
        if not isinstance(source, str) or not isinstance(target, str):
            raise ParallelCorpusError(f"{name}[{i}]: both sides must be strings, got {pair!r:.80}")
        out.append((source, target))
    if not out:
        raise ParallelCorpusError(f"{name}: the parallel corpus is empty")
    return out


def _encode(tok: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text without special tokens, tokenized in batches."""
    excluded = special_token_ids(tok)
    ids: list[list[int]] = []
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        chunk = list(texts[start : start + _TOKENIZE_CHUNK])
        encoded = tok(chunk, add_special_tokens=False)["input_ids"]
        ids.extend([i for i in row if i not in excluded] for row in encoded)
    return ids


def tokenize_parallel(
    pairs: Sequence[tuple[str, str]],
    source_tok: PreTrainedTokenizerBase,
    target_tok: PreTrainedTokenizerBase,
) -> TokenizedParallel:
    """Tokenize both sides of every pair with their own tokenizer."""
    source = _encode(source_tok, [s for s, _ in pairs])
    target = _encode(target_tok, [t for _, t in pairs])
    kept = [(s, t) for s, t in zip(source, target, strict=True) if s and t]
    return TokenizedParallel(
        source_ids=[s for s, _ in kept],
        target_ids=[t for _, t in kept],
        n_dropped=len(pairs) - len(kept),
    )


def aligner_words(tok: PreTrainedTokenizerBase, sequences: Sequence[Sequence[int]]) -> list[list[str]]:
    """Token sequences as whitespace-free strings for the aligner.

    The token's own string where it has no whitespace (readable, and eflomal's lowercasing
    pools case variants such as ``ĠThe``/``Ġthe``, which helps rare tokens), else a stand-in
    made from the id. Links come back as positions, so the strings only need to be stable."""
    strings = tok.convert_ids_to_tokens(list(range(len(tok))))
    words = [
        s if s and not any(ch.isspace() for ch in s) else f"<id{i}>"
        for i, s in enumerate(strings)
    ]
    return [[words[i] for i in row] for row in sequences]


def count_links(
    tokenized: TokenizedParallel,
    links: Sequence[Sequence[tuple[int, int]]],
    *,
    n_source: int,
    n_target: int,
) -> sp.csr_matrix:
    """c(t, s): how often target token t is linked to source token s, as a sparse
    (n_target x n_source) count matrix. ``links[k]`` holds (source position, target
    position) pairs of sentence pair k (Pharaoh ``i-j`` order)."""
    if len(links) != len(tokenized):
        raise ParallelCorpusError(
            f"alignment has {len(links)} sentence pairs, the tokenized corpus {len(tokenized)}"
        )
    rows: list[int] = []
    cols: list[int] = []
    for k, pair_links in enumerate(links):
        source, target = tokenized.source_ids[k], tokenized.target_ids[k]
        for i, j in pair_links:
            if not (0 <= i < len(source) and 0 <= j < len(target)):
                raise ParallelCorpusError(
                    f"alignment link {i}-{j} of pair {k} is outside its sentences "
                    f"({len(source)} source, {len(target)} target tokens)"
                )
            rows.append(target[j])
            cols.append(source[i])
    data = np.ones(len(rows), dtype=np.float64)
    counts = sp.coo_matrix(
        (data, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
        shape=(n_target, n_source),
    ).tocsr()
    counts.sum_duplicates()
    return counts
