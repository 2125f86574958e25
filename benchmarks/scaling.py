"""Seconds and peak memory of every stage as the target corpus grows (issue 13, item 5).

No multi-GB corpus ships offline, so each target corpus is the two German Bible
translations that do (``e``, ``s``: every verse, one per line) **repeated** until the file
reaches the size asked for (10 MB, 100 MB, 1 GB behind ``--gigabyte``). Repetition makes the
timing and memory of a real corpus of that size (every stage reads, tokenizes and packs
every line), not its statistics: identical copies of a verse fall into the same split, and
a tokenizer learns nothing new from copy two.

Each size runs the product (``transfer.pipeline.run_adaptation``: the default ``mean``
strategy, a tiny training budget, no model registry, a fresh cache folder) in a child
process, which reports every stage's start and end. The parent polls the resident memory
of the child's whole process tree (the child and every descendant, ``psutil``) every
``--interval`` seconds, and gives each stage its seconds and the peak tree RSS seen while
it ran ("startup": imports and checks before the first stage; "finish": writing the
result after the last). Polling can miss a peak shorter than the interval.

    flock /tmp/vocab-transfer-heavy.lock nice -n 10 .venv/bin/python benchmarks/scaling.py --sizes 10
    .venv/bin/python benchmarks/scaling.py --sizes 10 100 --gigabyte   # adds 1024 MB

Results go to ``benchmarks/results/scaling.json`` (merged by size, so sizes may be run
one at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
BIBLES = ("e", "s")  # the German translations that ship offline (the demo's target texts)
# The run's settings besides the corpus: the product's defaults (SmolLM2-135M, vocab 32000,
# block 256, batch 4), with few evaluation texts, since scoring costs the same at any corpus
# size and would hide what grows.
SETTINGS: dict[str, Any] = {"target_bible": [], "source_bible": [], "strategy": "mean", "register_model": False,
                            "device": "cpu", "eval_texts": 20, "curve_texts": 10, "card_samples": 0}


def build_corpus(path: Path, megabytes: float) -> dict[str, Any]:
    """Write the Bible verses of :data:`BIBLES` again and again into ``path`` until it holds
    ``megabytes`` MB (10**6 bytes); stops at the first line past the size."""
    from transfer.corpus.bible import read_texts

    verses = [text for code in BIBLES for text in read_texts(code)]
    target = int(megabytes * 1_000_000)
    written = lines = copies = 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < target:
            copies += 1
            for text in verses:
                line = text + "\n"
                handle.write(line)
                written += len(line.encode("utf-8"))
                lines += 1
                if written >= target:
                    break
    return {"megabytes": round(written / 1e6, 2), "lines": lines, "bible_copies": copies,
            "distinct_lines": len(verses), "source": f"German Bibles {', '.join(BIBLES)} repeated"}


def child(corpus: Path, cache: Path, events: Path, steps: int) -> None:
    """Run the product on ``corpus``, appending one JSON line per stage event to ``events``."""
    from transfer.pipeline import run_adaptation
    from transfer.settings.config import AdaptConfig

    handle = open(events, "a", encoding="utf-8")  # noqa: SIM115  (open for the whole run)

    def note(stage: str, state: str) -> None:
        handle.write(json.dumps({"t": time.time(), "stage": stage, "state": state}) + "\n")
        handle.flush()

    cfg = AdaptConfig(target_files=[str(corpus)], cache_dir=cache / "cache", output_dir=cache / "models",
                      train_steps=steps, **SETTINGS)
    note("run", "start")
    result = run_adaptation(cfg, listener=note)
    note("run", "end")
    # the trainer's own clock (optimizer steps only): the rest of the train stage is packing,
    # loading, learning-curve scoring and saving
    logs = [json.loads(f.read_text()) for f in (cache / "cache" / "train").glob("[!.]*/train_log.json")]
    handle.write(json.dumps({"bpb": result.scores, "train_step_seconds": logs[0]["seconds"] if logs else None}) + "\n")
    handle.close()


def _tree_rss(process: psutil.Process) -> int:
    """Resident bytes of ``process`` and all its descendants (0 for any that just exited)."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(corpus: Path, work: Path, steps: int, interval: float, limit: float | None) -> dict[str, Any]:
    """Run :func:`child` in a fresh process; per-stage seconds and peak tree RSS. A run past
    ``limit`` seconds is stopped (its process tree killed) and reported up to where it got."""
    events = work / "events.jsonl"
    started = time.time()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(corpus),
                             "--work", str(work), "--steps", str(steps)], cwd=ROOT)
    watched = psutil.Process(proc.pid)
    samples: list[tuple[float, int]] = []
    timed_out = False
    while proc.poll() is None:
        try:
            samples.append((time.time(), _tree_rss(watched)))
        except psutil.Error:
            break
        if limit is not None and time.time() - started > limit:
            timed_out = True
            for descendant in watched.children(recursive=True):
                descendant.kill()
            proc.kill()
            break
        time.sleep(interval)
    proc.wait()
    ended = time.time()
    if proc.returncode != 0 and not timed_out:
        raise SystemExit(f"the run on {corpus} failed (exit {proc.returncode})")
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    marks = [e for e in lines if "stage" in e]
    final = next((e for e in lines if "bpb" in e), {})
    # intervals: startup, each stage from "running" to its end, finish
    spans: list[tuple[str, float, float, str]] = []
    first = marks[0]["t"]
    spans.append(("startup", started, first, "-"))
    seen: dict[str, int] = {}
    open_at: float | None = None
    for event in marks:
        if event["stage"] == "run":
            continue
        if event["state"] == "running":
            open_at = event["t"]
        else:
            name = event["stage"]
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name}#{seen[name]}"
            spans.append((label, open_at if open_at is not None else event["t"], event["t"], event["state"]))
            open_at = None
    if open_at is not None:  # the stage a stopped run was in
        spans.append((next(e["stage"] for e in reversed(marks) if e["state"] == "running"), open_at, ended,
                      "stopped"))
    else:
        spans.append(("finish", marks[-1]["t"], ended, "-"))
    stages = []
    for label, lo, hi, state in spans:
        inside = [rss for t, rss in samples if lo <= t <= hi]
        stages.append({"stage": label, "state": state, "seconds": round(hi - lo, 2),
                       "peak_rss_mb": round(max(inside) / 2**20, 1) if inside else None,
                       "samples": len(inside)})
    return {"seconds": round(ended - started, 1), "timed_out": timed_out,
            "peak_rss_mb": round(max(rss for _, rss in samples) / 2**20, 1) if samples else None,
            "stages": stages, "bpb": final.get("bpb"), "train_steps": steps,
            "train_step_seconds": final.get("train_step_seconds"), "settings": SETTINGS, "poll_interval_s": interval}


