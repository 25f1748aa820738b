"""Which process am I, and the handful of collectives the trainer needs (torch.distributed).

The launcher owns process creation: `torchrun`, `accelerate launch` and SLURM's `srun` + torchrun all
export RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, and `World.from_env()` reads them.
Without them the trainer is one process and nothing here talks to a process group.

    world = World.from_env()                   # rank, local_rank, size
    with process_group(world, device):         # nccl on CUDA, gloo on CPU; torn down on exit
        run_dir = shared_run_dir(run_dir, world)   # rank 0's directory, on every rank
        stop = any_rank(flag, device, world)       # one all-reduce: does any rank want to stop?

Rank 0 writes every file of the run (metrics, config, checkpoints, plots); the other ranks compute.
Tested by tests/test_distributed.py (gloo, two processes under torchrun).
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# What Hydra writes into every job's output directory before the job runs: a rank whose own `${now:}`
# directory differs from rank 0's removes its copy when it holds nothing else.
_HYDRA_FILES = {".hydra", "train.log"}


@dataclass(frozen=True)
class World:
    rank: int = 0          # global rank
    local_rank: int = 0    # rank on this node: picks the GPU
    size: int = 1          # number of processes
    launched: bool = False  # started by torchrun / accelerate / srun (a process group is expected)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "World":
        env = os.environ
        if "WORLD_SIZE" not in env or "RANK" not in env:
            return cls()
        world = cls(rank=int(env["RANK"]), local_rank=int(env.get("LOCAL_RANK", env["RANK"])),
                    size=int(env["WORLD_SIZE"]), launched=True)
        if not 0 <= world.rank < world.size:
            raise ValueError(f"RANK={world.rank} is outside [0, WORLD_SIZE={world.size}): a broken launcher "
                             f"environment; start with torchrun or accelerate launch.")
        return world


@contextmanager
def process_group(world: World, device: torch.device, timeout_s: float = 1800):
    """Join the launcher's process group for the block (a no-op for one unlaunched process).

    gloo serves CPU runs (and tests); nccl serves CUDA, bound to this rank's device."""
    if not world.launched or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), **kwargs)
    try:
        yield
    finally:
        dist.destroy_process_group()


def active(world: World) -> bool:
    return world.launched and dist.is_initialized()


def broadcast_object(obj, world: World):
    """Rank 0's `obj` on every rank (pickled: only for small, trusted values such as paths)."""
    if not active(world):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if active(world):
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Sum over ranks, in place; returns the tensor."""
    if active(world):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool | torch.Tensor, device: torch.device, world: World) -> bool:
    """True on every rank if `flag` is true on any rank (a stop request, a non-finite value)."""
    if not active(world):
        return bool(flag)
    value = flag.to(device=device, dtype=torch.float32) if torch.is_tensor(flag) \
        else torch.tensor(float(bool(flag)), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def shared_run_dir(own: str | Path, world: World) -> Path:
    """Rank 0's run directory on every rank. Hydra resolves `${now:...}` in each process, so ranks
    started a second apart get different directories; the others adopt rank 0's and remove their own
    when it holds only what Hydra wrote into it."""
    own = Path(own)
    chosen = Path(broadcast_object(str(own.resolve()), world))
    if chosen != own.resolve() and own.is_dir() and {p.name for p in own.iterdir()} <= _HYDRA_FILES:
        shutil.rmtree(own, ignore_errors=True)
        log.debug("rank %d: removed its own output dir %s, using rank 0's %s", world.rank, own, chosen)
    return chosen
