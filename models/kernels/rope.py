"""Rotary position embedding (RoPE), in the half-rotation convention of Hugging Face Llama.

The head dimension hd is split in two halves x1 = x[..., :hd/2], x2 = x[..., hd/2:]; the pair
(x1[i], x2[i]) at position t is rotated by the angle t * theta^(-2i/hd):

    out1 = x1 * cos - x2 * sin
    out2 = x2 * cos + x1 * sin

This is `q * cos + rotate_half(q) * sin` of transformers' LlamaForCausalLM (which stores cos/sin
with both halves repeated), so q/k projection weights map 1:1 to Hugging Face checkpoints.
This file is the op's entry point: `apply_rope_torch` is the plain-torch reference and
`apply_rope_triton` the fused Triton version (rope_triton.py, loaded on first use; q and k in one
launch; the backward is the rotation by the opposite angle, the same kernel with the sign of sin
flipped). Usage:

    cos, sin = rope_cos_sin(seq_len, head_dim, theta=10000.0, device=x.device)  # [T, hd/2] float32
    q, k = apply_rope_torch(q, k, cos, sin)                                      # q, k [B, H, T, hd]
    q, k = apply_rope_triton(q, k, cos, sin)    # same contract; CUDA, or CPU under TRITON_INTERPRET=1
"""

import torch

from models.kernels import triton_half


def rope_cos_sin(seq_len: int, head_dim: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each [seq_len, head_dim // 2] in float32."""
    assert head_dim % 2 == 0, f"RoPE needs an even head dimension, got {head_dim}"
    # inverse frequencies theta^(-2i/hd), i = 0 .. hd/2 - 1 (the same float32 formula as HF Llama)
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    positions = torch.arange(seq_len, dtype=torch.int64, device=device).float()
    angles = torch.outer(positions, inv_freq)  # [T, hd/2]
    return angles.cos(), angles.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x [B, H, T, hd]; cos/sin [T, hd/2] broadcast over batch and heads. Math in float32.
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out.to(x.dtype)


def apply_rope_torch(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys [B, H, T, hd] by the angles of positions 0..T-1 (cos/sin [T, hd/2])."""
    assert q.shape[-2:] == k.shape[-2:] and cos.shape == sin.shape == (q.shape[-2], q.shape[-1] // 2), (
        f"shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, cos {tuple(cos.shape)}"
    )
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


# The Triton half (kernels, launchers, `apply_rope_triton`) is rope_triton.py, imported on first use of
# one of its names here (PEP 562): this module and the model's torch path import without Triton.
def __getattr__(name: str):
    return triton_half(__name__, name)