def plot(report: dict[str, Any], path: Path) -> None:
    """Seconds of each corpus-bound stage and the peak tree RSS against the corpus size
    (log-log: a stage that grows linearly is a line of slope one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(report["runs"].values(), key=lambda r: r["corpus"]["megabytes"])
    sizes = [r["corpus"]["megabytes"] for r in runs]
    fig, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for stage in ("corpus", "tokenizer", "train", "evaluate", "source", "init"):
        seconds = [next((s["seconds"] for s in r["stages"] if s["stage"] == stage), None) for r in runs]
        if all(v is not None for v in seconds):
            time_axis.plot(sizes, seconds, marker="o", label=stage)
    time_axis.plot(sizes, [r["seconds"] for r in runs], marker="o", color="black", label="whole run")
    time_axis.set(xscale="log", yscale="log", xlabel="target corpus (MB)", ylabel="seconds")
    memory_axis.plot(sizes, [r["peak_rss_mb"] for r in runs], marker="o", color="black", label="peak tree RSS")
    memory_axis.axhline(4096, color="red", ls="--", label="goal: 4 GB")
    memory_axis.set(xscale="log", xlabel="target corpus (MB)", ylabel="MB", ylim=(0, 5000))
    for axis in (time_axis, memory_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle("vocab-transfer on a growing target corpus (SmolLM2-135M, 2 shared CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[10.0], help="corpus sizes in MB")
    parser.add_argument("--gigabyte", action="store_true", help="also run a 1024 MB corpus")
    parser.add_argument("--steps", type=int, default=5, help="embeddings-only training steps")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between memory polls")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    parser.add_argument("--limit", type=float, help="stop a run after this many seconds (reported as timed out)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--plot", action="store_true", help="only draw results/scaling.png from the recorded runs")
    args = parser.parse_args()
    if args.plot:
        plot(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
        return
    if args.child:
        child(args.child, args.work, args.work / "events.jsonl", args.steps)
        return
    sizes = list(args.sizes) + ([1024.0] if args.gigabyte else [])
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["about"] = ("Target corpora are the German Bibles (e, s) repeated to size: timing and memory of a "
                       "corpus that size, not its statistics. Peak RSS is over the whole process tree, polled.")
    runs = report.setdefault("runs", {})
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="scaling-") as folder:
            work = Path(folder)
            corpus = work / "corpus.txt"
            built = time.perf_counter()
            info = build_corpus(corpus, size)
            info["build_seconds"] = round(time.perf_counter() - built, 1)
            load = os.getloadavg()
            result = measure(corpus, work, args.steps, args.interval, args.limit)
            runs[f"{size:g}MB"] = {"corpus": info, **result, "machine": {
                "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
                "nice": os.nice(0), "measured": time.strftime("%Y-%m-%d %H:%M:%S")}}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")
            print(f"{size:g} MB: {result['seconds']} s, peak tree RSS {result['peak_rss_mb']} MB")
            for stage in result["stages"]:
                print(f"  {stage['stage']:<20} {stage['state']:<7} {stage['seconds']:>8} s  {stage['peak_rss_mb']} MB")
    plot(report, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
