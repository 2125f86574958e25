"""Training throughput: our trainer's step vs a plain ``transformers.Trainer`` step.

Same random Llama config, same packed blocks, same batch, AdamW, full model, float32 on
CPU; steps after a warm-up are timed and the median step time compared (ratio from one
run, both measured in the same process, one after the other).

With ``--device cuda`` (a GPU machine; not run in the CPU-only sessions so far): a random
model of SmolLM2-135M's shape in bf16 autocast with fused AdamW and SDPA attention, tokens/s
and model FLOPs utilization (6 * parameters * tokens + attention, over the GPU's bf16 peak)
at sequence lengths 1024 and 2048.

    flock /tmp/vocab-transfer-heavy.lock .venv/bin/python benchmarks/train_throughput.py
    .venv/bin/python benchmarks/train_throughput.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

from transfer.training import PackedData, StageConfig, TrainingCallback, TrainingConfig, train

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


def ours(config: LlamaConfig, blocks: torch.Tensor, steps: int, batch: int, device: str) -> list[float]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    timer = _OurTimer()
    data = PackedData(blocks=blocks, n_documents=0, n_bytes=blocks.numel(), n_tokens=blocks.numel())
    cfg = TrainingConfig(stages=[StageConfig("full", steps, 1e-4, schedule="constant")], batch_size=batch,
                         clip_norm=1.0, eval_at_start=False, eval_at_end=False, precision="auto")
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
    results = {}
    for name, run in (("ours", ours), ("transformers_trainer", hf_trainer), ("ours_again", ours)):
        times = run(config, blocks, steps, batch, "cpu")[warmup:]
        median = statistics.median(times)
        results[name] = {"median_step_s": median, "tokens_per_s": batch * block / median, "steps_timed": len(times)}
        print(name, json.dumps(results[name]), flush=True)
    best_ours = min(results["ours"]["median_step_s"], results["ours_again"]["median_step_s"])
    return {
        "model": {"hidden": config.hidden_size, "layers": config.num_hidden_layers, "vocab": config.vocab_size,
                  "parameters": sum(p.numel() for p in LlamaForCausalLM(config).parameters())},
        "batch": batch, "block": block, "results": results,
        "ratio_trainer_over_ours": results["transformers_trainer"]["median_step_s"] / best_ours,
    }


def gpu_mfu(args: argparse.Namespace) -> dict[str, Any]:
    """SmolLM2-135M-shaped random model in bf16 on a CUDA GPU: tokens/s and MFU."""
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    config = LlamaConfig(**SMOLLM2_SHAPE)
    rows = []
    for seq, batch in ((1024, 32), (2048, 16)):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        n_params = sum(p.numel() for p in model.parameters())
        blocks = torch.randint(0, config.vocab_size, (batch * (args.steps + 1), seq))
        times = ours(config, blocks, args.steps, batch, "cuda")[3:]
        step = statistics.median(times)
        tokens = batch * seq
        # 6 N per token for the weights, plus attention scores: 12 * layers * hidden * seq
        flops = tokens * (6 * n_params + 12 * config.num_hidden_layers * config.hidden_size * seq)
        rows.append({"seq": seq, "batch": batch, "tokens_per_s": tokens / step,
                     "tflops": flops / step / 1e12, "mfu": None if peak is None else flops / step / 1e12 / peak})
        print(json.dumps(rows[-1]), flush=True)
        del model
        torch.cuda.empty_cache()
    return {"gpu": name, "peak_bf16_tflops": peak, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out) if args.out else RESULTS
    record: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "load_average_at_start": os.getloadavg()},
    }
    if args.device == "cuda":
        record["gpu"] = gpu_mfu(args)
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
