"""Seconds to refusal (or to warning) of the reliability cases of docs/reliability.md.

- a run whose training would not fit in memory, on the packaged SmolLM2 (GGUF) with the
  demo's settings and on a tiny random Llama: ``run_adaptation`` -> ``validate_config``
  -> ``check_training_memory``, with ``VOCAB_TRANSFER_MEMORY_LIMIT`` below the estimate;
- the input warnings (``input_warnings``) on a 1 MB text corpus declared as Russian;
- a full disk in the first stage (a 32 MiB tmpfs, root only): ``run_adaptation`` to
  ``DiskFullError``.

    .venv/bin/python benchmarks/reliability_refusals.py

Writes ``benchmarks/results/reliability_refusals.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "reliability_refusals.json"


def timed(call) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        outcome = call()
        message = f"no error: {outcome!r}"[:300]
    except Exception as error:  # noqa: BLE001 - the refusal is what is measured
        message = f"{type(error).__name__}: {error}"
    return time.perf_counter() - started, message


def main() -> None:
    import torch

    from tests.tiny import ENGLISH_SENTENCES, GERMAN_SENTENCES, tiny_byte_bpe_tokenizer, tiny_llama
    from transfer.pipeline import run_adaptation
    from transfer.settings.config import AdaptConfig
    from transfer.settings.input_warnings import input_warnings
    from transfer.source.loading import save_model

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tokenizer = tiny_byte_bpe_tokenizer(ENGLISH_SENTENCES, 400)
        save_model(tiny_llama(len(tokenizer), tie=True, seed=0), tokenizer, tmp / "src")
        corpus = tmp / "de.txt"
        corpus.write_text("\n".join(f"{s} ({i})" for i in range(12) for s in GERMAN_SENTENCES) + "\n")
        tiny = AdaptConfig(source_model=str(tmp / "src"), target_language="de", target_bible=[],
                           source_bible=[], target_files=[str(corpus)], strategy="mean", vocab_size=350, train_steps=3,
                           batch_size=2, block_size=16, device="cpu", cache_dir=tmp / "cache",
                           output_dir=tmp / "models", register_model=False)
        demo = AdaptConfig(device="cpu", cache_dir=tmp / "cache", output_dir=tmp / "models",
                           register_model=False)

        os.environ["VOCAB_TRANSFER_MEMORY_LIMIT"] = "100KiB"
        seconds, message = timed(lambda: run_adaptation(tiny))
        rows.append({"case": "training does not fit in memory (tiny Llama, limit 100 KiB)",
                     "refused_by": "validate_config -> check_training_memory", "seconds": seconds,
                     "message": message})
        os.environ["VOCAB_TRANSFER_MEMORY_LIMIT"] = "1GiB"
        seconds, message = timed(lambda: run_adaptation(demo))
        rows.append({"case": "training does not fit in memory (SmolLM2 GGUF, demo settings, limit 1 GiB)",
                     "refused_by": "validate_config -> check_training_memory", "seconds": seconds,
                     "message": message})
        del os.environ["VOCAB_TRANSFER_MEMORY_LIMIT"]

        big = tmp / "ru.txt"
        lines = [f"{s} ({i})" for i in range(3000) for s in GERMAN_SENTENCES]
        big.write_text("\n".join(lines) + "\n")
        russian = tiny.model_copy(update={"target_language": "ru", "target_files": [str(big)]})
        seconds, message = timed(lambda: [w.message for w in input_warnings(russian)])
        rows.append({"case": f"German text declared 'ru' ({big.stat().st_size / 1e6:.1f} MB)",
                     "refused_by": "warning: input_warnings (CLI adapt)", "seconds": seconds,
                     "message": message})
        small = tiny.model_copy(update={"vocab_size": 3000})
        seconds, message = timed(lambda: [w.message for w in input_warnings(small)])
        rows.append({"case": "96-line corpus, vocab_size=3000", "refused_by": "warning: input_warnings (CLI adapt)",
                     "seconds": seconds, "message": message})

        if os.geteuid() == 0:
            disk = tmp / "disk"
            disk.mkdir()
            if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)],
                              check=False).returncode == 0:
                try:
                    from transfer.engine.cache import free_bytes

                    with open(disk / "filler", "wb") as handle:
                        handle.write(b"\0" * (free_bytes(disk) - (64 << 10)))
                    full = tiny.model_copy(update={"cache_dir": disk / "cache"})
                    seconds, message = timed(lambda: run_adaptation(full))
                    rows.append({"case": "disk full in the corpus stage (tmpfs, 64 KiB free)",
                                 "refused_by": "corpus stage -> replacing_directory", "seconds": seconds,
                                 "message": message})
                finally:
                    subprocess.run(["umount", "-l", str(disk)], check=False)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    for row in rows:
        print(f"{row['seconds']:7.3f}s  {row['case']}: {row['message'][:160]}")


if __name__ == "__main__":
    main()
