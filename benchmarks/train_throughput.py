"""Training throughput: our trainer's step vs a plain ``transformers.Trainer`` step.

Same random Llama config, same packed blocks, same batch, AdamW, full model, float32 on
CPU; steps after a warm-up are timed and the median step time compared (ratio from one
run: both measured in the same process in interleaved rounds; the median of the per-round
ratios is reported).

With ``--device cuda`` (a GPU machine): a random model of SmolLM2-135M's shape in bf16
autocast with fused AdamW and SDPA attention, tokens/s and model FLOPs utilization (6 *
parameters * tokens + attention, over the GPU's bf16 peak) at sequence lengths 1024 and 2048,
peak memory against the trainer's own estimate, the embeddings-only stage, a
``transformers.Trainer`` reference at the same shape, and the same runs with
``compile=True`` (torch.compile, inductor); with ``--german FILE`` also a few hundred steps of
that model on German Bible text, eager and compiled, packed here beforehand (the GPU machine
has neither the packaged assets nor a network) with ``--prepare-german FILE``.

    flock /tmp/vocab-transfer-heavy.lock .venv/bin/python benchmarks/train_throughput.py
    .venv/bin/python benchmarks/train_throughput.py --smoke
    # GPU check, prepared here, run on the lent machine (carry the packed file):
    .venv/bin/python benchmarks/train_throughput.py --prepare-german artifacts/gpu/german_1024.safetensors
    python benchmarks/train_throughput.py --device cuda --german artifacts/gpu/german_1024.safetensors --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the repository root: on the GPU machine the package is not installed, only copied
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

from transfer.train import PackedData, PhaseConfig, TrainingCallback, TrainingConfig, train

RESULTS = Path(__file__).parent / "results"
# SmolLM2-135M's shape (config of HuggingFaceTB/SmolLM2-135M)
SMOLLM2_SHAPE = {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                 "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 8192,
                 "tie_word_embeddings": True, "rope_theta": 100000.0}
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, no sparsity


def model_config(smoke: bool) -> LlamaConfig:
    if smoke:
        return LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
    return LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)


class _OurTimer(TrainingCallback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.last = time.perf_counter()

    def on_step(self, step: int, metrics: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


class _HFTimer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def ours(config: LlamaConfig, blocks: torch.Tensor, steps: int, batch: int, device: str,
         stage: str = "full", compile_model: bool = False) -> list[float]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    timer = _OurTimer()
    data = PackedData(blocks=blocks, n_documents=0, n_bytes=blocks.numel(), n_tokens=blocks.numel())
    cfg = TrainingConfig(phases=[PhaseConfig(stage, steps, 1e-4, schedule="constant")], batch_size=batch,
                         clip_norm=1.0, eval_at_start=False, eval_at_end=False, precision="auto",
                         compile=compile_model)
    timer.last = time.perf_counter()
    train(model, data, cfg, device=device, callbacks=[timer])
    return timer.times


def hf_trainer(config: LlamaConfig, blocks: torch.Tensor, steps: int, batch: int, device: str) -> list[float]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    dataset = [{"input_ids": row, "labels": row} for row in blocks]
    timer = _HFTimer()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-4,
            lr_scheduler_type="constant", max_grad_norm=1.0, weight_decay=0.0, save_strategy="no",
            logging_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
            use_cpu=device == "cpu", bf16=device == "cuda", seed=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[timer])
        timer.last = time.perf_counter()
        trainer.train()
    return timer.times


def cpu_comparison(args: argparse.Namespace) -> dict[str, Any]:
    config = model_config(args.smoke)
    block, batch = (32, 2) if args.smoke else (256, 8)
    steps, warmup = (4, 1) if args.smoke else (args.steps, 3)
    generator = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, config.vocab_size, (max(64, steps * batch), block), generator=generator)
    results: dict[str, list[dict[str, float]]] = {}
    rounds = 1 if args.smoke else args.rounds
    # Interleaved rounds, the order flipped every round: the first runs of a process pay for
    # warm-up and the machine's speed drifts by several percent within a minute, so each
    # round gives one paired ratio and the record keeps every round and their median.
    pair = (("ours", ours), ("transformers_trainer", hf_trainer))
    for round_ in range(rounds):
        for name, run in (pair if round_ % 2 == 0 else pair[::-1]):
            times = run(config, blocks, steps, batch, "cpu")[warmup:]
            median = statistics.median(times)
            results.setdefault(name, []).append(
                {"median_step_s": median, "tokens_per_s": batch * block / median, "steps_timed": len(times)})
            print(name, round_, json.dumps(results[name][-1]), flush=True)
    ratios = [t["median_step_s"] / o["median_step_s"]
              for o, t in zip(results["ours"], results["transformers_trainer"], strict=True)]
    return {
        "model": {"hidden": config.hidden_size, "layers": config.num_hidden_layers, "vocab": config.vocab_size,
                  "parameters": sum(p.numel() for p in LlamaForCausalLM(config).parameters())},
        "batch": batch, "block": block, "results": results,
        "ratio_trainer_over_ours_per_round": ratios,
        "ratio_trainer_over_ours": statistics.median(ratios),
    }


def _estimate_gib(config: LlamaConfig, batch: int, seq: int, stage: str) -> float:
    """The trainer's own memory estimate (transfer.train.memory) for this run, in GiB."""
    from transfer.train.memory import estimate_training_memory

    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    embed = model.get_input_embeddings().weight.numel()
    trainable = embed if stage == "embeddings" else sum(p.numel() for p in model.parameters())
    est = estimate_training_memory(model, batch_size=batch, block_size=seq, trainable_parameters=trainable,
                                   activation_bytes=2, fused_attention=True, body_frozen=stage == "embeddings")
    return est.total / 2**30


