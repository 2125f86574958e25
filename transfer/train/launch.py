"""The train stage on several processes, of one machine or several, through ``torchrun``.

With ``nproc_per_node`` or ``nnodes`` above one, the train stage's builder does not train in
the calling process: it writes its spec beside the stage's output folder and starts
PyTorch's own launcher (``python -m torch.distributed.run``) on this module, whose copies
join one process group (gloo on CPUs, NCCL on GPUs) and run the same builder; the first
process of each machine writes that machine's folder. The other stages run once, in the
calling process. On one machine the launcher is ``--standalone`` (its own rendezvous on a
free port); on several (``nnodes``) every machine runs the same command and they meet at
``rdzv_endpoint`` (host:port, the c10d rendezvous of the machine that hosts it) under
``rdzv_id``. Each process takes an equal share of the optimizer step's blocks
(``per_process_batch``), so the effective batch and the data order are those of one
process, and the number of processes is a speed setting outside the stage key.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from transfer.errors import TrainingError

SPEC_FILE = "launch_spec.json"


def per_process_batch(batch_size: int, grad_accumulation: int, world_size: int,
                      what: str | None = None) -> tuple[int, int]:
    """(micro-batch, accumulation) of each of ``world_size`` processes such that one optimizer
    step still sees ``batch_size * grad_accumulation`` blocks: the micro-batch is divided when
    it can be, else the accumulation. ``what`` names the process count in the refusal."""
    if world_size <= 1:
        return batch_size, grad_accumulation
    if batch_size % world_size == 0:
        return batch_size // world_size, grad_accumulation
    if grad_accumulation % world_size == 0:
        return batch_size, grad_accumulation // world_size
    raise TrainingError(
        f"{what or f'nproc_per_node={world_size}'} must divide batch_size={batch_size} or grad_accumulation="
        f"{grad_accumulation}, so that every process takes an equal share of each optimizer step")


@dataclass(frozen=True)
class Processes:
    """How many training processes, on how many machines, meeting where."""

    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    rdzv_id: str = "vocab-transfer"

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @classmethod
    def from_runtime(cls, runtime: dict) -> Processes:
        """From the train stage's runtime settings (``transfer/train/stage.py``)."""
        return cls(nproc_per_node=int(runtime.get("nproc_per_node", 1) or 1), nnodes=int(runtime.get("nnodes", 1) or 1),
                   rdzv_endpoint=runtime.get("rdzv_endpoint"), rdzv_id=runtime.get("rdzv_id") or "vocab-transfer")


_ENDPOINT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})$")


def rendezvous_problem(nnodes: int, rdzv_endpoint: str | None) -> str | None:
    """Why the rendezvous settings cannot start ``nnodes`` machines, or None."""
    if nnodes <= 1:
        return None
    if not rdzv_endpoint:
        return (f"nnodes={nnodes} needs rdzv_endpoint, the host:port of the rendezvous every machine "
                "reaches (e.g. the first machine's name and a free port: node0:29400)")
    match = _ENDPOINT.match(rdzv_endpoint.strip())
    if not match or not 0 < int(match.group(3)) < 65536:
        return (f"rdzv_endpoint {rdzv_endpoint!r} is not host:port (a host name, IPv4 address or [IPv6] "
                "address, a colon, and a port 1-65535; e.g. node0:29400)")
    return None


def torchrun_command(processes: Processes, target: list[str]) -> list[str]:
    """PyTorch's launcher for ``target`` (``-m module args`` or ``script args``): standalone
    on one machine, the c10d rendezvous at ``rdzv_endpoint`` on several."""
    command = [sys.executable, "-m", "torch.distributed.run"]
    if processes.nnodes > 1:
        problem = rendezvous_problem(processes.nnodes, processes.rdzv_endpoint)
        if problem:
            raise TrainingError(problem)
        command += [f"--nnodes={processes.nnodes}", "--rdzv-backend=c10d",
                    f"--rdzv-endpoint={processes.rdzv_endpoint}", f"--rdzv-id={processes.rdzv_id}"]
    else:
        command.append("--standalone")
    return [*command, f"--nproc-per-node={processes.nproc_per_node}", *target]


def inside_launcher() -> bool:
    """Whether this process is one of torchrun's workers."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_train_stage(spec_json: str, out: Path, processes: Processes) -> None:
    """Run the train stage's builder in ``processes`` under torchrun (on this machine its
    ``nproc_per_node``; every other machine runs the same); raise with the workers' exit
    code when one fails."""
    spec_path = out / SPEC_FILE
    spec_path.write_text(spec_json)
    command = torchrun_command(processes, ["-m", "transfer.train.launch", str(spec_path), str(out)])
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for inherited in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(inherited, None)  # a launcher started from inside another one's worker
    done = subprocess.run(command, env=env, check=False)
    spec_path.unlink(missing_ok=True)
    if done.returncode != 0:
        where = f" on {processes.nnodes} machines" if processes.nnodes > 1 else ""
        raise RuntimeError(f"train stage under torchrun ({processes.nproc_per_node} processes{where}) failed with "
                           f"exit code {done.returncode}; the workers' errors are above")


def main(argv: list[str]) -> None:
    """A torchrun worker: the train stage's builder on the spec the launching process wrote."""
    from transfer.engine.stages import BuildContext, StageSpec, builder_of

    spec_path, out = Path(argv[0]), Path(argv[1])
    spec = StageSpec.model_validate(json.loads(spec_path.read_text()))
    builder_of(spec.stage)(spec, out, BuildContext())


if __name__ == "__main__":
    main(sys.argv[1:])
