"""CPU budget a user can afford: SmolLM2-135M -> German at the same token budget, three ways.

1. the skeleton's best initialization (``mean``) with the 32k German tokenizer;
2. ``random`` initialization with the same tokenizer (the floor);
3. the source model continuing with its *own* tokenizer on the same German train verses
   (the no-transfer baseline: does changing the vocabulary pay off at all?).

Every run: the same schedule (embeddings-only stage, then the whole model), the same
tokens per step, dev BPB on the same dev verses at step 0 and every ``--eval-every``
steps. Curves are plotted against bytes of German text seen (the tokenizers cut the same
text into different numbers of tokens) and steps; for each run we report where it first
beats the source model's step-0 dev BPB measured in this run.

    flock /tmp/vocab-transfer-heavy.lock .venv/bin/python benchmarks/cpu_budget.py
    .venv/bin/python benchmarks/cpu_budget.py --smoke   # seconds, tiny random models
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from transfer.train import (
    PhaseConfig,
    TrainingCallback,
    TrainingConfig,
    dev_evaluator,
    pack_train_split,
    plot_curves,
    save_curve_files,
    train,
)

RESULTS = Path(__file__).parent / "results"


class PrintProgress(TrainingCallback):
    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.perf_counter()

    def on_step(self, step: int, metrics: dict[str, Any]) -> None:
        print(f"[{self.label}] step {step}/{metrics['total_steps']} {metrics['stage']} loss {metrics['loss']:.3f} "
              f"{metrics['tokens_per_second']:.0f} tok/s ({time.perf_counter() - self.started:.0f} s)", flush=True)

    def on_eval(self, step: int, metrics: dict[str, Any]) -> None:
        print(f"[{self.label}] eval step {step}: dev BPB {metrics['dev_bpb']:.4f} "
              f"after {metrics['bytes_seen'] / 1e3:.0f} kB", flush=True)


def real_runs(args: argparse.Namespace) -> tuple[list[tuple[str, str, Any]], Path, dict[str, Any]]:
    """(label, kind, loader) for the three runs, the corpus folder and asset notes."""
    from transfer.corpus.stage import corpus_spec
    from transfer.engine.cache import StageCache
    from transfer.engine.stages import execute
    from transfer.init.stage import init_spec
    from transfer.settings.config import AdaptConfig
    from transfer.source.loading import load_source
    from transfer.source.stage import source_spec
    from transfer.tokenizer.stage import tokenizer_spec

    if args.assets:
        # Folders of an earlier pipeline run (corpus/, source/, mean/, random/ model folders):
        # the stage cache keys include the code version, which changes with every edit.
        assets = Path(args.assets)
        runs = [(label, lambda folder=assets / kind: load_source(str(folder))) for label, kind in (
            ("mean init, German 32k tokenizer", "mean"), ("random init, German 32k tokenizer", "random"),
            ("source model, own tokenizer", "source"))]
        return runs, assets / "corpus", {"assets": str(assets)}
    cfg = AdaptConfig(strategy="mean", cache_dir=Path(args.cache_dir))
    cache = StageCache(cfg.cache_dir)
    corpus, _ = execute(corpus_spec(cfg), cache)
    source, _ = execute(source_spec(cfg), cache)
    tokenizer, _ = execute(tokenizer_spec(cfg, corpus, source), cache)
    inits = {}
    for strategy in ("mean", "random"):
        inits[strategy], _ = execute(init_spec(cfg.model_copy(update={"strategy": strategy}), source, tokenizer), cache)
    runs = [
        ("mean init, German 32k tokenizer", lambda: load_source(str(inits["mean"].path / "model"))),
        ("random init, German 32k tokenizer", lambda: load_source(str(inits["random"].path / "model"))),
        ("source model, own tokenizer", lambda: load_source(str(source.path / "model"))),
    ]
    return runs, corpus.path, {"vocab_size": cfg.vocab_size, "source": cfg.source_model}


def smoke_runs(tmp: Path) -> tuple[list[tuple[str, Any]], Path, dict[str, Any]]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.tiny
    from tests.tiny import GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama

    tmp.mkdir(parents=True, exist_ok=True)
    lines = [f"{s} ({i})" for i in range(20) for s in GERMAN_SENTENCES]
    (tmp / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp / "dev.target.txt").write_text("\n".join(GERMAN_SENTENCES) + "\n")

    def make(vocab: int, seed: int):
        tokenizer = tiny_byte_bpe_tokenizer(GERMAN_SENTENCES, vocab)
        return tiny_llama(len(tokenizer), seed=seed), tokenizer

    runs = [("mean (smoke)", lambda: make(400, 0)), ("random (smoke)", lambda: make(400, 1)),
            ("source (smoke)", lambda: make(300, 2))]
    return runs, tmp, {"smoke": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny random models, seconds")
    parser.add_argument("--cache-dir", default="artifacts/cache")
    parser.add_argument("--assets", default=None,
                        help="folder with corpus/ and the source/, mean/, random/ model folders of an earlier run")
    parser.add_argument("--embedding-steps", type=int, default=20)
    parser.add_argument("--full-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--embedding-lr", type=float, default=1e-3)
    parser.add_argument("--full-lr", type=float, default=5e-5)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--dev-texts", type=int, default=100)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--deadline", default=None,
                        help="HH:MM (local time): shrink the per-stage steps so that all three runs end by then "
                             "(estimate: 6 s per embeddings step, 12 s per full step, 10 s per evaluation, "
                             "60 s of loading per run, on 2 shared cores)")
    args = parser.parse_args()
    if args.deadline and not args.smoke:
        hour, minute = map(int, args.deadline.split(":"))
        now = time.localtime()
        left = (hour * 3600 + minute * 60) - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
        steps = int((left - 3 * (60 + 9 * 10)) / (3 * 18))
        steps = max(4, min(args.embedding_steps, steps // 4 * 4))
        args.embedding_steps = args.full_steps = steps
        args.eval_every = max(1, steps // 4)
        print(f"deadline {args.deadline}: {left} s left -> {steps} + {steps} steps per run", flush=True)
    if args.smoke:
        args.embedding_steps, args.full_steps, args.batch_size, args.block_size = 2, 2, 2, 16
        args.eval_every, args.dev_texts = 2, 8
        # tiny models: thread start-up costs more than it saves, and on a busy machine
        # (the test suite beside other work) many times more
        torch.set_num_threads(1)
    out = Path(args.out) if args.out else RESULTS
    name = "cpu_budget_smoke" if args.smoke else "cpu_budget"
    runs, corpus, notes = smoke_runs(out / f"{name}_corpus") if args.smoke else real_runs(args)
    dev = (corpus / "dev.target.txt").read_text(encoding="utf-8").splitlines()[: args.dev_texts]

    config = TrainingConfig(
        phases=[PhaseConfig("embeddings", args.embedding_steps, args.embedding_lr, warmup_steps=2, schedule="cosine"),
                PhaseConfig("full", args.full_steps, args.full_lr, warmup_steps=2, schedule="cosine",
                            weight_decay=0.01)],
        batch_size=args.batch_size, clip_norm=1.0, seed=0, precision="fp32", eval_every=args.eval_every,
    )
    rows, curves = [], []
    for label, load in runs:
        model, tokenizer = load()
        with open(corpus / "train.txt", encoding="utf-8") as handle:
            data = pack_train_split(tokenizer, (line.rstrip("\n") for line in handle), args.block_size)
        started = time.perf_counter()
        result = train(model, data, config, tokenizer=tokenizer, device="cpu", label=label,
                       evaluate=dev_evaluator(tokenizer, dev, batch_size=16, device="cpu"),
                       callbacks=[PrintProgress(label)])
        wall = time.perf_counter() - started
        curves.append(result.curve)
        stem = f"{name}_{label.split(',')[0].split(' ')[0]}"
        save_curve_files(result.curve, out, stem=stem)
        rows.append({"label": label, "train_seconds": result.seconds, "wall_seconds": wall,
                     "tokens_seen": result.tokens_seen, "bytes_seen": result.bytes_seen,
                     "bytes_per_token": data.bytes_per_token, "train_blocks": data.blocks.size(0),
                     "vocab": len(tokenizer), "curve": result.curve.to_dict()})
        del model, tokenizer, data, result
        gc.collect()

    reference = curves[-1].points[0].dev_bpb  # the source model, own tokenizer, step 0
    for row, curve in zip(rows, curves, strict=True):
        first = curve.first_below(reference)
        row["first_beats_source_step0"] = None if first is None else {
            "step": first.step, "bytes_seen": first.bytes_seen, "dev_bpb": first.dev_bpb}
        row["final_dev_bpb"] = curve.points[-1].dev_bpb
        row["step0_dev_bpb"] = curve.points[0].dev_bpb
    plot_curves(curves, out / f"{name}.png", references={"source model, step 0": reference},
                title="SmolLM2-135M -> German: dev BPB at the same token budget (CPU)")
    record = {
        "settings": {**vars(args), "stages": [s.__dict__ for s in config.phases], **notes},
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(),
                    "cpus": os.cpu_count(), "torch": torch.__version__,
                    "load_average_at_end": os.getloadavg()},
        "source_step0_dev_bpb": reference,
        "rows": rows,
    }
    (out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nsource model step-0 dev BPB: {reference:.4f}")
    print("| run | dev BPB step 0 | final dev BPB | train s | MB seen | first beats source step 0 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        beat = row["first_beats_source_step0"]
        where = f"step {beat['step']} ({beat['bytes_seen'] / 1e6:.2f} MB)" if beat else "never"
        print(f"| {row['label']} | {row['step0_dev_bpb']:.3f} | {row['final_dev_bpb']:.3f} | "
              f"{row['train_seconds']:.0f} | {row['bytes_seen'] / 1e6:.2f} | {where} |")


if __name__ == "__main__":
    main()
