"""Issue 18: the model families people adapt today, on their real tokenizers.

Per family (``make tokenizers`` fetches them into ``.assets/tokenizers/``): the source
vocabulary, the added tokens the target keeps (by reason) and drops, German fertility
(tokens per word, on 300 held-out Bible verses) of the source and of a 32k target
tokenizer trained on the German Bible train verses, the seconds for that build, and the
seconds of WECHSEL's similarity search at the real vocabulary size (exact cosine top-10 of
32k target rows among all source rows, random 100-d vectors: ``transfer/init/similarity.py``)
with its peak memory. Each family runs in its own process, so the peak RSS is its own.

    nice -n 10 .venv/bin/python benchmarks/model_families.py
    .venv/bin/python benchmarks/model_families.py --smoke      # 2 families, 2k vocab
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / ".assets" / "tokenizers"
RESULTS = ROOT / "benchmarks" / "results" / "model_families.json"
FAMILIES = ("llama2", "llama3", "llama3_1", "qwen3", "gemma3", "mistral", "deepseek_v3")
#: The generation config's stop tokens of each family's instruct model (kept like eos).
GENERATION_EOS: dict[str, tuple[str, ...]] = {
    "llama3": ("<|end_of_text|>", "<|eot_id|>"),
    "llama3_1": ("<|end_of_text|>", "<|reserved_special_token_4|>", "<|eot_id|>"),
    "qwen3": ("<|im_end|>", "<|endoftext|>"),
    "gemma3": ("<eos>", "<end_of_turn>"),
}


def measure(family: str, vocab_size: int, n_queries: int, dim: int, k: int) -> dict[str, Any]:
    """One family, in a fresh process."""
    import torch
    from transformers import AutoTokenizer

    from tokenizer_builds.added_tokens import select_added_tokens
    from tokenizer_builds.build import build_target_tokenizer
    from tokenizer_builds.families import backend_json, detect_family
    from transfer.corpus.bible import read_texts
    from transfer.init.similarity import exact_topk
    from transfer.tokenizer.fertility import compare_fertility

    torch.set_num_threads(1)
    started = time.perf_counter()
    source = AutoTokenizer.from_pretrained(ASSETS / family)
    load_seconds = time.perf_counter() - started
    vocab = source.get_vocab()
    eos = [vocab[t] for t in GENERATION_EOS.get(family, ()) if t in vocab]
    selection = select_added_tokens(source, backend_json(source), eos_token_ids=eos).report()

    # The search first, so the process's peak RSS before and after it brackets its own.
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(len(source), dim, generator=generator)
    queries = torch.randn(min(n_queries, vocab_size), dim, generator=generator)
    peak_before = _peak_rss_mib()
    started = time.perf_counter()
    exact_topk(queries, keys, k, device="cpu")
    search_seconds = time.perf_counter() - started
    search_peak = _peak_rss_mib()
    del keys

    train, held_out = read_texts("e", "train"), read_texts("e", "test")[:300]
    started = time.perf_counter()
    target = build_target_tokenizer(source, train, vocab_size, eos_token_ids=eos)
    build_seconds = time.perf_counter() - started
    fertility = compare_fertility(source, target, held_out)
    return {
        "family": family,
        "tokenizer_family": detect_family(source).value,
        "source_vocab": len(source),
        "added_tokens": selection["source_added_tokens"],
        "kept": selection["kept"],
        "kept_by_reason": selection["kept_by_reason"],
        "dropped": selection["dropped"],
        "kept_tokens": list(selection["kept_tokens"]),
        "target_vocab": len(target),
        "tokens_per_word": {side: round(value.tokens_per_word, 3) for side, value in fertility.items()},
        "load_seconds": round(load_seconds, 2),
        "build_seconds": round(build_seconds, 2),
        "similarity": {"queries": queries.shape[0], "keys": len(source), "dim": dim, "k": k,
                       "seconds": round(search_seconds, 2),
                       "peak_rss_mib": search_peak,
                       "peak_rss_growth_mib": round(search_peak - peak_before, 1)},
        "peak_rss_mib": _peak_rss_mib(),  # the whole family: load, search, 32k build
    }


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _child(args: tuple[str, int, int, int, int]) -> dict[str, Any]:
    return measure(*args)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two families, a 2k vocabulary")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--only", nargs="+", choices=FAMILIES,
                        help="rerun these families and replace their rows in --out")
    args = parser.parse_args(argv)
    families = ("llama2", "qwen3") if args.smoke else tuple(args.only or FAMILIES)
    vocab_size = 2000 if args.smoke else 32000
    rows = []
    context = multiprocessing.get_context("spawn")
    for family in families:
        with context.Pool(1) as pool:  # a fresh process: its own peak RSS
            row = pool.apply(_child, ((family, vocab_size, 2000 if args.smoke else 32000, 100, 10),))
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.only and args.out.is_file():
        fresh = {row["family"]: row for row in rows}
        old = json.loads(args.out.read_text())["rows"]
        rows = [fresh.get(row["family"], row) for row in old]
    report = {"vocab_size": vocab_size, "machine": platform.processor() or platform.machine(),
              "torch_threads": 1, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
