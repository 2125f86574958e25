"""The eflomal child dies with the pipeline: a SIGKILLed run leaves no aligner behind (the
package's own ``align`` left it running as an orphan for minutes), a failing aligner is an
error (the package ignored its exit status), and the schedule is the package's default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from transfer.errors import AlignmentError
from transfer.vectors.eflomal_process import iterations, run_eflomal
from transfer.vectors.word_alignment import align

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# a child that aligns a corpus long enough (many iterations) to be killed in the middle
_CHILD = textwrap.dedent("""
    import random, sys
    from transfer.vectors.word_alignment import align
    rng = random.Random(0)
    src = [[f"w{rng.randrange(400)}" for _ in range(10)] for _ in range(1500)]
    tgt = [[f"v{rng.randrange(400)}" for _ in range(10)] for _ in range(1500)]
    align(src, tgt, rel_iterations=200.0, n_samplers=1)
""")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _find_aligner(root: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack = [root]
        while stack:
            pid = stack.pop()
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                exe = ""
            if exe.endswith("/bin/eflomal"):
                return pid
            stack += _children(pid)
        time.sleep(0.05)
    raise AssertionError("no eflomal process appeared under the child")


def test_a_killed_pipeline_leaves_no_aligner_running() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", _CHILD], env=env)
    try:
        aligner = _find_aligner(child.pid)
        assert _alive(aligner)
        child.send_signal(signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 10
        while _alive(aligner) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(aligner), "eflomal outlived the killed pipeline"
    finally:
        child.kill()
        child.wait()


def test_the_schedule_is_eflomals_default() -> None:
    # 5000 / sqrt(3000) = 91.3: the package ran -1 22 -2 22 -3 91 on 3000 pairs
    assert iterations(3000, 3, 1.0) == (22, 22, 91)
    assert iterations(3000, 2, 1.0) == (22, 91, 0)
    assert iterations(3000, 1, 1.0) == (91, 0, 0)
    assert iterations(10**9, 3, 1.0) == (2, 1, 2)


def test_a_failing_aligner_is_an_error(tmp_path: Path) -> None:
    # mismatched line counts make the package refuse to write the inputs
    with pytest.raises((AlignmentError, ValueError)):
        run_eflomal(["a b\n", "c\n"], ["x\n"], tmp_path / "f", tmp_path / "r")
    # the binary itself failing (an unwritable links path) is reported with its status
    with pytest.raises(AlignmentError, match="eflomal exited with status"):
        run_eflomal(["a b\n"], ["x y\n"], tmp_path / "missing" / "f", tmp_path / "missing" / "r")


def test_links_are_read_back() -> None:
    src = [["das", "haus"], ["das", "auto"], ["ein", "haus"]] * 20
    tgt = [["the", "house"], ["the", "car"], ["a", "house"]] * 20
    result = align(src, tgt, n_samplers=1)
    assert result.links[0] == [(0, 0), (1, 1)]
