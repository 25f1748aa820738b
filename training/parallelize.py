"""Everything that prepares a built model for its device, in one place (the model file knows none of it).

    prepared = parallelize(model, cfg.trainer, device, world)
    prepared.model       # what the loop calls: DDP / FSDP-wrapped and compiled as configured
    prepared.raw         # the module itself: state dicts, parameters, FLOP counts
    prepared.autocast    # the forward's autocast context (bf16 on CUDA by default)
    with prepared.gradient_sync(last_micro_step): loss.backward()

In order: move to the device (`LOCAL_RANK` picks the GPU), fused kernels resolved for the device (Triton
on CUDA), TF32 matmuls on CUDA, then `trainer.parallel`:
  none  one process;
  ddp   DistributedDataParallel: gradients all-reduced on the last micro-step of an update only (no_sync
        before); RoPE tables are constants, so buffers are not re-broadcast every forward;
  fsdp  FSDP2 `fully_shard` on every transformer block, then on the root: parameters, gradients and
        optimizer state sharded over ranks (DTensors); gradient reduce-scatter on the last micro-step only;
  auto  ddp when launched with more than one process, else none.
then `torch.compile` (auto: on CUDA): the whole module for none/ddp (DDP first, so that compile splits
its graph at the bucket boundaries), each block before sharding for fsdp.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch
from omegaconf import DictConfig
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from training.distributed import World

PARALLEL = ("auto", "none", "ddp", "fsdp")


def resolve_device(name: str, world: World = World()) -> torch.device:
    """trainer.device (auto | cpu | cuda) -> a torch.device; on CUDA the rank's local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={world.local_rank} but only {torch.cuda.device_count()} GPUs are visible: "
                             f"start at most that many processes per node (--nproc_per_node).")
        return torch.device("cuda", world.local_rank)
    return torch.device(name)


def resolve_parallel(name: str, world: World) -> str:
    """trainer.parallel -> none | ddp | fsdp, with a clear error for a mode the launch cannot run."""
    if name not in PARALLEL:
        raise ValueError(f"trainer.parallel={name}: use one of {', '.join(PARALLEL)}.")
    if name == "auto":
        return "ddp" if world.size > 1 else "none"
    if name == "none" and world.size > 1:
        raise ValueError(f"trainer.parallel=none but {world.size} processes were launched: use trainer.parallel="
                         f"ddp or fsdp (or auto), or launch one process.")
    if name in ("ddp", "fsdp") and not world.launched:
        raise ValueError(f"trainer.parallel={name} needs a process group: launch with torchrun "
                         f"(torchrun --nproc_per_node=N train.py ...) or accelerate launch, or use "
                         f"trainer.parallel=auto for a single process.")
    return name


def accumulation_steps(batch_size: int, micro_batch_size: int, world_size: int) -> int:
    """Micro-steps per update so that batch_size = micro_batch_size x accumulation x world_size."""
    per_update = micro_batch_size * world_size
    if batch_size % per_update:
        raise ValueError(
            f"trainer.batch_size={batch_size} (sequences per update, all processes together) is not a multiple of "
            f"trainer.micro_batch_size={micro_batch_size} x {world_size} processes = {per_update}: "
            f"batch_size = micro_batch_size x accumulation x world_size. Pick micro_batch_size dividing "
            f"{batch_size // world_size if batch_size % world_size == 0 else batch_size} "
            f"or a batch_size that is a multiple of {per_update}.")
    return batch_size // per_update


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CUDA by default; fp32 on CPU (CPU bf16 autocast is slow and not the target)."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def enable_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


@dataclass
class Prepared:
    model: torch.nn.Module        # call this in the loop
    raw: torch.nn.Module          # the module underneath (state dicts, parameters)
    autocast: contextlib.AbstractContextManager
    parallel: str                 # none | ddp | fsdp
    kernels: str                  # torch | triton
    compiled: bool
    _sync: Callable = field(repr=False, default=None)

    def gradient_sync(self, enabled: bool):
        """Context for one micro-step's backward: all-reduce / reduce-scatter gradients only if `enabled`
        (the last micro-step of an update); the earlier ones accumulate locally."""
        return self._sync(enabled)


def parallelize(model: torch.nn.Module, t: DictConfig, device: torch.device, world: World) -> Prepared:
    """Prepare `model` (built on CPU) for training on `device` as trainer config `t` says."""
    parallel = resolve_parallel(t.get("parallel", "auto"), world)
    model = model.to(device)
    kernels = model.set_kernels(device.type)  # resolve kernels=auto now, before any compile
    if device.type == "cuda":
        enable_tf32()
    compile_ = t.compile is True or (t.compile == "auto" and device.type == "cuda")
    wrapped = model
    sync = lambda enabled: contextlib.nullcontext()  # noqa: E731  (one process: nothing to sync)
    if parallel == "ddp":
        # RoPE tables are constants: no buffer sync per forward (torch >= 2.13 names it forward_sync_buffers)
        sync_key = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(
            DistributedDataParallel).parameters else "broadcast_buffers"
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          **{sync_key: False})
        sync = lambda enabled: contextlib.nullcontext() if enabled else wrapped.no_sync()  # noqa: E731
    elif parallel == "fsdp":
        for block in model.layers:
            if compile_:
                block.compile()
            fully_shard(block)
        fully_shard(model)

        @contextlib.contextmanager
        def sync(enabled: bool):
            model.set_requires_gradient_sync(enabled)
            yield
    if compile_ and parallel != "fsdp":
        wrapped = torch.compile(wrapped)
    return Prepared(model=wrapped, raw=model, autocast=autocast_context(device, t.precision), parallel=parallel,
                    kernels=kernels, compiled=compile_, _sync=sync)


def grad_norm_value(norm: torch.Tensor) -> torch.Tensor:
    """clip_grad_norm_'s total norm as a plain tensor (under FSDP it is a replicated DTensor)."""
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
