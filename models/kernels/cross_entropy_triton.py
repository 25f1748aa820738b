"""Linear + cross-entropy, the Triton half: the fused kernels behind `linear_cross_entropy_triton`
(contract and math: cross_entropy.py).

Imported only where a Triton kernel runs (the first use of `models.kernels.cross_entropy.linear_cross_entropy_triton`
loads it), so the package imports without Triton. Runs on CUDA, or on CPU under the Triton interpreter
(TRITON_INTERPRET=1 set before this module is first imported).
"""

import torch
import triton
import triton.language as tl

from models.kernels.cross_entropy import _check_shapes, matmul_dtype


# ---- Triton kernel --------------------------------------------------------------------------------

@triton.jit
def _cross_entropy_rows_kernel(logits_ptr, targets_ptr, loss_ptr, n_valid_ptr, logits_row_stride, n_cols,
                               ignore_index, BLOCK_V: tl.constexpr, WRITE_GRAD: tl.constexpr):
    # One program per token row of the [C, V] logits chunk; float32 math after every load.
    row = tl.cast(tl.program_id(0), tl.int64)
    row_ptr = logits_ptr + row * logits_row_stride
    target = tl.load(targets_ptr + row)
    valid = target != ignore_index

    # pass 1: log-sum-exp with a running max m and a running sum s of exp(x - m), rescaled when m grows
    m = tl.full([], float("-inf"), tl.float32)
    s = tl.full([], 0.0, tl.float32)
    for start in range(0, n_cols, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(row_ptr + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    lse = m + tl.log(s)
    target_logit = tl.load(row_ptr + target, mask=valid, other=0.0).to(tl.float32)
    tl.store(loss_ptr + row, tl.where(valid, lse - target_logit, 0.0))

    # pass 2: d(mean loss)/d logits = (softmax - onehot) / n_valid, written over the logits in place
    if WRITE_GRAD:
        scale = tl.where(valid, 1.0 / tl.load(n_valid_ptr).to(tl.float32), 0.0)
        for start in range(0, n_cols, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            mask = cols < n_cols
            x = tl.load(row_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            grad = (tl.exp(x - lse) - tl.where(cols == target, 1.0, 0.0)) * scale
            tl.store(row_ptr + cols, grad.to(logits_ptr.dtype.element_ty), mask=mask)


def _default_block_v(vocab: int) -> int:
    # 4096 columns per step: 13 steps over V = 50304, 16 elements per thread at 8 warps
    return min(4096, triton.next_power_of_2(vocab))


def _default_chunk_size(n_rows: int, vocab: int, element_size: int) -> int:
    # The [C, V] logits chunk is the op's only O(V) activation. ~256 MiB keeps the peak a small fraction
    # of eager's [N, V] logits (plus their float32 copies) while the matmuls stay large:
    # C = 2560 rows at V = 50304 in bf16, 10 chunks for a 50 x 512 micro-batch.
    rows = (256 << 20) // (vocab * element_size)
    return min(n_rows, max(128, rows // 128 * 128))


# ---- launcher, as a custom op: torch.compile keeps it as an opaque node of one graph ---------------

@torch.library.custom_op("lrsched::linear_cross_entropy_forward", mutates_args=())
def _linear_cross_entropy_forward(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                  ignore_index: int, compute_dtype: torch.dtype, grad_hidden: bool,
                                  grad_weight: bool, chunk_size: int, block_v: int
                                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chunked forward: (mean loss, d loss / d hidden [N, d] in compute_dtype, d loss / d weight
    [V, d] float32); a gradient not asked for comes back as an empty tensor. chunk_size, block_v: 0 =
    heuristic. The matmuls run in compute_dtype (the autocast dtype, decided by the caller: under
    torch.compile the autocast state is not visible in here), the softmax in float32."""
    h, w = hidden.to(compute_dtype), weight.to(compute_dtype)  # one cast each (autocast would re-cast per chunk)
    targets = targets.contiguous()
    n_rows, vocab = h.shape[0], w.shape[0]
    chunk = chunk_size or _default_chunk_size(n_rows, vocab, h.element_size())
    block = block_v or _default_block_v(vocab)

    n_valid = (targets != ignore_index).sum()  # stays on the device: the kernel reads it, no host sync
    loss_rows = torch.empty(n_rows, dtype=torch.float32, device=h.device)
    grad_h = torch.empty_like(h) if grad_hidden else h.new_empty(0)
    grad_w = w.new_zeros(w.shape if grad_weight else (0,), dtype=torch.float32)  # float32 accumulator
    with torch.autocast(h.device.type, enabled=False):
        for start in range(0, n_rows, chunk):
            end = min(start + chunk, n_rows)
            h_chunk = h[start:end]
            logits = h_chunk @ w.t()  # [c, V]; becomes d loss / d logits in place
            _cross_entropy_rows_kernel[(end - start,)](
                logits, targets[start:end], loss_rows[start:end], n_valid, logits.stride(0), vocab,
                ignore_index, BLOCK_V=block, WRITE_GRAD=grad_hidden or grad_weight,
                num_warps=8 if block >= 2048 else 4)
            if grad_hidden:
                torch.mm(logits, w, out=grad_h[start:end])
            if grad_weight:
                if logits.dtype == torch.float32:
                    grad_w.addmm_(logits.t(), h_chunk)
                else:  # bf16 matmul (float32 accumulation inside), summed over chunks in float32
                    grad_w += logits.t() @ h_chunk
    return loss_rows.sum() / n_valid, grad_h, grad_w


@_linear_cross_entropy_forward.register_fake
def _(hidden, weight, targets, ignore_index, compute_dtype, grad_hidden, grad_weight, chunk_size, block_v):
    return (hidden.new_empty((), dtype=torch.float32),
            hidden.new_empty(hidden.shape if grad_hidden else (0,), dtype=compute_dtype),
            weight.new_empty(weight.shape if grad_weight else (0,), dtype=torch.float32))


class LinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, compute_dtype, chunk_size, block_v):
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        loss, grad_h, grad_w = _linear_cross_entropy_forward(hidden, weight, targets, ignore_index, compute_dtype,
                                                             need_hidden, need_weight, chunk_size, block_v)
        ctx.hidden_dtype, ctx.weight_dtype = hidden.dtype, weight.dtype
        ctx.save_for_backward(grad_h, grad_w)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        # the gradients of the mean loss are ready; the chain rule only scales them by d out / d loss
        grad_h, grad_w = ctx.saved_tensors
        grad_hidden = grad_h.to(ctx.hidden_dtype) * grad_loss if ctx.needs_input_grad[0] else None
        grad_weight = grad_w.to(ctx.weight_dtype) * grad_loss if ctx.needs_input_grad[1] else None
        return grad_hidden, grad_weight, None, None, None, None, None


def linear_cross_entropy_triton(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                ignore_index: int = -100, *, chunk_size: int | None = None,
                                block_v: int | None = None) -> torch.Tensor:
    """Fused, chunked version of `linear_cross_entropy_torch` (same contract). Targets must lie in
    [0, V) or equal ignore_index. chunk_size (token rows per logits chunk) and block_v (vocab columns
    per kernel step) default to heuristics for d = 768, V = 50304; tests set small values."""
    _check_shapes(hidden, weight, targets)
    # the precision of the reference, decided here because the custom op cannot see autocast under compile
    dtype = matmul_dtype(hidden)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return LinearCrossEntropyFunction.apply(hidden, weight, targets, ignore_index, dtype, chunk_size or 0,
                                                block_v or 0)
    # evaluation: the loss alone, no gradient pass over the logits and no gradient matmuls
    return _linear_cross_entropy_forward(hidden, weight, targets, ignore_index, dtype, False, False,
                                         chunk_size or 0, block_v or 0)[0]
