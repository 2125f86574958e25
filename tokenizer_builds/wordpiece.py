"""WordPiece builds (BERT and its relatives): the source's pipeline, a new WordPiece
vocabulary learned on target-language text.

WordPiece (Schuster & Nakajima, 2012; Devlin et al., 2019) splits a word greedily into the
longest vocabulary pieces, marking word-internal pieces with ``##``. The `tokenizers`
WordPieceTrainer learns the vocabulary with BPE-style merges over the source's
normalization (BERT's cleaning, accent stripping and lower-casing where the source does
them) and pre-tokenization (whitespace and punctuation). The source's unknown token,
continuation prefix, word-length limit, decoder and ``[CLS] ... [SEP]`` post-processor are
kept; special tokens keep their strings, flags and order at the first ids. WordPiece makes
no round-trip promise: normalization and ``[UNK]`` may change text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import trainers
from transformers import PreTrainedTokenizerFast

from tokenizer_builds.conventions import added_token, finish, prepare_build, untrained_backend
from tokenizer_builds.families import (
    TokenizerFamily,
)


def train_wordpiece(
    source: PreTrainedTokenizerFast,
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
    keep_tokens: Iterable[str] = (),
    eos_token_ids: Sequence[int] = (),
) -> PreTrainedTokenizerFast:
    """Train a WordPiece tokenizer on ``texts`` with the source tokenizer's conventions.

    ``vocab_size`` counts the learned tokens (characters included); the kept special and
    added tokens come on top. A small corpus may give fewer.
    """
    layout, corpus = prepare_build(source, TokenizerFamily.WORDPIECE, texts, vocab_size, min_frequency,
                                   alphabet_size=lambda _: 0,
                                   keep_tokens=keep_tokens, eos_token_ids=eos_token_ids)

    specials = [added_token(token) for token in layout.specials]
    contents = {token["content"] for token in layout.specials}
    unk = layout.model.get("unk_token")
    if unk and unk not in contents:
        specials.append(unk)  # WordPiece needs its unknown token in the vocabulary
    prefix = layout.model.get("continuing_subword_prefix") or "##"
    backend = untrained_backend(layout, {**layout.model, "vocab": {}})
    # The trainer counts its special tokens in its budget: they come on top of vocab_size.
    budget = vocab_size + len(specials)
    trainer = trainers.WordPieceTrainer(
        vocab_size=budget,
        min_frequency=min_frequency,
        show_progress=show_progress,
        special_tokens=specials,
        continuing_subword_prefix=prefix,
        # Keep the most frequent characters when the budget is tight (the rest is [UNK]):
        # each character also gets its "##" continuation form, hence half the room.
        limit_alphabet=max(1, (budget - len(specials)) // 2),
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    return finish(backend, layout, source)