def gpu_mfu(args: argparse.Namespace) -> dict[str, Any]:
    """SmolLM2-135M-shaped random model in bf16 on a CUDA GPU: tokens/s, MFU, peak memory
    against the trainer's estimate, the embeddings-only stage, and a transformers.Trainer
    reference at the same shape in the same process."""
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    config = LlamaConfig(**SMOLLM2_SHAPE)
    n_params = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    rows = []
    runs = (("ours", "full", 1024, 32), ("ours", "full", 2048, 16), ("ours", "embeddings", 1024, 32),
            ("transformers_trainer", "full", 1024, 32), ("ours_compiled", "full", 1024, 32),
            ("ours_compiled", "full", 2048, 16))
    for who, stage, seq, batch in runs:
        torch.manual_seed(0)
        blocks = torch.randint(0, config.vocab_size, (batch * (args.steps + 1), seq))
        torch.cuda.reset_peak_memory_stats()
        try:
            if who == "transformers_trainer":
                all_times = hf_trainer(config, blocks, args.steps, batch, "cuda")
            else:
                all_times = ours(config, blocks, args.steps, batch, "cuda", stage=stage,
                                 compile_model=who == "ours_compiled")
        except Exception as error:  # noqa: BLE001 -- recorded, so one failing variant does not lose the others
            rows.append({"trainer": who, "stage": stage, "seq": seq, "batch": batch, "error": repr(error)[:2000]})
            print(json.dumps(rows[-1]), flush=True)
            continue
        times = all_times[3:]
        step = statistics.median(times)
        tokens = batch * seq
        # 6 N per token for the weights, plus attention scores: 12 * layers * hidden * seq
        # (the embeddings-only stage still runs the whole forward and backward through the
        # activations; only the weight gradients of the body are skipped, so no MFU for it)
        flops = tokens * (6 * n_params + 12 * config.num_hidden_layers * config.hidden_size * seq)
        row = {"trainer": who, "stage": stage, "seq": seq, "batch": batch, "tokens_per_s": tokens / step,
               "median_step_s": step, "steps_timed": len(times), "first_step_s": all_times[0],
               "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
               "estimated_gib": _estimate_gib(config, batch, seq, stage)}
        if stage == "full":
            row["tflops"] = flops / step / 1e12
            row["mfu"] = None if peak is None else flops / step / 1e12 / peak
        rows.append(row)
        print(json.dumps(row), flush=True)
        torch.cuda.empty_cache()
    ours_1024 = next(r for r in rows if r["trainer"] == "ours" and r["stage"] == "full" and r["seq"] == 1024)
    hf_1024 = next(r for r in rows if r["trainer"] == "transformers_trainer")
    compiled_1024 = next(r for r in rows if r["trainer"] == "ours_compiled" and r["stage"] == "full"
                         and r["seq"] == 1024)

    def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
        return a["median_step_s"] / b["median_step_s"] if "error" not in a and "error" not in b else None

    return {"gpu": name, "peak_bf16_tflops": peak, "parameters": n_params, "rows": rows,
            "ratio_trainer_over_ours_seq1024": ratio(hf_1024, ours_1024),
            "speedup_compiled_seq1024": ratio(ours_1024, compiled_1024)}


