"""Peak memory of the training loss, forward and backward: the whole float32 logits against
the chunked linear cross-entropy (``transfer/train/linear_cross_entropy.py``), at the
vocabularies of SmolLM2 (49,152), Qwen2 (151,936) and Gemma-3 (262,144).

    .venv/bin/python benchmarks/loss_memory.py            # about 2-3 min on 2 cores
    .venv/bin/python benchmarks/loss_memory.py --smoke    # tiny shapes, seconds
    .venv/bin/python benchmarks/loss_memory.py --render   # the markdown again from the JSON

Method: each (vocabulary, kernel) runs in a fresh Python process of its own, so no
allocator state carries over. The process builds the inputs (hidden states, head weight,
labels), then reads its resident set size (RSS, ``psutil``) and runs the loss and its backward
pass once; the peak is the kernel's high-water mark of RSS (``getrusage`` ``ru_maxrss``) after
it, minus the RSS before. The CPU allocator hands blocks of this size (tens of MB and up)
straight to and from the kernel (glibc's ``mmap`` threshold is at most 32 MiB), so RSS
follows the live tensors. The peak counts the gradients the backward pass returns (the head
weight's and the hidden states', the same in both paths), which the table also shows apart.
The figure the memory estimate uses (``loss_memory_bytes``) is shown next to the measured peak
less those gradients. Float32 throughout (the CPU trainer's precision); the whole path is the
trainer's ``F.cross_entropy(logits.float(), reduction="sum")`` of ``F.linear`` logits.
Results: ``benchmarks/results/loss_memory.json`` and ``loss_memory.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CASES = [  # (source whose head shape this is, vocabulary, hidden width)
    ("SmolLM2-135M", 49_152, 576),
    ("Qwen2-0.5B", 151_936, 896),
    ("Gemma-3-270M", 262_144, 640),
]
KERNELS = ("full", "chunked")


def child(vocab: int, width: int, tokens: int, kernel: str, threads: int) -> dict:
    """One measurement, in this (fresh) process."""
    import psutil
    import torch
    import torch.nn.functional as F

    from transfer.train.linear_cross_entropy import IGNORE_INDEX, chunk_rows, linear_cross_entropy

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(tokens, width, generator=generator).requires_grad_()
    weight = (torch.randn(vocab, width, generator=generator) * width**-0.5).requires_grad_()
    labels = torch.randint(0, vocab, (tokens,), generator=generator)
    labels[:: max(tokens // 16, 1)] = IGNORE_INDEX
    before = psutil.Process().memory_info().rss
    high_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    if kernel == "full":
        loss = F.cross_entropy(F.linear(hidden, weight).float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    else:
        loss = linear_cross_entropy(hidden, weight, labels)
    loss.backward()
    seconds = time.perf_counter() - started
    high = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"loss": float(loss), "seconds": seconds, "peak_bytes": high - before,
            "peak_seen": high > high_before, "gradient_bytes": (vocab + tokens) * width * 4,
            "chunk": chunk_rows(vocab) if kernel == "chunked" else tokens}


def run_case(vocab: int, width: int, tokens: int, kernel: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(vocab), str(width), str(tokens), kernel,
                          str(threads)], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2, help="sequences (default 2)")
    parser.add_argument("--block", type=int, default=1024, help="tokens per sequence (default 1024)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes; results not written")
    parser.add_argument("--render", action="store_true", help="rewrite the markdown from the JSON result")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        vocab, width, tokens, kernel, threads = args.child
        print(json.dumps(child(int(vocab), int(width), int(tokens), kernel, int(threads))))
        return

    sys.path.insert(0, str(ROOT))
    from transfer.train.linear_cross_entropy import loss_memory_bytes

    if args.render:
        (RESULTS / "loss_memory.md").write_text(markdown(json.loads((RESULTS / "loss_memory.json").read_text())))
        return

    cases = [("tiny", 4096, 64)] if args.smoke else CASES
    tokens = 64 if args.smoke else args.rows * args.block
    rows = []
    for name, vocab, width in cases:
        measured = {k: run_case(vocab, width, tokens, k, args.threads) for k in KERNELS}
        full, chunked = measured["full"], measured["chunked"]
        rows.append({
            "model": name, "vocab": vocab, "hidden": width, "tokens": tokens, **{
                f"{k}_{field}": measured[k][field] for k in KERNELS for field in ("peak_bytes", "seconds", "loss", "peak_seen")},
            "chunk": chunked["chunk"], "gradient_bytes": full["gradient_bytes"],
            "estimate_full": loss_memory_bytes("full", tokens=tokens, vocab=vocab, width=width),
            "estimate_chunked": loss_memory_bytes("chunked", tokens=tokens, vocab=vocab, width=width),
            "ratio": full["peak_bytes"] / max(chunked["peak_bytes"], 1),
            "loss_difference": abs(full["loss"] - chunked["loss"]) / abs(full["loss"]),
        })
        print(f"{name}: full {gib(full['peak_bytes'])} GiB in {full['seconds']:.1f} s, chunked "
              f"{gib(chunked['peak_bytes'])} GiB in {chunked['seconds']:.1f} s", flush=True)
    if args.smoke:
        return
    record = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.processor() or
              platform.machine(), "threads": args.threads, "rows": args.rows, "block": args.block, "cases": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "loss_memory.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "loss_memory.md").write_text(markdown(record))
    print(markdown(record))


def markdown(record: dict) -> str:
    lines = [
        "# Peak memory of the loss: whole logits vs chunked linear cross-entropy",
        "",
        (f"`benchmarks/loss_memory.py`, {record['date']}, CPU ({record['threads']} threads, float32), "
        f"a batch of {record['rows']} x {record['block']} tokens (1/16 of the positions unscored). Peak: "
        "high-water RSS of a fresh process during one forward and backward pass of the loss, above the "
        "RSS with its inputs built; it includes the gradients of the head weight and the hidden states "
        "(the same in both paths, column 'gradients'). 'estimate' is `loss_memory_bytes`, the figure "
        "the memory estimate adds for the loss, to compare with the peak less the gradients."),
        "",
        ("| head (vocab x hidden) | chunk | whole logits: peak GiB | chunked: peak GiB | ratio | gradients GiB "
        "| estimate whole / chunked GiB | time whole / chunked s | relative loss difference |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["cases"]:
        lines.append(
            f"| {row['model']} ({row['vocab']:,} x {row['hidden']}) | {row['chunk']} | {gib(row['full_peak_bytes'])} "
            f"| {gib(row['chunked_peak_bytes'])} | {row['ratio']:.1f}x | {gib(row['gradient_bytes'])} "
            f"| {gib(row['estimate_full'])} / {gib(row['estimate_chunked'])} "
            f"| {row['full_seconds']:.1f} / {row['chunked_seconds']:.1f} | {row['loss_difference']:.1e} |")
    lines += [
        "",
        ("The whole path's peak grows with tokens x vocabulary (float32 logits, their log-softmax and "
        "gradient); the chunked path's with chunk x vocabulary (chunks of about 256 MiB of float32 "
        "logits; two of them live at its peak, the estimate counts three) whatever the batch, so the "
        "ratio grows with the batch. Both estimates are above the measured peak less the gradients. "
        "The times were taken while other jobs shared the machine's 2 cores: they are not a speed "
        "comparison (the chunked path does one more head matmul, the forward's, in the backward pass)."),
        "",
        "Not measured, the estimate's figure for larger batches (`loss_memory_bytes`, GiB, whole / chunked):",
        "",
        "| head | 4 x 1024 | 32 x 1024 | 8 x 4096 |",
        "|---|---|---|---|",
    ]
    from transfer.train.linear_cross_entropy import loss_memory_bytes

    for row in record["cases"]:
        cells = []
        for tokens in (4 * 1024, 32 * 1024, 8 * 4096):
            figures = [loss_memory_bytes(k, tokens=tokens, vocab=row["vocab"], width=row["hidden"])
                       for k in KERNELS]
            cells.append(f"{gib(figures[0])} / {gib(figures[1])}")
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
