"""Run the eflomal binary as a child that cannot outlive this process.

The ``eflomal`` package's own ``align`` starts its binary with ``subprocess.call`` and
ignores the exit status. Two things follow: a pipeline killed with SIGKILL (an OOM kill,
a cancelled Prefect run, ``kill -9``) leaves the aligner running as an orphan, burning a
core for minutes to write links into a deleted folder; and a crashed aligner is noticed
only when its link files are read. Here the binary is started through a tiny launcher that
asks Linux to SIGKILL it when the thread that started it ends (``PR_SET_PDEATHSIG``, kept across
``execve``) and then becomes eflomal, and its exit status is checked. Inputs are still
written by the package (``Aligner.prepare_files``), and the iteration counts follow the
package's default rule, so the alignment model is the same.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from transfer.errors import AlignmentError

#: Runs in a fresh interpreter between fork and eflomal: arm the death signal, check that the
#: parent did not die before it was armed (the race the signal cannot cover), then exec.
_LAUNCHER = """
import ctypes, os, signal, sys
parent = int(sys.argv[1])
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
if os.getppid() != parent:
    sys.exit(70)
os.execv(sys.argv[2], sys.argv[2:])
"""


def eflomal_binary() -> Path:
    """The binary shipped inside the ``eflomal`` wheel."""
    import eflomal

    path = Path(eflomal.__file__).parent / "bin" / "eflomal"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise AlignmentError(f"the eflomal binary is missing or not executable at {path}: reinstall `eflomal`")
    return path


def iterations(n_sentences: int, model: int, rel_iterations: float) -> tuple[int, int, int]:
    """eflomal's default schedule: about 5000/sqrt(n) iterations of the final model, a
    quarter of that for the earlier ones (IBM1, HMM)."""
    final = max(2, round(rel_iterations * 5000 / math.sqrt(max(n_sentences, 1))))
    quarter = max(1, final // 4)
    if model == 1:
        return (final, 0, 0)
    if model == 2:
        return (max(2, quarter), final, 0)
    return (max(2, quarter), quarter, final)


def run_eflomal(
    source_lines: Sequence[str],
    target_lines: Sequence[str],
    forward_path: Path,
    reverse_path: Path,
    *,
    model: int = 3,
    n_samplers: int = 3,
    rel_iterations: float = 1.0,
    null_prior: float = 0.2,
) -> None:
    """Align whitespace-tokenized lines (one sentence per line, ending in a newline) and
    write Pharaoh-format links of both directions to ``forward_path``/``reverse_path``."""
    from eflomal import Aligner

    binary = eflomal_binary()
    with tempfile.TemporaryDirectory(prefix="eflomal-in-") as tmp:
        src_file, tgt_file = Path(tmp) / "source", Path(tmp) / "target"
        with open(src_file, "wb") as src, open(tgt_file, "wb") as tgt, open(Path(tmp) / "priors", "w") as priors:
            Aligner(model=model).prepare_files(source_lines, src, target_lines, tgt, None, priors)
        first, second, third = iterations(len(source_lines), model, rel_iterations)
        args = [str(binary), "-m", str(model), "-s", str(src_file), "-t", str(tgt_file), "-n", str(n_samplers),
                "-N", str(null_prior), "-1", str(first), "-q", "-f", str(forward_path), "-r", str(reverse_path)]
        if model >= 2:
            args += ["-2", str(second)]
        if model >= 3:
            args += ["-3", str(third)]
        proc = subprocess.Popen([sys.executable, "-I", "-c", _LAUNCHER, str(os.getpid()), *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate()
        except BaseException:  # Ctrl-C or an error here: the aligner must not run on alone
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-500:]
        raise AlignmentError(f"eflomal exited with status {proc.returncode} on {len(source_lines)} sentence "
                             f"pairs{': ' + tail if tail else ''}")
