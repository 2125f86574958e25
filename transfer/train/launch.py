"""The train stage on several processes of one machine, through ``torchrun``.

With ``nproc_per_node`` above one, the train stage's builder does not train in the calling
process: it writes its spec beside the stage's output folder and starts PyTorch's own
launcher (``python -m torch.distributed.run --standalone --nproc-per-node N``) on this
module, whose copies join one process group (gloo on CPUs, NCCL on GPUs) and run the same
builder; rank 0 writes the folder. The other stages run once, in the calling process. Each
process takes an equal share of the optimizer step's blocks (``per_process_batch``), so the
effective batch and the data order are those of one process, and the number of processes
is a speed setting outside the stage key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from transfer.errors import TrainingError

SPEC_FILE = "launch_spec.json"


def per_process_batch(batch_size: int, grad_accumulation: int, world_size: int) -> tuple[int, int]:
    """(micro-batch, accumulation) of each of ``world_size`` processes such that one optimizer
    step still sees ``batch_size * grad_accumulation`` blocks: the micro-batch is divided when
    it can be, else the accumulation."""
    if world_size <= 1:
        return batch_size, grad_accumulation
    if batch_size % world_size == 0:
        return batch_size // world_size, grad_accumulation
    if grad_accumulation % world_size == 0:
        return batch_size, grad_accumulation // world_size
    raise TrainingError(
        f"nproc_per_node={world_size} must divide batch_size={batch_size} or grad_accumulation="
        f"{grad_accumulation}, so that every process takes an equal share of each optimizer step")


def inside_launcher() -> bool:
    """Whether this process is one of torchrun's workers."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_train_stage(spec_json: str, out: Path, nproc_per_node: int) -> None:
    """Run the train stage's builder in ``nproc_per_node`` processes under torchrun; raise
    with the workers' exit code when one fails."""
    spec_path = out / SPEC_FILE
    spec_path.write_text(spec_json)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc_per_node}", "-m", "transfer.train.launch", str(spec_path), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(command, env=env, check=False)
    spec_path.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"train stage under torchrun ({nproc_per_node} processes) failed with exit code "
                           f"{done.returncode}; the workers' errors are above")


def main(argv: list[str]) -> None:
    """A torchrun worker: the train stage's builder on the spec the launching process wrote."""
    from transfer.engine.stages import BuildContext, StageSpec, builder_of

    spec_path, out = Path(argv[0]), Path(argv[1])
    spec = StageSpec.model_validate(json.loads(spec_path.read_text()))
    builder_of(spec.stage)(spec, out, BuildContext())


if __name__ == "__main__":
    main(sys.argv[1:])
