"""``fvt``: Fast Vocabulary Transfer (Gee et al., 2022).

Each target token is split by the *source* tokenizer into source tokens, and its row is
the mean of their rows (a piece that occurs twice counts twice). It is the zero-shot
baseline of ZeTT and tokenkit and mergekit's ``subword`` method: it needs no data beyond
the two tokenizers, and on a byte-level source every target token decomposes, so no row
falls back.

The split runs on the source tokenizer's *model* (BPE, Unigram or WordPiece), not on its
whole pipeline, so that word boundaries stay what the target token says: a target
``Ġhaus`` (starts a word) is split as `` haus`` and a target ``haus`` (inside a word) as
``haus``, whatever the source's pre-tokenizer or SentencePiece's dummy prefix would add.
Per source family:

- byte-level BPE: the token's bytes in the GPT-2 alphabet; always decomposes;
- SentencePiece (BPE with byte fallback, Unigram): the text with ``▁`` for spaces (and
  before a word-initial token); a target token that is not whole UTF-8 (a byte-level
  token holding part of a character) is split into the source's ``<0xNN>`` byte tokens;
  the unknown piece never counts;
- WordPiece: the word; a word-internal target token is split into continuation pieces
  (``##``) when the source has them, else into the word-initial pieces of its text (the
  closest the source has); ``[UNK]`` never counts, so a character the source lacks
  entirely (e.g. ``##ß`` for an English source) leaves the token to the mean.

Tokens with no source piece at all fall back to the mean row (``fallback_mean_rows``),
and the output head and its bias get the same weights as the input matrix.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import scipy.sparse as sp
from transformers import PreTrainedTokenizerBase

from transfer.init.base import InitReport, StrategyInputs, TargetEmbeddings, map_source_matrices
from transfer.init.registry import register
from transfer.init.strategies.mean import (
    DEFAULT_COVARIANCE_SCALE,
    check_fallback_params,
)
from transfer.init.weighted import weighted_rule
from transfer.tokenizer.special_tokens import (
    BYTE_LEVEL,
    SENTENCEPIECE,
    WORDPIECE,
    FamilyInfo,
    byte_to_unicode,
    fallback_byte,
    model_vocab,
    special_token_ids,
    token_surface,
    tokenizer_family,
)


class _SourceSplitter:
    """Splits (surface bytes, starts a word) into source token ids with the source's model."""

    def __init__(self, tok: PreTrainedTokenizerBase) -> None:
        backend = getattr(tok, "backend_tokenizer", None)
        self.model = backend.model if backend is not None else None
        self.tok = tok
        self.info: FamilyInfo = tokenizer_family(tok)
        vocab = model_vocab(tok)
        self.vocab = vocab
        self.excluded = special_token_ids(tok) | ({tok.unk_token_id} if tok.unk_token_id is not None else set())
        self.byte_ids = {}
        for token, idx in vocab.items():
            value = fallback_byte(token)
            if value is not None:
                self.byte_ids.setdefault(value, idx)
        self.alphabet = byte_to_unicode()

    def split(self, surface: bytes, starts_word: bool) -> list[int]:
        family, marker = self.info.family, self.info.marker
        if self.model is None:  # a slow tokenizer: its whole pipeline is all there is
            ids = self.tok.encode(surface.decode("utf-8", "replace"), add_special_tokens=False)
            return [i for i in ids if i not in self.excluded]
        if family == BYTE_LEVEL:
            raw = (b" " if starts_word else b"") + surface
            return self._pieces("".join(self.alphabet[b] for b in raw))
        try:
            text = surface.decode("utf-8")
        except UnicodeDecodeError:
            # part of a character: only byte tokens can stand for it
            ids = [self.byte_ids.get(b) for b in surface]
            return [] if None in ids else ids
        if family == SENTENCEPIECE:
            return self._pieces((marker if starts_word else "") + text.replace(" ", marker))
        if family == WORDPIECE:
            if not starts_word:
                # greedy longest match over "##" pieces: the marked string's first piece is
                # looked up whole, later ones get the marker anyway
                ids = self._pieces(marker + text)
                if ids and self.model.id_to_token(ids[0]).startswith(marker):
                    return ids
            return self._pieces(text)
        return self._pieces(text)

    def _pieces(self, text: str) -> list[int]:
        if not text:
            return []
        return [t.id for t in self.model.tokenize(text) if t.id not in self.excluded]


def fvt_weights(
    source_tok: PreTrainedTokenizerBase, target_tok: PreTrainedTokenizerBase, n_source: int
) -> tuple[sp.csr_matrix, list[int]]:
    """The (V_t, V_s) weight matrix of FVT: row t holds count(s) / len(pieces) for every
    source piece s of target token t; and the target ids that got no piece."""
    splitter = _SourceSplitter(source_tok)
    target_info = tokenizer_family(target_tok)
    n_target = len(target_tok)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    empty: list[int] = []
    covered = set()
    target_special = special_token_ids(target_tok)  # by role in ``initialize``, or the mean
    for token, idx in model_vocab(target_tok).items():
        if idx >= n_target or idx in target_special:
            continue
        pieces = [p for p in splitter.split(*token_surface(token, target_info)) if p < n_source]
        covered.add(idx)
        if not pieces:
            empty.append(idx)
            continue
        for piece, count in Counter(pieces).items():
            rows.append(idx)
            cols.append(piece)
            vals.append(count / len(pieces))
    # specials and added tokens outside the model vocabulary
    empty += [i for i in range(n_target) if i not in covered]
    weights = sp.csr_matrix(
        (np.asarray(vals, dtype=np.float64), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
        shape=(n_target, n_source),
    )
    return weights, sorted(empty)


@register("fvt", check=check_fallback_params)
def fvt(
    inputs: StrategyInputs, *, fallback_covariance_scale: float = DEFAULT_COVARIANCE_SCALE
) -> TargetEmbeddings:
    """Each target row the mean of the source rows of its split by the source tokenizer."""
    n_source = inputs.source.input.shape[0]
    weights, empty = fvt_weights(inputs.source_tokenizer, inputs.target_tokenizer, n_source)
    n_target = weights.shape[0]
    rule = weighted_rule(weights, empty, seed=inputs.seed, covariance_scale=fallback_covariance_scale)
    target_input, target_output, target_bias = map_source_matrices(inputs.source, rule)
    empty_set = set(empty)
    labels = ["fallback" if i in empty_set else "computed" for i in range(n_target)]
    pieces_per_token = np.diff(weights.indptr)
    decomposed = n_target - len(empty)
    return TargetEmbeddings(
        target_input, target_output, target_bias,
        InitReport(
            strategy="fvt",
            params={"fallback_covariance_scale": fallback_covariance_scale},
            n_target=n_target,
            labels=labels,
            notes=[
                (f"{decomposed} target tokens are the mean of their source pieces "
                 f"({float(pieces_per_token.sum()) / max(decomposed, 1):.2f} distinct pieces each on average)"),
                f"{len(empty)} tokens without any source piece fell back to the mean",
            ],
        ),
    )
