"""RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.

This file is the one home of the op. `rms_norm_torch` is the plain-torch reference the model calls
on the torch path (and the reference the Triton kernel is tested against). Usage:

    y = rms_norm_torch(x, weight, eps=1e-5)   # x [..., d], weight [d] -> y [..., d] in x.dtype
"""

import torch


def rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # The mean of squares is taken in float32: in bf16 it loses most of its digits for d ~ 1000.
    # The weight is applied in float32 too, and the result is cast back once, at the end.
    x32 = x.float()
    inv_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (x32 * inv_rms * weight.float()).to(x.dtype)
