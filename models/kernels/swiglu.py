"""SwiGLU gating of the Llama MLP: silu(gate) * up, elementwise, with silu(a) = a * sigmoid(a).

The MLP is down_proj(swiglu(gate_proj(x), up_proj(x))). This file is the op's entry point:
`swiglu_torch` is the plain-torch reference and `swiglu_triton` the fused Triton version
(swiglu_triton.py, loaded on first use). Usage:

    h = swiglu_torch(gate, up)    # gate, up [..., hidden] -> h [..., hidden]
    h = swiglu_triton(gate, up)   # same contract; CUDA, or CPU under TRITON_INTERPRET=1

Kernel math, in float32 after loading, with s = sigmoid(g):
    h = g * s * u;   dh/du = g * s;   dh/dg = u * s * (1 + g * (1 - s))
The forward saves only gate and up (eager torch also keeps silu(gate)); the backward recomputes s.
"""

import torch
import torch.nn.functional as F

from models.kernels import triton_half


def swiglu_torch(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


# The Triton half (kernels, launchers, `swiglu_triton`) is swiglu_triton.py, imported on first use of
# one of its names here (PEP 562): this module and the model's torch path import without Triton.
def __getattr__(name: str):
    return triton_half(__name__, name)
