"""Shared set-up of the GPU benchmark scripts (bench_kernels, bench_train): the device, the
torch.compile backend, and the optional Liger-Kernel baseline.

    device = bench_device(args.dry_run)     # first, before models.kernels is imported
    fn = compile_for(device, fn)            # inductor on CUDA; the "eager" backend for CPU dry runs
    liger = liger_functional()              # None when liger-kernel is not installed
"""

import os

import torch


def bench_device(dry_run: bool) -> torch.device:
    """The CUDA device with TF32 on, or the CPU for a --dry-run (kernels under the Triton
    interpreter). Must run before the first import of models.kernels: triton reads
    TRITON_INTERPRET when the kernels are defined."""
    from training.parallelize import enable_tf32

    if dry_run and not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # the precision the trainer runs with
        enable_tf32()
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    return device


def compile_for(device: torch.device, fn):
    """torch.compile(fn) with inductor on CUDA; on CPU (dry runs) the "eager" backend, which only
    checks that Dynamo traces it: inductor's CPU codegen is not what the GPU run measures."""
    return torch.compile(fn, backend="inductor" if device.type == "cuda" else "eager")


def liger_functional():
    """liger_kernel.transformers.functional, or None when Liger-Kernel is not installed."""
    try:
        from liger_kernel.transformers import functional
    except ImportError:
        return None
    return functional
