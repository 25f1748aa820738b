"""SwiGLU gating of the Llama MLP: silu(gate) * up, elementwise, with silu(a) = a * sigmoid(a).

The MLP is down_proj(swiglu(gate_proj(x), up_proj(x))). This file is the one home of the op;
`swiglu_torch` is the plain-torch reference. Usage:

    h = swiglu_torch(gate, up)   # gate, up [..., hidden] -> h [..., hidden]
"""

import torch
import torch.nn.functional as F


def swiglu_torch(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up
