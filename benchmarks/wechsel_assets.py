"""Shared set-up of the WECHSEL / OFA benchmarks (issue 5): the reference package, fastText
models of the Bible text, the Ding dictionary, the demo stages, BPB curves, peak memory.

The `wechsel` PyPI package is a benchmark-only reference; it is never a dependency of
`transfer/`. Install it outside the virtualenv (see benchmarks/README.md):

    .venv/bin/pip install --no-deps --target .bench-ref wechsel datasets nltk dill xxhash multiprocess

and this module puts `.bench-ref` on `sys.path` only when a benchmark asks for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

REFERENCE_DIR = ROOT / ".bench-ref"
# tests point this elsewhere so that smoke runs never touch the recorded results
RESULTS = Path(os.environ.get("VOCAB_TRANSFER_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
WORK = ROOT / "artifacts" / "bench-wechsel"
EN_CODES, DE_CODES = ("k", "4", "3"), ("e", "s")


def reference_available() -> bool:
    return (REFERENCE_DIR / "wechsel" / "__init__.py").is_file()


def import_reference() -> Any:
    """The `wechsel` reference package from `.bench-ref` (benchmarks only)."""
    if not reference_available():
        raise SystemExit(
            f"the wechsel reference is not installed in {REFERENCE_DIR}; see benchmarks/README.md"
        )
    if str(REFERENCE_DIR) not in sys.path:
        sys.path.append(str(REFERENCE_DIR))  # appended: never shadows the virtualenv's packages
    import wechsel

    return wechsel


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every 5 ms (MiB).
    Sampling RSS catches torch/numpy buffers that tracemalloc cannot see."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> Self:
        self._base = self._rss()
        self._peak = self._base
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())
        self.peak_mb = round((self._peak - self._base) / 2**20, 1)


def timed(fn, *args, **kwargs) -> tuple[Any, float, float]:
    """(result, seconds, peak extra MiB) of one call."""
    with PeakMemory() as memory:
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds = time.perf_counter() - started
    return out, round(seconds, 3), memory.peak_mb


# ---------------------------------------------------------------- fastText models (.bin)

def fasttext_bin(
    lang: str, *, dim: int, epoch: int, min_count: int = 3, bucket: int = 200_000,
    limit: int | None = None, threads: int = 2, work: Path = WORK,
) -> Path:
    """A cbow fastText model of the Bible train verses (English k+4+3 or German e+s), saved
    as `.bin` so that both the reference (fasttext objects) and our loader read the same
    file. Trained once and reused (keyed by its settings)."""
    from transfer.corpus.bible import read_texts
    from transfer.vectors.fasttext_training import write_training_text

    codes = EN_CODES if lang == "en" else DE_CODES
    name = f"ft-{lang}-d{dim}-e{epoch}-m{min_count}-b{bucket}-n{limit or 'all'}.bin"
    out = work / name
    if out.is_file():
        return out
    work.mkdir(parents=True, exist_ok=True)
    text = work / f"{lang}-{limit or 'all'}.txt"
    write_training_text([t for c in codes for t in read_texts(c, "train")[:limit]], text)
    tmp = out.with_name(f".{out.name}.tmp")
    settings = {"input": str(text), "model": "cbow", "dim": dim, "epoch": epoch, "minCount": min_count,
                "bucket": bucket, "minn": 3, "maxn": 6, "thread": threads, "verbose": 0}
    # a child process per model: fastText leaves part of its input matrix uninitialized,
    # which is zero only in fresh memory (see transfer.vectors.fasttext_training.train_fasttext)
    code = ("import sys, json, fasttext; a = json.loads(sys.argv[1]); "
            "fasttext.train_unsupervised(**a).save_model(sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, json.dumps(settings), str(tmp)], check=True)
    os.replace(tmp, out)
    return out


def ding_pairs() -> list[tuple[str, str]]:
    """(English, German) single-word pairs of the Ding dictionary."""
    from transfer.vectors.dictionaries import DING_DE_EN, load_dictionary

    return list(load_dictionary(DING_DE_EN).reversed().pairs)


def identical_pairs(source: Any, target: Any) -> list[tuple[str, str]]:
    """Words spelled alike in both vocabularies (names, numbers): a seed dictionary for
    smoke runs, which should not spend seconds parsing Ding's 290k lines."""
    return [(w, w) for w in source.words if w in target.index]


def write_reference_dictionary(pairs: list[tuple[str, str]], path: Path) -> Path:
    """The reference reads `english<TAB>target` lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs if "\t" not in s + t), encoding="utf-8")
    return path


def word_frequencies(bin_path: Path) -> dict[str, float]:
    """fastText's own word counts (the reference weights word averages by them)."""
    import fasttext

    words, counts = fasttext.load_model(str(bin_path)).get_words(include_freq=True)
    return {w: float(c) for w, c in zip(words, counts)}


