"""RMSNorm, the Triton half: the fused kernels behind `rms_norm_triton` (contract and math: rmsnorm.py).

Imported only where a Triton kernel runs (the first use of `models.kernels.rmsnorm.rms_norm_triton`
loads it), so the package imports without Triton. Runs on CUDA, or on CPU under the Triton interpreter
(TRITON_INTERPRET=1 set before this module is first imported).
"""

import torch
import triton
import triton.language as tl


# ---- Triton kernels -------------------------------------------------------------------------------

@triton.jit
def _rms_norm_forward_kernel(x_ptr, w_ptr, y_ptr, rstd_ptr, x_row_stride, y_row_stride, n_cols, eps,
                             BLOCK: tl.constexpr):
    # One program per row; BLOCK = next power of two >= n_cols, the tail masked off.
    row = tl.cast(tl.program_id(0), tl.int64)  # int64: row * stride overflows int32 past 2^31 elements
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    # upcast right after loading: every arithmetic op below is float32
    x = tl.load(x_ptr + row * x_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    y = x * rstd * w
    tl.store(y_ptr + row * y_row_stride + cols, y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + row, rstd)


@triton.jit
def _rms_norm_backward_kernel(dy_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, dw_partial_ptr,
                              dy_row_stride, x_row_stride, dx_row_stride, n_rows, n_cols,
                              BLOCK: tl.constexpr):
    # A fixed number of programs (a few per SM), each striding over rows: dw is a sum over all rows,
    # and keeping one float32 partial sum per program in registers avoids atomics on dw.
    pid = tl.program_id(0)
    n_programs = tl.num_programs(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK], dtype=tl.float32)
    for row in range(pid, n_rows, n_programs):
        row64 = tl.cast(row, tl.int64)
        x = tl.load(x_ptr + row64 * x_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + row64 * dy_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + row64)
        x_hat = x * rstd
        g = dy * w
        # d/dx of x * rstd(x): the rstd term contributes -x_hat * mean(g * x_hat)
        dx = rstd * (g - x_hat * (tl.sum(g * x_hat, axis=0) / n_cols))
        tl.store(dx_ptr + row64 * dx_row_stride + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dw_acc += dy * x_hat
    tl.store(dw_partial_ptr + pid * n_cols + cols, dw_acc, mask=mask)


def _num_warps(block: int) -> int:
    # ~8 to 16 elements per thread: 4 warps for d <= 1024 (d = 768 -> BLOCK 1024), more for wider rows
    return max(1, min(16, block // 256))


def _backward_programs(x: torch.Tensor, n_rows: int) -> int:
    # 4 programs per SM keeps every SM busy while the float32 dw partials stay a small [P, d] buffer.
    if x.is_cuda:
        return min(n_rows, 4 * torch.cuda.get_device_properties(x.device).multi_processor_count)
    return min(n_rows, 4)  # interpreter: few programs, each striding over several rows (tests that path)


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


# ---- launchers, as custom ops: torch.compile keeps them as opaque nodes of one graph ---------------

@torch.library.custom_op("lrsched::rms_norm_forward", mutates_args=())
def _rms_norm_forward(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x [N, d] -> y [N, d] in x.dtype, rstd [N] float32."""
    x, weight = _last_dim_contiguous(x), weight.contiguous()  # no-ops on the model's tensors
    n_rows, d = x.shape
    y = torch.empty((n_rows, d), dtype=x.dtype, device=x.device)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(d)
    _rms_norm_forward_kernel[(n_rows,)](x, weight, y, rstd, x.stride(0), y.stride(0), d, eps,
                                        BLOCK=block, num_warps=_num_warps(block))
    return y, rstd


@_rms_norm_forward.register_fake
def _(x, weight, eps):
    return x.new_empty(x.shape), x.new_empty(x.shape[0], dtype=torch.float32)


@torch.library.custom_op("lrsched::rms_norm_backward", mutates_args=())
def _rms_norm_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                       rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dy, x [N, d] -> dx [N, d] in x.dtype, dw [d] in weight.dtype."""
    dy, x, weight, rstd = _last_dim_contiguous(dy), _last_dim_contiguous(x), weight.contiguous(), rstd.contiguous()
    n_rows, d = x.shape
    dx = torch.empty((n_rows, d), dtype=x.dtype, device=x.device)
    programs = _backward_programs(x, n_rows)
    dw_partial = torch.empty((programs, d), dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(d)
    _rms_norm_backward_kernel[(programs,)](dy, x, weight, rstd, dx, dw_partial, dy.stride(0), x.stride(0),
                                           dx.stride(0), n_rows, d, BLOCK=block, num_warps=_num_warps(block))
    return dx, dw_partial.sum(dim=0).to(weight.dtype)


@_rms_norm_backward.register_fake
def _(dy, x, weight, rstd):
    return x.new_empty(x.shape), weight.new_empty(weight.shape)


class RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])  # [N, d], a view of the model's contiguous activations
        y, rstd = _rms_norm_forward(x2, weight, eps)
        ctx.save_for_backward(x2, weight, rstd)
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x2, weight, rstd = ctx.saved_tensors
        dx, dw = _rms_norm_backward(dy.reshape(-1, dy.shape[-1]), x2, weight, rstd)
        return dx.view(dy.shape), dw, None


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm with fused Triton forward/backward; same contract as `rms_norm_torch`."""
    assert weight.shape == x.shape[-1:], f"weight must be [{x.shape[-1]}], got {tuple(weight.shape)}"
    return RMSNormFunction.apply(x, weight, eps)
