"""RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.

This file is the op's entry point: the plain-torch reference `rms_norm_torch` (the torch path of
the model, and what the kernel is tested against) and the fused Triton version `rms_norm_triton`
(forward and backward kernels behind a `torch.autograd.Function`, in rmsnorm_triton.py, loaded
on first use). Usage:

    y = rms_norm_torch(x, weight, eps=1e-5)     # x [..., d], weight [d] -> y [..., d] in x.dtype
    y = rms_norm_triton(x, weight, eps=1e-5)    # same contract; CUDA, or CPU under TRITON_INTERPRET=1

Kernel math (per row x of length d, all in float32 whatever the storage dtype):
    rstd = 1 / sqrt(mean(x^2) + eps),  x_hat = x * rstd,  y = x_hat * w
    backward, with g = dy * w:  dx = rstd * (g - x_hat * mean(g * x_hat)),  dw = sum_rows dy * x_hat
The forward saves only rstd (one float per row) besides x and w; x_hat is recomputed.
"""

import torch

from models.kernels import triton_half


def rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # The mean of squares is taken in float32: in bf16 it loses most of its digits for d ~ 1000.
    # The weight is applied in float32 too, and the result is cast back once, at the end.
    x32 = x.float()
    inv_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (x32 * inv_rms * weight.float()).to(x.dtype)


# The Triton half (kernels, launchers, `rms_norm_triton`) is rmsnorm_triton.py, imported on first use of
# one of its names here (PEP 562): this module and the model's torch path import without Triton.
def __getattr__(name: str):
    return triton_half(__name__, name)