def prepare_german(path: Path, block: int = 1024) -> dict[str, Any]:
    """German train verses (Elberfelder + Schlachter) tokenized with SmolLM2's own tokenizer
    and packed into ``block``-token rows, saved as int32 safetensors with the byte count."""
    from safetensors.torch import save_file

    from transfer.corpus.bible import read_texts
    from transfer.source.loading import load_source
    from transfer.train import pack_train_split

    _, tokenizer = load_source("smollm2")
    data = pack_train_split(tokenizer, (t for code in ("e", "s") for t in read_texts(code, "train")), block)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"blocks": data.blocks.to(torch.int32)}, str(tmp),
              metadata={"n_bytes": str(data.n_bytes), "n_tokens": str(data.n_tokens),
                        "n_documents": str(data.n_documents), "vocab_size": str(len(tokenizer))})
    tmp.replace(path)
    return {"blocks": int(data.blocks.size(0)), "block": block, "bytes": data.n_bytes, "file": str(path)}


class _LossLog(TrainingCallback):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_step(self, step: int, metrics: dict[str, Any]) -> None:
        self.rows.append({"step": step, "loss": metrics["loss"], "tokens_per_s": metrics["tokens_per_second"]})


def gpu_german_run(path: Path, steps: int, batch: int = 16, device: str = "cuda",
                   compile_model: bool = False) -> dict[str, Any]:
    """A few hundred whole-model steps of the SmolLM2-shaped random model on packed German
    text (bf16 autocast, fused AdamW, warmup + cosine): loss curve and tokens/s."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        blocks = handle.get_tensor("blocks").long()
        meta = handle.metadata()
    data = PackedData(blocks=blocks, n_documents=int(meta["n_documents"]), n_bytes=int(meta["n_bytes"]),
                      n_tokens=int(meta["n_tokens"]))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_SHAPE))
    log = _LossLog()
    cfg = TrainingConfig(phases=[PhaseConfig("full", steps, 1e-3, warmup_steps=min(50, steps // 5),
                                             schedule="cosine", weight_decay=0.1)],
                         batch_size=batch, clip_norm=1.0, eval_at_start=False, eval_at_end=False, precision="auto",
                         compile=compile_model)
    result = train(model, data, cfg, device=device, callbacks=[log])
    rates = sorted(r["tokens_per_s"] for r in log.rows[5:]) or [0.0]
    return {"compiled": compile_model, "steps": steps, "batch": batch, "block": int(blocks.size(1)), "train_blocks": int(blocks.size(0)),
            "precision": result.precision, "seconds": result.seconds, "bytes_seen": result.bytes_seen,
            "median_tokens_per_s": rates[len(rates) // 2], "final_loss": log.rows[-1]["loss"],
            "loss_every_10": [r for r in log.rows if r["step"] % 10 == 0 or r["step"] == 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved ours/Trainer rounds (CPU)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", default=None)
    parser.add_argument("--german", default=None, help="packed German blocks (see --prepare-german) for the GPU run")
    parser.add_argument("--german-steps", type=int, default=300)
    parser.add_argument("--prepare-german", default=None, help="pack the German text for the GPU run and exit")
    args = parser.parse_args()
    if args.prepare_german:
        print(json.dumps(prepare_german(Path(args.prepare_german))))
        return
    if args.smoke:
        torch.set_num_threads(1)  # tiny shapes: threads cost more than they save on a busy machine
    out = Path(args.out) if args.out else RESULTS
    record: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "load_average_at_start": os.getloadavg()},
    }
    if args.device == "cuda":
        record["gpu"] = gpu_mfu(args)
        if args.german:
            for key, compiled in (("german", False), ("german_compiled", True)):
                try:
                    record["gpu"][key] = gpu_german_run(Path(args.german), args.german_steps, compile_model=compiled)
                except Exception as error:  # noqa: BLE001 -- recorded, as above
                    record["gpu"][key] = {"error": repr(error)[:2000]}
                print(json.dumps({k: v for k, v in record["gpu"][key].items() if k != "loss_every_10"}), flush=True)
        name = "train_throughput_gpu"
    else:
        record["cpu"] = cpu_comparison(args)
        print(f"transformers.Trainer step time / ours: {record['cpu']['ratio_trainer_over_ours']:.3f}")
        name = "train_throughput"
    record["machine"]["load_average_at_end"] = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}{'_smoke' if args.smoke else ''}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
