"""Issue 5, benchmark 3: OFA at ranks 100 and 200, SmolLM2 -> German.

The same aligned Bible fastText n-gram token vectors as benchmarks/wechsel_reference.py
(English k+4+3 / German e+s, 300-d, Ding-aligned), the demo's 32k German tokenizer;
`initialize("ofa", rank=r)` then the model keeps the factorized embedding
(`factorize_model(model, primitives=...)`: coordinates + primitives train, head tied to
them). Embedding parameters against the full matrix; BPB on 300 dev verses at step 0 and
after 20 embeddings-only steps (4 x 256 tokens, AdamW lr 5e-4, seed 0: identical batches).

    flock /tmp/vocab-transfer-heavy.lock .venv/bin/python benchmarks/ofa_ranks.py
    .venv/bin/python benchmarks/ofa_ranks.py --smoke     # tiny model, ranks 4 and 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wechsel_assets import (
    RESULTS,
    WORK,
    bpb_curve,
    demo_stages,
    ding_pairs,
    fasttext_bin,
    identical_pairs,
    machine,
    read_lines,
    timed,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny random model, ranks 4 and 8")
    ap.add_argument("--ranks", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-texts", type=int, default=300)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from transfer.init import StrategyInputs, StrategyResources, initialize
    from transfer.init.factorized import embedding_parameters
    from transfer.init.surgery import get_source_embeddings
    from transfer.train import pack_train_split
    from transfer.vectors.alignment import align_vectors
    from transfer.vectors.subwords import token_vectors
    from transfer.vectors.vector_formats import load_fasttext_bin

    if args.smoke:
        from tests.tiny import tiny_byte_bpe_tokenizer, tiny_llama
        from transfer.corpus.bible import read_texts

        args.ranks, args.steps, args.batch_size, args.block_size, args.eval_texts = [4, 8], 2, 2, 32, 5
        ft = {"dim": 16, "epoch": 1, "bucket": 20_000, "limit": 600, "work": WORK / "smoke"}
        source_tok = tiny_byte_bpe_tokenizer(read_texts("k", "train")[:600], 1000)
        target_tok = tiny_byte_bpe_tokenizer(read_texts("e", "train")[:600], 900)
        texts = read_texts("e", "dev")[: args.eval_texts]
        train_texts = read_texts("e", "train")[:200]

        def factory():
            return tiny_llama(len(source_tok), seed=0), source_tok

        source_dir, source_model = None, factory()[0]
    else:
        from transfer.source.loading import load_source

        demo = demo_stages()
        ft = {"dim": 300, "epoch": 5}
        source_tok = AutoTokenizer.from_pretrained(demo.source_dir)
        target_tok = AutoTokenizer.from_pretrained(demo.tokenizer_dir)
        texts = read_lines(demo.corpus_dir / "dev.target.txt", args.eval_texts)
        train_texts = read_lines(demo.corpus_dir / "train.txt")
        factory, source_dir = None, demo.source_dir
        source_model = load_source(str(source_dir))[0]
    source = get_source_embeddings(source_model)
    del source_model
    blocks = pack_train_split(target_tok, train_texts, args.block_size)
    en, de = load_fasttext_bin(fasttext_bin("en", **ft)), load_fasttext_bin(fasttext_bin("de", **ft))
    aligned = align_vectors(en, de, identical_pairs(en, de) if args.smoke else ding_pairs())
    sv = token_vectors(source_tok, aligned.source, method="ngram")
    tv = token_vectors(target_tok, aligned.target, method="ngram")
    inputs = StrategyInputs(source, source_tok, target_tok,
                            resources=StrategyResources(source_token_vectors=sv, target_token_vectors=tv))
    n_rows, width = len(target_tok), source.input.shape[1]
    record: dict = {"machine": machine(), "args": vars(args),
                    "full_embedding_parameters": embedding_parameters(n_rows, width), "rows": []}
    budget = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "model_factory": factory}
    for rank in args.ranks:
        result, seconds, peak = timed(initialize, "ofa", inputs, rank=rank)
        row = {"rank": rank, "init_seconds": seconds, "init_peak_extra_mb": peak,
               "counts": result.report.counts, "notes": result.report.notes}
        row.update(bpb_curve(source_dir, target_tok, result, texts, blocks, primitives=result.primitives, **budget))
        row["parameter_ratio"] = round(row["embedding_parameters"] / record["full_embedding_parameters"], 4)
        record["rows"].append(row)
        print(json.dumps(row, indent=1), flush=True)
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    RESULTS.mkdir(exist_ok=True)
    name = "ofa_ranks_smoke.json" if args.smoke else "ofa_ranks.json"
    (RESULTS / name).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
