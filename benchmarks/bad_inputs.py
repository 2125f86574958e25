"""Run the bad-input tests and write the table of refusals (docs/bad_inputs.md).

Each case in ``tests/test_validation_values.py``, ``tests/test_security.py`` and
``tests/test_corpus_formats.py`` records, when
``BAD_INPUTS_JSON`` is set, the input, the function or surface that refused it, the message
and the seconds from the call to the refusal (``tests/refusals.py``). This script runs those
tests with the variable set, then turns ``benchmarks/results/bad_inputs.json`` into a table.

    .venv/bin/python benchmarks/bad_inputs.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bad_inputs.json"
TABLE = ROOT / "docs" / "bad_inputs.md"
TESTS = ["tests/test_validation_values.py", "tests/test_security.py", "tests/test_corpus_formats.py",
         "tests/test_weight_file_checks.py", "tests/test_language_id.py", "tests/test_input_notes.py",
         "tests/test_helper_pipeline.py::test_bad_helper_inputs_are_refused_before_the_first_stage"]

HEADER = """# Bad inputs: where each is refused, and how fast

Written by `benchmarks/bad_inputs.py` from a run of {tests} (issue 16, items 1 and 6; issue 13's
corpus forms; issue 31's weight-file headers and language checks; issue 27's helper-model and given-tokenizer checks).
Every refusal happens before the first stage (or, for a model folder or vectors file, before
anything is loaded) and leaves `artifacts/` byte-for-byte unchanged: each test checks that.
Seconds are measured from the call (`run_adaptation`, the config, the loader) to the error,
on the machine that ran the tests ({machine} CPUs). Strategy values are checked first, so
they are refused before even the source model's folder is read. A corpus file is checked
from its first 64 KiB (decompressed) or, for Parquet, its footer; damage further in (a
truncated multi-GB `.zst`) is refused by the corpus stage, naming the file, with no cache
entry left (`tests/test_corpus_formats.py`).

| input | refused by | message | seconds |
|---|---|---|---|
"""


def _cell(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def write_table(rows: list[dict], out: Path = TABLE) -> None:
    lines = [HEADER.format(tests=", ".join(f"`{t}`" for t in TESTS), machine=os.cpu_count())]
    for row in rows:
        lines.append(f"| {_cell(row['case'], 80)} | {_cell(row['surface'], 80)} | {_cell(row['message'])} "
                     f"| {row['seconds']:.3f} |\n")
    out.write_text("".join(lines), encoding="utf-8")


def main() -> int:
    RESULTS.unlink(missing_ok=True)
    env = {**os.environ, "BAD_INPUTS_JSON": str(RESULTS), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT, env=env)
    if code != 0 or not RESULTS.is_file():
        print("the bad-input tests failed; no table written", file=sys.stderr)
        return code or 1
    rows = json.loads(RESULTS.read_text())
    write_table(rows)
    print(f"{len(rows)} refusals -> {TABLE.relative_to(ROOT)} (max {max(r['seconds'] for r in rows):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
