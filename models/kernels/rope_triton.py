"""RoPE, the Triton half: the fused kernels behind `apply_rope_triton` (contract and math: rope.py).

Imported only where a Triton kernel runs (the first use of `models.kernels.rope.apply_rope_triton`
loads it), so the package imports without Triton. Runs on CUDA, or on CPU under the Triton interpreter
(TRITON_INTERPRET=1 set before this module is first imported).
"""

import torch
import triton
import triton.language as tl


# ---- Triton kernels -------------------------------------------------------------------------------

@triton.jit
def _rotate_heads(x_ptr, out_ptr, b, t, x_stride_b, x_stride_h, x_stride_t, out_stride_b, out_stride_h,
                  out_stride_t, n_heads, seq_len, half, cos, sin, BLOCK_H: tl.constexpr,
                  BLOCK_HALF: tl.constexpr, SIGN: tl.constexpr):
    # A [BLOCK_T, BLOCK_H, BLOCK_HALF] tile of pairs (x1, x2): positions t [BLOCK_T, 1, 1] of batch
    # row b, all heads; cos/sin [BLOCK_T, 1, BLOCK_HALF] broadcast over heads.
    # SIGN = +1 rotates by +angle (forward), -1 by -angle (backward).
    heads = tl.arange(0, BLOCK_H)[None, :, None]
    cols = tl.arange(0, BLOCK_HALF)[None, None, :]
    mask = (t < seq_len) & (heads < n_heads) & (cols < half)
    x_first = x_ptr + b * x_stride_b + t * x_stride_t + heads * x_stride_h + cols
    x1 = tl.load(x_first, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_first + half, mask=mask, other=0.0).to(tl.float32)
    out1 = x1 * cos - SIGN * x2 * sin
    out2 = x2 * cos + SIGN * x1 * sin
    out_first = out_ptr + b * out_stride_b + t * out_stride_t + heads * out_stride_h + cols
    tl.store(out_first, out1.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out_first + half, out2.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(q_ptr, k_ptr, q_out_ptr, k_out_ptr, cos_ptr, sin_ptr, seq_len, half, cos_stride_t,
                 q_stride_b, q_stride_h, q_stride_t, k_stride_b, k_stride_h, k_stride_t,
                 qo_stride_b, qo_stride_h, qo_stride_t, ko_stride_b, ko_stride_h, ko_stride_t,
                 n_q_heads, n_k_heads, BLOCK_T: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr,
                 BLOCK_HALF: tl.constexpr, SIGN: tl.constexpr):
    # Grid (batch, position blocks). cos/sin of the block's positions are loaded once for q and k.
    b = tl.cast(tl.program_id(0), tl.int64)  # int64: b * stride_b can pass 2^31 for large batches
    t = tl.cast(tl.program_id(1), tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)[:, None, None]
    cols = tl.arange(0, BLOCK_HALF)[None, None, :]
    cs_mask = (t < seq_len) & (cols < half)
    cos = tl.load(cos_ptr + t * cos_stride_t + cols, mask=cs_mask, other=0.0).to(tl.float32)
    sin = tl.load(sin_ptr + t * cos_stride_t + cols, mask=cs_mask, other=0.0).to(tl.float32)
    _rotate_heads(q_ptr, q_out_ptr, b, t, q_stride_b, q_stride_h, q_stride_t, qo_stride_b, qo_stride_h,
                  qo_stride_t, n_q_heads, seq_len, half, cos, sin, BLOCK_HQ, BLOCK_HALF, SIGN)
    _rotate_heads(k_ptr, k_out_ptr, b, t, k_stride_b, k_stride_h, k_stride_t, ko_stride_b, ko_stride_h,
                  ko_stride_t, n_k_heads, seq_len, half, cos, sin, BLOCK_HK, BLOCK_HALF, SIGN)


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


# ---- launcher, as a custom op: torch.compile keeps it as an opaque node of one graph ---------------

@torch.library.custom_op("lrsched::rope_rotate", mutates_args=())
def _rope_rotate(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 sign: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q, k [B, H, T, hd] (any strides) by sign * angle (sign = +1 forward, -1 backward)."""
    q, k = _last_dim_contiguous(q), _last_dim_contiguous(k)
    cos, sin = cos.contiguous(), sin.contiguous()
    B, n_q_heads, T, hd = q.shape
    n_k_heads = k.shape[1]
    half = hd // 2
    # empty_like keeps the strides of a dense input: the [B, T, H, hd] -> [B, H, T, hd] transposed
    # layout of the projections comes out as it went in
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    block_half = triton.next_power_of_2(half)
    block_hq, block_hk = triton.next_power_of_2(n_q_heads), triton.next_power_of_2(n_k_heads)
    # ~2048 elements of q per program (4 positions x 16 heads x 32 pairs at 12 heads, hd = 64):
    # enough work per program to hide the launch of a program, 4 warps
    block_t = min(triton.next_power_of_2(T), max(1, 2048 // (block_hq * block_half)))
    _rope_kernel[(B, triton.cdiv(T, block_t))](
        q, k, q_out, k_out, cos, sin, T, half, cos.stride(0), *q.stride()[:3], *k.stride()[:3],
        *q_out.stride()[:3], *k_out.stride()[:3], n_q_heads, n_k_heads, BLOCK_T=block_t, BLOCK_HQ=block_hq,
        BLOCK_HK=block_hk, BLOCK_HALF=block_half, SIGN=sign, num_warps=4)
    return q_out, k_out


@_rope_rotate.register_fake
def _(q, k, cos, sin, sign):
    return torch.empty_like(_last_dim_contiguous(q)), torch.empty_like(_last_dim_contiguous(k))


class RoPEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        ctx.save_for_backward(cos, sin)
        return _rope_rotate(q, k, cos, sin, 1)

    @staticmethod
    def backward(ctx, dq: torch.Tensor, dk: torch.Tensor):
        # the rotation is orthogonal: its transpose is the rotation by the opposite angle
        cos, sin = ctx.saved_tensors
        dq, dk = _rope_rotate(dq, dk, cos, sin, -1)
        return dq, dk, None, None


def apply_rope_triton(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                      sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE with a fused Triton kernel for q and k; same contract as `apply_rope_torch`."""
    assert q.ndim == k.ndim == 4 and q.shape[0] == k.shape[0] and q.shape[-2:] == k.shape[-2:], (
        f"expected q, k [B, H, T, hd] with the same B, T, hd; got {tuple(q.shape)} and {tuple(k.shape)}"
    )
    assert cos.shape == sin.shape == (q.shape[-2], q.shape[-1] // 2), (
        f"expected cos/sin [{q.shape[-2]}, {q.shape[-1] // 2}], got {tuple(cos.shape)}"
    )
    return RoPEFunction.apply(q, k, cos, sin)
