"""SentencePiece-style Unigram builds (XLM-R, T5, ALBERT): the source's pipeline, a new
Unigram vocabulary learned on target-language text.

Kudo (2018)'s Unigram LM starts from a large seed vocabulary and prunes the pieces whose
removal costs the corpus likelihood least, until the budget is met; the `tokenizers`
UnigramTrainer implements it. The source's normalizer (e.g. XLM-R's precompiled
SentencePiece character map), Metaspace pre-tokenizer (``▁`` word marker, prepend
scheme), decoder and post-processor are kept, and its special tokens keep their strings,
flags and order at the first ids. A source with ``byte_fallback`` gets all 256
``<0xNN>`` pieces right after its special tokens, as SentencePiece lays them out, so any
text round-trips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tokenizers import trainers
from transformers import PreTrainedTokenizerFast

from tokenizer_builds.conventions import (
    BYTE_FALLBACK_TOKENS,
    SourceLayout,
    added_token,
    finish,
    prepare_build,
    untrained_backend,
)
from tokenizer_builds.families import (
    TokenizerFamily,
)
from transfer.errors import TokenizerBuildError

#: Byte pieces score this far below the least likely learned piece: SentencePiece never
#: matches its byte pieces against text (they only spell what nothing else can), and a
#: score far below any spelling in characters keeps literal text like "<0x41>" as text.
_BYTE_PIECE_MARGIN = 1000.0
_SCORE_DECIMALS = 8
_CHAR_STEP_GAP = 1.5e-4  # the trainer's step between appended characters is 1e-4


def unigram_alphabet_size(spec: dict[str, Any]) -> int:
    """Base symbols a vocabulary of this source's kind must hold: the 256 byte pieces with
    byte fallback, else none (characters come from the corpus)."""
    return len(BYTE_FALLBACK_TOKENS) if (spec.get("model") or {}).get("byte_fallback") else 0


def _unk_token(layout: SourceLayout) -> str | None:
    unk_id = layout.model.get("unk_id")
    if unk_id is None:
        return None
    vocab = layout.model.get("vocab") or []
    if not 0 <= unk_id < len(vocab):
        raise TokenizerBuildError(
            f"source Unigram model has unk_id={unk_id} outside its {len(vocab)}-piece vocabulary"
        )
    return vocab[unk_id][0]


def _canonical_scores(pieces: list[list[Any]]) -> list[list[Any]]:
    """Scores that do not depend on the trainer's hash-map order.

    The trainer's float sums vary in their last bits from run to run, so scores are
    rounded; and it appends the characters it must keep with scores that step down by
    1e-4 in set-iteration order, so within each such run of single characters the same
    scores are handed out again in character order.
    """
    rounded = [[piece, round(float(score), _SCORE_DECIMALS)] for piece, score in pieces]
    chars = sorted((item for item in rounded if len(item[0]) == 1), key=lambda item: -item[1])
    runs: list[list[list[Any]]] = []
    for item in chars:
        if runs and runs[-1][-1][1] - item[1] <= _CHAR_STEP_GAP:
            runs[-1].append(item)
        else:
            runs.append([item])
    for run in runs:
        scores = sorted((item[1] for item in run), reverse=True)
        for item, score in zip(sorted(run, key=lambda item: item[0]), scores, strict=True):
            item[1] = score
    return rounded


def _stable_vocabulary(
    n_special: int, *, byte_pieces: bool
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A model fix that makes the learned vocabulary reproducible and, with byte fallback,
    inserts the 256 byte pieces after the special tokens (SentencePiece's layout).

    See :func:`_canonical_scores`; pieces are then ordered by (score, piece).
    """

    def fix(model: dict[str, Any]) -> dict[str, Any]:
        pieces = model["vocab"]
        head = pieces[:n_special]
        unk_id = model.get("unk_id")
        unk = pieces[unk_id][0] if unk_id is not None else None
        learned = sorted(
            _canonical_scores(pieces[n_special:]), key=lambda item: (-item[1], item[0])
        )
        present = {piece for piece, _ in pieces}
        floor = min((score for _, score in learned), default=0.0) - _BYTE_PIECE_MARGIN
        new = [
            [token, floor]
            for token in (BYTE_FALLBACK_TOKENS if byte_pieces else ())
            if token not in present
        ]
        vocab = head + new + learned
        if unk is not None:
            unk_id = next(i for i, (piece, _) in enumerate(vocab) if piece == unk)
        return {**model, "vocab": vocab, "unk_id": unk_id}

    return fix


def train_unigram(
    source: PreTrainedTokenizerFast,
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
    keep_tokens: Iterable[str] = (),
    eos_token_ids: Sequence[int] = (),
) -> PreTrainedTokenizerFast:
    """Train a Unigram tokenizer on ``texts`` with the source tokenizer's conventions.

    ``vocab_size`` counts the learned tokens and the byte pieces; the kept special and
    added tokens come on top. A small corpus may give fewer. ``min_frequency`` is checked but the Unigram trainer has no
    such threshold (pruning by likelihood plays that part).
    """
    layout, corpus = prepare_build(source, TokenizerFamily.UNIGRAM, texts, vocab_size, min_frequency,
                                   alphabet_size=lambda layout: unigram_alphabet_size(layout.spec),
                                   keep_tokens=keep_tokens, eos_token_ids=eos_token_ids)
    n_bytes = unigram_alphabet_size(layout.spec)

    unk = _unk_token(layout)
    special_contents = [token["content"] for token in layout.specials]
    specials = [added_token(token) for token in layout.specials]
    if unk is not None and unk not in special_contents:
        # SentencePiece's <unk> is a control piece, not always an added token.
        specials.append(unk)
    empty = {**layout.model, "vocab": [], "unk_id": None}
    backend = untrained_backend(layout, empty)
    trainer_options: dict[str, Any] = {}
    if unk is not None:
        trainer_options["unk_token"] = unk
    max_piece = layout.model.get("max_piece_length")
    if isinstance(max_piece, int) and max_piece > 0:
        trainer_options["max_piece_length"] = max_piece
    trainer = trainers.UnigramTrainer(
        # Byte pieces are inserted after training; the trainer counts its special tokens
        # in its budget, and they come on top of vocab_size.
        vocab_size=vocab_size - n_bytes + len(specials),
        show_progress=show_progress,
        special_tokens=specials,
        **trainer_options,
    )
    try:
        backend.train_from_iterator(corpus, trainer=trainer)
    except Exception as error:  # the trainer raises a bare Exception
        if "not large enough to contain all chars" not in str(error):
            raise
        raise TokenizerBuildError(
            f"vocab_size={vocab_size} is too small for this corpus: a Unigram vocabulary "
            "must hold every character the corpus uses (besides the byte pieces); raise "
            "vocab_size"
        ) from error
    fix = _stable_vocabulary(len(specials), byte_pieces=bool(n_bytes))
    return finish(backend, layout, source, fix_model=fix)
