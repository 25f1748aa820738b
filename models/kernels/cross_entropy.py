"""Linear + cross-entropy: the LM head matmul and the next-token loss as one op.

loss = mean over {n : targets[n] != ignore_index} of  -log softmax(hidden[n] @ weight.T)[targets[n]]

It is one op so that a fused kernel can compute the loss (and its gradients) chunk by chunk without
ever materializing the [N, V] logits (V = 50304: 200 MB per 1k tokens in float32). This file is the
one home of the op; `linear_cross_entropy_torch` is the plain-torch reference, which does
materialize the logits. Usage:

    loss = linear_cross_entropy_torch(hidden, weight, targets)   # hidden [N, d], weight [V, d], targets [N]
"""

import torch
import torch.nn.functional as F


def linear_cross_entropy_torch(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of the logits hidden @ weight.T against targets; NaN if every target is ignored."""
    assert hidden.ndim == 2 and weight.ndim == 2 and hidden.shape[1] == weight.shape[1], (
        f"expected hidden [N, d] and weight [V, d], got {tuple(hidden.shape)} and {tuple(weight.shape)}"
    )
    assert targets.shape == hidden.shape[:1], f"expected targets [{hidden.shape[0]}], got {tuple(targets.shape)}"
    logits = F.linear(hidden, weight)  # [N, V]; bf16 under autocast
    # softmax in float32: in bf16 the log-sum-exp over 50k entries is too coarse for a loss curve
    return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index)
