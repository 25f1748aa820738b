"""SwiGLU, the Triton half: the fused kernels behind `swiglu_triton` (contract and math: swiglu.py).

Imported only where a Triton kernel runs (the first use of `models.kernels.swiglu.swiglu_triton`
loads it), so the package imports without Triton. Runs on CUDA, or on CPU under the Triton interpreter
(TRITON_INTERPRET=1 set before this module is first imported).
"""

import torch
import triton
import triton.language as tl


# ---- Triton kernels -------------------------------------------------------------------------------

@triton.jit
def _swiglu_forward_kernel(gate_ptr, up_ptr, out_ptr, n_elements, BLOCK: tl.constexpr):
    # flat elementwise over contiguous tensors; int64 offsets (52M elements per micro-batch at 124M)
    offsets = tl.cast(tl.program_id(0), tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    g = tl.load(gate_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    out = g * tl.sigmoid(g) * u
    tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_backward_kernel(dout_ptr, gate_ptr, up_ptr, dgate_ptr, dup_ptr, n_elements, BLOCK: tl.constexpr):
    offsets = tl.cast(tl.program_id(0), tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    dout = tl.load(dout_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(gate_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    s = tl.sigmoid(g)
    silu = g * s
    # d silu / dg = s + g * s * (1 - s) = s * (1 + g * (1 - s))
    dgate = dout * u * s * (1.0 + g * (1.0 - s))
    tl.store(dgate_ptr + offsets, dgate.to(dgate_ptr.dtype.element_ty), mask=mask)
    tl.store(dup_ptr + offsets, (dout * silu).to(dup_ptr.dtype.element_ty), mask=mask)


_BLOCK = 1024  # elements per program: 4 warps x 32 threads x 8 elements, 16-byte bf16 vector accesses


# ---- launchers, as custom ops: torch.compile keeps them as opaque nodes of one graph ---------------

@torch.library.custom_op("lrsched::swiglu_forward", mutates_args=())
def _swiglu_forward(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """gate, up -> silu(gate) * up (contiguous)."""
    gate, up = gate.contiguous(), up.contiguous()  # no-ops on the model's tensors
    out = torch.empty_like(gate)
    n = gate.numel()
    _swiglu_forward_kernel[(triton.cdiv(n, _BLOCK),)](gate, up, out, n, BLOCK=_BLOCK, num_warps=4)
    return out


@_swiglu_forward.register_fake
def _(gate, up):
    return torch.empty_like(gate.contiguous())


@torch.library.custom_op("lrsched::swiglu_backward", mutates_args=())
def _swiglu_backward(dout: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dout, gate, up -> (d/dgate, d/dup), contiguous."""
    dout, gate, up = dout.contiguous(), gate.contiguous(), up.contiguous()
    dgate, dup = torch.empty_like(gate), torch.empty_like(up)
    n = gate.numel()
    _swiglu_backward_kernel[(triton.cdiv(n, _BLOCK),)](dout, gate, up, dgate, dup, n, BLOCK=_BLOCK, num_warps=4)
    return dgate, dup


@_swiglu_backward.register_fake
def _(dout, gate, up):
    return torch.empty_like(gate.contiguous()), torch.empty_like(up.contiguous())


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        gate, up = gate.contiguous(), up.contiguous()
        ctx.save_for_backward(gate, up)
        return _swiglu_forward(gate, up)

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        gate, up = ctx.saved_tensors
        return _swiglu_backward(dout, gate, up)


def swiglu_triton(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up with fused Triton forward/backward; same contract as `swiglu_torch`."""
    assert gate.shape == up.shape and gate.dtype == up.dtype, (
        f"gate and up must match: {tuple(gate.shape)} {gate.dtype} vs {tuple(up.shape)} {up.dtype}"
    )
    return SwiGLUFunction.apply(gate, up)
