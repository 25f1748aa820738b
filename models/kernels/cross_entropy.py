"""Linear + cross-entropy: the LM head matmul and the next-token loss as one op.

loss = mean over {n : targets[n] != ignore_index} of  -log softmax(hidden[n] @ weight.T)[targets[n]]

It is one op so that a fused kernel can compute the loss (and its gradients) chunk by chunk without
ever materializing the [N, V] logits (V = 50304: 200 MB per 1k tokens in float32). This file is the
op's entry point: `linear_cross_entropy_torch` is the plain-torch reference, which does
materialize the logits, and `linear_cross_entropy_triton` the fused version
(cross_entropy_triton.py, loaded on first use). Usage:

    loss = linear_cross_entropy_torch(hidden, weight, targets)   # hidden [N, d], weight [V, d], targets [N]
    loss = linear_cross_entropy_triton(hidden, weight, targets)  # same contract; CUDA, or CPU under TRITON_INTERPRET=1

The fused version, per chunk of C token rows (the only O(V) buffer is one [C, V] logits chunk):
    logits = h_c @ W.T                                   one matmul (cuBLAS), in the autocast dtype
    Triton, one program per row:  lse = logsumexp(logits) by an online max/sum over V blocks;
        loss_n = lse - logits[target_n];  then logits <- (softmax - onehot(target_n)) / n_valid, in place
    grad_h[c] = dlogits @ W,   grad_W += dlogits.T @ h_c   (float32 accumulator)
The gradients are complete after the forward pass, so the backward only scales them by the incoming
grad (1, or 1/accumulation steps). Ignored rows get loss 0 and a zero gradient row; the mean divides
by the number of non-ignored targets (NaN if there is none, like F.cross_entropy).
"""

import torch
import torch.nn.functional as F

from models.kernels import triton_half


def _check_shapes(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> None:
    assert hidden.ndim == 2 and weight.ndim == 2 and hidden.shape[1] == weight.shape[1], (
        f"expected hidden [N, d] and weight [V, d], got {tuple(hidden.shape)} and {tuple(weight.shape)}"
    )
    assert targets.shape == hidden.shape[:1], f"expected targets [{hidden.shape[0]}], got {tuple(targets.shape)}"


def matmul_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype the reference's logits matmul runs in: the autocast dtype when autocast is on for
    hidden's device, else hidden's own dtype (the softmax is float32 either way)."""
    device_type = hidden.device.type
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype


def linear_cross_entropy_torch(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of the logits hidden @ weight.T against targets; NaN if every target is ignored."""
    _check_shapes(hidden, weight, targets)
    logits = F.linear(hidden, weight)  # [N, V]; bf16 under autocast
    # softmax in float32: in bf16 the log-sum-exp over 50k entries is too coarse for a loss curve
    return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index)


# The Triton half (kernels, launchers, `linear_cross_entropy_triton`) is cross_entropy_triton.py, imported
# on first use of one of its names here (PEP 562): this module and the model's torch path import without Triton.
def __getattr__(name: str):
    return triton_half(__name__, name)
