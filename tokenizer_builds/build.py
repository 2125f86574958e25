"""Build a target-language tokenizer of the source tokenizer's family, and save it.

The entry point detects the source's family (byte-level BPE, BPE with byte fallback,
SentencePiece-style Unigram, WordPiece) and dispatches to that family's trainer through
one small table; a tokenizer of no known family (WordLevel, BPE without byte handling) is
refused by the detection with a message naming what it found. Cheap input checks
(vocabulary budget, empty corpus) run before any training.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tokenizer_builds.bpe_byte_fallback import train_bpe_byte_fallback
from tokenizer_builds.byte_level_bpe import BYTE_ALPHABET, train_byte_level_bpe
from tokenizer_builds.conventions import BYTE_FALLBACK_TOKENS
from tokenizer_builds.families import (
    TokenizerFamily,
    backend_json,
    check_min_frequency,
    check_vocab_size,
    family_of_json,
    require_texts,
)
from tokenizer_builds.unigram import train_unigram, unigram_alphabet_size
from tokenizer_builds.wordpiece import train_wordpiece
from transfer.errors import TokenizerBuildError

#: A family trainer: (source, texts, vocab_size, *, min_frequency, show_progress) -> tokenizer.
Trainer = Callable[..., PreTrainedTokenizerFast]


@dataclass(frozen=True)
class FamilyBuilder:
    """How to train one family, and the base alphabet every vocabulary of it must hold
    (a fixed size, or a function of the source's backend JSON)."""

    train: Trainer
    alphabet_size: int | Callable[[dict[str, Any]], int]

    def alphabet_for(self, spec: dict[str, Any]) -> int:
        size = self.alphabet_size
        return size(spec) if callable(size) else size


# One entry per supported family.
BUILDERS: dict[TokenizerFamily, FamilyBuilder] = {
    TokenizerFamily.BYTE_LEVEL_BPE: FamilyBuilder(train_byte_level_bpe, len(BYTE_ALPHABET)),
    TokenizerFamily.BPE_BYTE_FALLBACK: FamilyBuilder(
        train_bpe_byte_fallback, len(BYTE_FALLBACK_TOKENS)
    ),
    TokenizerFamily.UNIGRAM: FamilyBuilder(train_unigram, unigram_alphabet_size),
    TokenizerFamily.WORDPIECE: FamilyBuilder(train_wordpiece, 0),
}


def build_target_tokenizer(
    source: PreTrainedTokenizerBase,
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a tokenizer on target-language ``texts`` with the source tokenizer's family
    and conventions (special tokens, pre-tokenization, decoding, post-processing)."""
    spec = backend_json(source)
    family = family_of_json(spec)
    builder = BUILDERS.get(family)
    if builder is None:
        raise TokenizerBuildError(
            f"source tokenizer family {family.value} is not supported yet by the builder "
            f"(supported: {', '.join(f.value for f in BUILDERS)})"
        )
    n_added = len(spec.get("added_tokens") or [])
    check_vocab_size(vocab_size, n_reserved=n_added, alphabet_size=builder.alphabet_for(spec))
    check_min_frequency(min_frequency)
    corpus = require_texts(texts)
    return builder.train(
        source, corpus, vocab_size, min_frequency=min_frequency, show_progress=show_progress
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    """Write ``tokenizer`` in Hugging Face format to ``out_dir``, atomically.

    Saved into a temporary sibling folder first and renamed when complete, so a crash
    never leaves a half-written tokenizer; an existing ``out_dir`` is replaced.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex}")
    try:
        tokenizer.save_pretrained(str(staging))
        if out_dir.exists():
            # A directory cannot be replaced in one rename: move the old one aside first.
            retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex}")
            out_dir.rename(retired)
            staging.rename(out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
