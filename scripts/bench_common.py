"""Shared set-up of the GPU benchmark scripts (bench_kernels, bench_train)."""

import os

import torch



def bench_device(dry_run: bool) -> torch.device:
    """The CUDA device with TF32 on, or the CPU for a --dry-run (kernels under the Triton
    interpreter). Must run before the first import of models.kernels: triton reads
    TRITON_INTERPRET when the kernels are defined."""
    if dry_run and not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # as the trainer does (training.setup.enable_tf32, not imported: no hydra here)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    return device
