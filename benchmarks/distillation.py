"""Cross-tokenizer distillation against next-token training at the same compute (issue #17).

SmolLM2-135M-Instruct -> German (the demo's corpus, tokenizer and initialization), three
objectives for the new embeddings (embeddings-only stage, body frozen; ``--full-steps`` adds
the whole-model stage):

1. ``next_token``: the trainer's usual loss on packed blocks;
2. ``distill``: approximate likelihood matching over aligned chunks, the source model (own
   tokenizer, frozen) as teacher (transfer/train/distill.py);
3. ``both``: next-token loss + ``--distill-weight`` x ALM, one student forward for both.

Equal compute: a run is charged in token-forward units, a student step ``3 x`` the tokens it
trains on (forward + backward) and the teacher ``1 x`` the tokens it reads; the teacher
reads German with SmolLM2's English-centric tokenizer, more tokens than the student, so its
ratio is measured on the train text first and the distilling runs get
``round(steps x 3 / (3 + teacher tokens per student token))`` steps. The record keeps every
run's real count (the trainer's ``teacher_forward_passes`` and ``teacher_tokens``). Dev BPB
every ``--eval-every`` steps on the same dev verses; one plot, dev BPB against compute and
against steps (``distillation.png``; records ``distillation.json``).

    flock /tmp/vocab-transfer-heavy.lock .venv/bin/python benchmarks/distillation.py
    .venv/bin/python benchmarks/distillation.py --smoke     # seconds, tiny random models
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from transfer.train import (
    PhaseConfig,
    TrainingConfig,
    dev_evaluator,
    pack_train_split,
    save_curve_files,
    train,
)
from transfer.train.data import separator_token_id
from transfer.train.distill import Distillation, block_texts

RESULTS = ROOT / "benchmarks" / "results"
OBJECTIVES = ("next_token", "distill", "both")
Loader = Callable[[], tuple[Any, Any]]


def real_assets(cache_dir: str) -> tuple[Loader, Loader, Path]:
    """(student loader, teacher loader, corpus folder) from the demo's stages."""
    from transfer.corpus.stage import corpus_spec
    from transfer.engine.cache import StageCache
    from transfer.engine.stages import execute
    from transfer.init.links import links_spec
    from transfer.init.registry import needs
    from transfer.init.stage import init_spec
    from transfer.settings.config import AdaptConfig
    from transfer.source.loading import load_source
    from transfer.source.stage import source_spec
    from transfer.tokenizer.stage import tokenizer_spec

    cfg = AdaptConfig(cache_dir=Path(cache_dir))
    cache = StageCache(cfg.cache_dir)
    corpus, _ = execute(corpus_spec(cfg), cache)
    source, _ = execute(source_spec(cfg), cache)
    tokenizer, _ = execute(tokenizer_spec(cfg, corpus, source), cache)
    # the stages the pipeline runs for this strategy (transfer.planning.walk.walk_stages)
    links = execute(links_spec(cfg, source, tokenizer, corpus), cache)[0] if "parallel" in needs(cfg.strategy) else None
    init, _ = execute(init_spec(cfg, source, tokenizer, corpus=corpus, links=links), cache)
    return (lambda: load_source(str(init.path / "model")), lambda: load_source(str(source.path / "model")),
            corpus.path)


def smoke_assets(tmp: Path) -> tuple[Loader, Loader, Path]:
    from tests.tiny import ENGLISH, GERMAN, tiny_byte_bpe_tokenizer, tiny_llama

    tmp.mkdir(parents=True, exist_ok=True)
    lines = [f"{s} ({i})" for i in range(20) for s in GERMAN]
    (tmp / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp / "dev.target.txt").write_text("\n".join(GERMAN) + "\n")

    def student():
        tokenizer = tiny_byte_bpe_tokenizer(GERMAN, 400)
        return tiny_llama(len(tokenizer), seed=1), tokenizer

    def teacher():
        tokenizer = tiny_byte_bpe_tokenizer(ENGLISH, 300)
        return tiny_llama(len(tokenizer), seed=0), tokenizer

    return student, teacher, tmp