# ---------------------------------------------------------------- demo stages

@dataclass
class Demo:
    source_dir: Path
    tokenizer_dir: Path
    corpus_dir: Path


def _newest(pattern: str) -> Path | None:
    found = sorted((ROOT / "artifacts" / "cache").glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def demo_stages() -> Demo:
    """The skeleton's cached stages (SmolLM2 source, 32k German tokenizer, Bible corpus).

    Stage keys include a hash of `transfer/`, which other work changes all the time; the
    inputs of these three stages do not depend on that code, so the newest complete folder
    is reused, and the pipeline builds them only when none exists."""
    source, tokenizer, corpus = (_newest("source/*/model"), _newest("tokenizer/*/tokenizer"),
                                 _newest("corpus/*/train.txt"))
    if source is None or tokenizer is None or corpus is None:
        from transfer.corpus.stage import corpus_spec
        from transfer.engine.cache import StageCache
        from transfer.engine.stages import execute
        from transfer.settings.config import AdaptConfig
        from transfer.source.stage import source_spec
        from transfer.tokenizer.stage import tokenizer_spec

        cfg = AdaptConfig()
        cache = StageCache(cfg.cache_dir)
        c, _ = execute(corpus_spec(cfg), cache)
        s, _ = execute(source_spec(cfg), cache)
        t, _ = execute(tokenizer_spec(cfg, c, s), cache)
        return Demo(s.path / "model", t.path / "tokenizer", c.path)
    return Demo(source, tokenizer, corpus.parent)


def read_lines(path: Path, limit: int | None = None) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[:limit] if limit else lines


# ---------------------------------------------------------------- BPB before / after training

def train_as_the_product(
    model: Any,
    tokenizer: Any,
    data: Any,
    texts: list[str],
    *,
    steps: int,
    batch_size: int,
    lr: float = 5e-4,
    seed: int = 0,
    device: str | None = None,
) -> Any:
    """Embeddings-only training with the product's own recipe (``transfer.train.stage``:
    the settings ``vocab-transfer adapt`` uses, gradient clipping included) and its dev
    evaluator, scored at step 0 and after ``steps``: the trainer's ``TrainResult``."""
    from transfer.settings.config import AdaptConfig
    from transfer.train import dev_evaluator, train
    from transfer.train.stage import train_params, training_config

    cfg = AdaptConfig(train_steps=steps, batch_size=batch_size, learning_rate=lr, seed=seed,
                      eval_every=max(steps, 1))
    evaluate = dev_evaluator(tokenizer, texts, batch_size=16, device=device)
    return train(model, data, training_config(train_params(cfg)), tokenizer=tokenizer,
                 evaluate=evaluate, device=device)


def bpb_curve(
    source_dir: Path,
    target_tokenizer: Any,
    target: Any,
    texts: list[str],
    blocks: Any,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    primitives: torch.Tensor | None = None,
    model_factory: Any = None,
) -> dict[str, Any]:
    """Swap ``target`` into a fresh copy of the source model (``model_factory()`` ->
    (model, source tokenizer), default: load ``source_dir``), optionally factorized with
    ``primitives``; BPB at step 0 and after ``steps`` embeddings-only steps of the
    product's recipe (``train_as_the_product``)."""
    from transfer.init.factorized import embedding_parameters, factorize_model
    from transfer.init.surgery import swap_vocabulary
    from transfer.source.loading import load_source

    if model_factory is None:
        model, source_tokenizer = load_source(str(source_dir))
    else:
        model, source_tokenizer = model_factory()
    swap_vocabulary(model, target_tokenizer, target, source_tokenizer=source_tokenizer)
    n_rows, width = target.input.shape
    params = embedding_parameters(n_rows, width)
    if primitives is not None:
        module = factorize_model(model, primitives=primitives)
        params = sum(p.numel() for p in module.parameters())
    result = train_as_the_product(model, target_tokenizer, blocks, texts, steps=steps,
                                  batch_size=batch_size, lr=lr, seed=seed)
    return {"bpb_step0": round(result.evaluations[0], 4), f"bpb_step{steps}": round(result.evaluations[steps], 4),
            "embedding_parameters": params, "train_seconds": round(result.seconds, 1)}


def machine() -> dict[str, Any]:
    import platform

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def normalized64(matrix: np.ndarray) -> np.ndarray:
    """The reference's own preprocessing in `WECHSEL.apply`: x / (|x| + 1e-8), float64."""
    m = np.asarray(matrix, dtype=np.float64)
    return m / (np.linalg.norm(m, axis=1)[:, None] + 1e-8)
