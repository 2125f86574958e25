"""Hydra translation on a CPU budget (issue #29, part B, item 3): chrF of held-out Bible verses.

SmolLM2-135M-Instruct (the packaged GGUF) gets a Hydra table and head for each target language
(default Swahili, Bible ``h``) through the product's own path (``plan_hydra``/``run_hydra``, the
same as ``adapt --hydra``): each language's own tokenizer (``--vocab-size``), rows from
``--strategy``, then ``--train-steps`` embeddings-only and ``--full-steps`` whole-body steps over
the one body. Then ``--verses`` held-out test verses (English KJV ``k`` -> the target Bible, the
first in hash order of the test split every stage holds out) are translated greedily with the
documented prompt (``transfer/hydra/translate.py``), ``--shots`` train-split examples first,
and scored with chrF (sacrebleu) against the target Bible's verses. The baseline in the same
table: the source model on its own tokenizer with the same prompt.

    flock /tmp/vocab-transfer-heavy.lock nice -n 5 .venv/bin/python benchmarks/hydra_translate.py
    .venv/bin/python benchmarks/hydra_translate.py --smoke    # tiny budget, temporary folders

Results: ``results/hydra_translate.json`` and ``.md`` (the smoke run writes ``*_smoke.*``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"


def held_out_pairs(target_bible: str, n: int, split: str = "test") -> list[tuple[str, str, str]]:
    """(key, English KJV, target) of the first ``n`` verses of ``split`` in hash order of the key
    (spread over the books; the split is the one every stage holds out)."""
    from transfer.corpus.bible import verse_pairs

    pairs = verse_pairs("k", target_bible, split)
    pairs.sort(key=lambda p: hashlib.sha256(p[0].encode()).hexdigest())
    return pairs[:n]


def examples(target_bible: str, shots: int) -> list[tuple[str, str]]:
    """``shots`` short train-split verse pairs (the shortest English verses of the first hundred in
    hash order), the few-shot examples of the prompt."""
    if shots == 0:
        return []
    pool = held_out_pairs(target_bible, 100, split="train")
    pool.sort(key=lambda p: len(p[1]))
    return [(src, tgt) for _, src, tgt in pool[:shots]]


def translate_and_score(hydra, tokenizers, pairs, source: str, target: str, shots: list[tuple[str, str]],
                        max_new_tokens: int) -> dict[str, Any]:
    from transfer.hydra.translate import chrf, translate_lines

    started = time.perf_counter()
    out = translate_lines(hydra, tokenizers, [p[1] for p in pairs], source, target, examples=shots,
                          max_new_tokens=max_new_tokens)
    seconds = time.perf_counter() - started
    refs = [p[2] for p in pairs]
    return {"chrf": chrf(out, refs), "seconds": seconds, "empty": sum(1 for t in out if not t),
            "samples": [{"key": k, "source": s, "reference": r, "output": o}
                        for (k, s, r), o in list(zip(pairs, out, strict=True))[:5]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", nargs="+", default=["sw"])
    parser.add_argument("--vocab-size", type=int, default=16000)
    parser.add_argument("--strategy", default="fvt")
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--full-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--verses", type=int, default=200)
    parser.add_argument("--shots", type=int, nargs="+", default=[0])
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--eval-texts", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="Tiny budget in temporary folders.")
    args = parser.parse_args()

    import torch

    from transfer.corpus.bible_languages import bibles_of
    from transfer.hydra.run import plan_hydra, run_hydra
    from transfer.hydra.store import load_hydra
    from transfer.hydra.translate import source_model_translator
    from transfer.settings.config import AdaptConfig
    from transfer.source.loading import SMOLLM2, load_source

    if args.smoke:
        args.train_steps, args.full_steps, args.verses, args.shots, args.eval_texts = 2, 1, 4, [0], 8
        args.vocab_size, args.max_new_tokens = 2000, 8
        folder = Path(tempfile.mkdtemp(prefix="hydra-bench-"))
        cache_dir, output_dir = folder / "cache", folder / "models"
    else:
        cache_dir, output_dir = ROOT / "artifacts" / "cache", ROOT / "artifacts" / "models" / "bench-hydra"
    cfg = AdaptConfig(
        source_model=SMOLLM2, target_language=args.languages, hydra=True, strategy=args.strategy,
        vocab_size=args.vocab_size, train_steps=args.train_steps, full_steps=args.full_steps,
        batch_size=args.batch_size, block_size=args.block_size, eval_texts=args.eval_texts, device="cpu",
        cache_dir=cache_dir, output_dir=output_dir, register_model=False, card_samples=0,
    )
    started = time.perf_counter()
    cpu_started = time.process_time()
    plan = plan_hydra(cfg)
    result = run_hydra(plan, listener=lambda label, state: print(f"{label}: {state}", flush=True)
                       if state != "running" else None)
    adapt_seconds = time.perf_counter() - started
    hydra = load_hydra(result.model_dir)
    source_lm, source_tok = load_source(SMOLLM2)
    baseline, baseline_toks = None, None
    rows = []
    for lang in cfg.target_languages:
        bible = bibles_of(lang)[0]
        pairs = held_out_pairs(bible, args.verses)
        baseline, baseline_toks = source_model_translator(source_lm, source_tok, "en", lang)
        for shots in args.shots:
            shot_pairs = examples(bible, shots)
            for system, (model, toks) in (("source model (own tokenizer)", (baseline, baseline_toks)),
                                          ("Hydra (en table -> target head)", (hydra.model, hydra.tokenizers))):
                print(f"translating {len(pairs)} verses en -> {lang}, {shots}-shot, {system}", flush=True)
                with torch.no_grad():
                    scored = translate_and_score(model, toks, pairs, "en", lang, shot_pairs, args.max_new_tokens)
                rows.append({"language": lang, "bible": bible, "system": system, "shots": shots,
                             "verses": len(pairs), **scored})
                print(f"  chrF {scored['chrf']:.2f} ({scored['seconds']:.0f} s)", flush=True)
                write(args, result, rows, adapt_seconds, cpu_started)  # each row as it ends


def write(args: argparse.Namespace, result: Any, rows: list[dict[str, Any]], adapt_seconds: float,
          cpu_started: float) -> None:
    import torch

    record = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "settings": {k: v for k, v in vars(args).items()},
        "source": "SmolLM2-135M-Instruct (packaged GGUF, de-quantized to fp32)",
        "prompt": "'English: <verse>\\n<Language>:' read with the English table after the context token; "
                  "examples (shots) before it as the same lines with their translation read with the target "
                  "table; greedy, stop at the first line end",
        "bpb": result.scores, "train_log": {k: result.train_log[k] for k in ("steps_per_language", "bytes_seen",
                                                                           "seconds", "shares")},
        "first_last_loss": [result.train_log["losses"][0], result.train_log["losses"][-1]],
        "adapt_seconds": adapt_seconds, "cpu_seconds": time.process_time() - cpu_started,
        "stages_cached": result.stages_cached, "rows": rows,
    }
    name = "hydra_translate_smoke" if args.smoke else "hydra_translate"
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / f".{name}.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(RESULTS / f"{name}.json")
    tmp = RESULTS / f".{name}.md.tmp"
    tmp.write_text(markdown(record))
    tmp.replace(RESULTS / f"{name}.md")


def markdown(record: dict[str, Any]) -> str:
    s = record["settings"]
    lines = [
        "# Hydra translation en -> target on a CPU budget (issue #29 B)",
        "",
        (f"{record['source']}; Hydra table + head per language ({', '.join(s['languages'])}), own "
        f"{s['vocab_size']}-token tokenizer, `{s['strategy']}` rows, {s['train_steps']} embeddings-only + "
        f"{s['full_steps']} whole-body steps of {s['batch_size']} x {s['block_size']} tokens "
        f"(`benchmarks/hydra_translate.py`). Prompt: {record['prompt']}. Max {s['max_new_tokens']} new tokens."),
        "",
        "| language | system | shots | verses | chrF | empty outputs | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        lines.append(f"| {row['language']} ({row['bible']}) | {row['system']} | {row['shots']} | {row['verses']} | "
                     f"{row['chrf']:.2f} | {row['empty']} | {row['seconds']:.0f} |")
    lines += ["", "Bits per byte on held-out test verses (the same texts for the three models):", "",
              "| language | source model | Hydra rows at step 0 | Hydra trained |", "|---|---|---|---|"]
    for lang, scores in record["bpb"].items():
        lines.append(f"| {lang} | {scores['source_model_on_target']:.4f} | {scores['adapted_step0']:.4f} | "
                     f"{scores['hydra_trained']:.4f} |")
    lines += ["", (f"Training loss first/last step: {record['first_last_loss'][0]:.3f} / "
                  f"{record['first_last_loss'][1]:.3f}; run {record['adapt_seconds']:.0f} s wall "
                  f"(stages cached: {sum(record['stages_cached'].values())}/{len(record['stages_cached'])}), "
                  f"{record['cpu_seconds']:.0f} s CPU in all. Machine: {record['machine']['platform']}, "
                  f"{record['machine']['cpus']} CPUs."), "", "Samples (first verses):", ""]
    for row in record["rows"]:
        for sample in row["samples"][:2]:
            lines.append(f"- {row['system']}, {row['shots']}-shot, {sample['key']}: `{sample['output'][:120]}` "
                         f"(reference: {sample['reference'][:120]})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