def teacher_ratio(data, student_tok, teacher_tok, n_blocks: int = 64) -> float:
    """Teacher tokens per student token on the first ``n_blocks`` blocks read back as text
    (context tokens included, as the trainer charges them)."""
    rows = data.rows(torch.arange(min(n_blocks, data.n_blocks)))
    texts = block_texts(rows, student_tok, separator_token_id(student_tok))
    student = sum(len(i) + 1 for i in student_tok(texts, add_special_tokens=False)["input_ids"])
    teacher = sum(len(i) + 1 for i in teacher_tok(texts, add_special_tokens=False)["input_ids"])
    return teacher / max(student, 1)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_compute, by_steps) = plt.subplots(1, 2, figsize=(11, 4))
    for row in rows:
        points = [p for p in row["curve"]["points"] if p["dev_bpb"] is not None]
        per_step = row["compute_units"] / max(row["steps"], 1)
        by_compute.plot([p["step"] * per_step / 1e6 for p in points], [p["dev_bpb"] for p in points],
                        marker="o", ms=3, label=row["objective"])
        by_steps.plot([p["step"] for p in points], [p["dev_bpb"] for p in points], marker="o", ms=3,
                      label=row["objective"])
    by_compute.set_xlabel("compute (million token-forward units: student 3/token, teacher 1/token)")
    by_steps.set_xlabel("optimizer steps")
    for axis in (by_compute, by_steps):
        axis.set_ylabel("dev bits per byte")
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny random models, seconds")
    parser.add_argument("--cache-dir", default="artifacts/cache")
    parser.add_argument("--steps", type=int, default=40, help="embeddings-only steps of the next_token run")
    parser.add_argument("--full-steps", type=int, default=0, help="whole-model steps after (same compute rule)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--full-lr", type=float, default=5e-5)
    parser.add_argument("--distill-weight", type=float, default=1.0)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--dev-texts", type=int, default=100)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.full_steps, args.batch_size, args.block_size = 4, 0, 2, 16
        args.eval_every, args.dev_texts, args.lr = 2, 8, 1e-2
        torch.set_num_threads(1)  # tiny models: threads cost more than they save
    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    name = "distillation_smoke" if args.smoke else "distillation"
    load_student, load_teacher, corpus = smoke_assets(out / f"{name}_corpus") if args.smoke \
        else real_assets(args.cache_dir)
    dev = (corpus / "dev.target.txt").read_text(encoding="utf-8").splitlines()[: args.dev_texts]

    rows = []
    for objective in OBJECTIVES:
        student, student_tok = load_student()
        with open(corpus / "train.txt", encoding="utf-8") as handle:
            data = pack_train_split(student_tok, (line.rstrip("\n") for line in handle), args.block_size)
        distill, ratio, share = None, 0.0, 1.0
        if objective != "next_token":
            teacher, teacher_tok = load_teacher()
            distill = Distillation(teacher, teacher_tok, mode=objective, weight=args.distill_weight)
            ratio = teacher_ratio(data, student_tok, teacher_tok)
            share = 3 / (3 + ratio)  # the steps a distilling run affords per next-token step
        steps, full_steps = max(1, round(args.steps * share)), round(args.full_steps * share)
        stages = [PhaseConfig("embeddings", steps, args.lr, schedule="constant")]
        if full_steps:
            stages.append(PhaseConfig("full", full_steps, args.full_lr, schedule="cosine", weight_decay=0.01))
        config = TrainingConfig(phases=stages, batch_size=args.batch_size, seed=0, precision="fp32",
                                eval_every=args.eval_every, clip_norm=1.0)
        started = time.perf_counter()
        result = train(student, data, config, tokenizer=student_tok, device="cpu", label=objective,
                       evaluate=dev_evaluator(student_tok, dev, batch_size=16, device="cpu"), distill=distill)
        wall = time.perf_counter() - started
        save_curve_files(result.curve, out, stem=f"{name}_{objective}")
        units = 3 * result.tokens_seen + result.teacher_tokens
        rows.append({"objective": objective, "steps": result.steps, "teacher_tokens_per_student_token": ratio,
                     "tokens_seen": result.tokens_seen, "teacher_forward_passes": result.teacher_forward_passes,
                     "teacher_tokens": result.teacher_tokens, "compute_units": units,
                     "train_seconds": result.seconds, "wall_seconds": wall,
                     "final_dev_bpb": result.curve.points[-1].dev_bpb,
                     "step0_dev_bpb": result.curve.points[0].dev_bpb,
                     "distill_losses": result.distill_losses, "curve": result.curve.to_dict()})
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("curve", "distill_losses")}), flush=True)
        del student, student_tok, data, result, distill
        gc.collect()

    title = "tiny random models (smoke)" if args.smoke else "SmolLM2-135M -> German"
    plot(rows, out / f"{name}.png", f"{title}: next-token vs distillation at equal compute")
    record = {
        "settings": vars(args),
        "compute_rule": "student 3 x tokens trained on, teacher 1 x tokens read (context tokens included)",
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "torch": torch.__version__},
        "rows": rows,
    }
    (out / f"{name}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
