"""The Llama decoder of the paper setup (Schaipp et al. 2025), in one file, in the order it runs.

pre-RMSNorm blocks, RoPE (theta 10000), causal SDPA attention, SwiGLU MLP, no biases, tied
input/output embeddings, dropout 0. Weight names and the RoPE convention map 1:1 onto Hugging Face
`LlamaForCausalLM` (embed_tokens -> model.embed_tokens and lm_head, layers.i.attn.q_proj ->
model.layers.i.self_attn.q_proj, attn_norm -> input_layernorm, mlp_norm -> post_attention_layernorm).

Usage (Hydra builds it from configs/model/*.yaml with `_target_: models.llama.Llama`):

    model = Llama(vocab_size=50304, n_layer=12, n_head=12, d_model=768, max_seq_len=512)
    logits = model(tokens)          # tokens [B, T] int64 -> logits [B, T, V] float32
    loss = model(tokens, targets)   # targets [B, T], already shifted by the caller; -100 = ignore
    cache = model.new_cache()       # incremental decoding (models/sample.py): each call feeds only
    logits = model(prompt, cache=cache); logits = model(next_tokens, cache=cache)   # the new tokens

Kernels: the four fused ops (RMSNorm, RoPE, SwiGLU, linear+cross-entropy) are called through
`model.ops`, one shared `KernelOps` that every submodule holds. `kernels="auto"` resolves to Triton
on CUDA and plain torch elsewhere; the device is known only at run time, so resolution happens at
the first forward (and again if the input moves to another device type). The trainer may call
`model.set_kernels(device.type)` itself (it returns "torch" or "triton", for the log); either way
torch.compile traces the model in one graph.
"""

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.kernels import cross_entropy, resolve_kernels, rmsnorm, rope, swiglu


def swiglu_hidden_dim(d_model: int, multiple_of: int = 256) -> int:
    """Llama's MLP width: 2/3 of 4d (same parameters as a 4d GELU MLP), rounded up to a multiple of 256."""
    return multiple_of * -(-8 * d_model // (3 * multiple_of))  # integer ceil(8d/3 / 256) * 256


@dataclass
class LlamaConfig:
    vocab_size: int            # token ids are in [0, vocab_size); 50304 = GPT-2's 50257 padded to a multiple of 64
    n_layer: int               # number of transformer blocks L
    n_head: int                # attention heads; head_dim = d_model / n_head
    d_model: int               # residual stream width d
    max_seq_len: int           # longest sequence the model accepts (size of the RoPE tables)
    kernels: str = "auto"      # fused-op implementation: auto (triton on CUDA, else torch) | torch | triton
    rope_theta: float = 10000.0  # RoPE base: the angle of pair i at position t is t * theta^(-2i/head_dim)
    norm_eps: float = 1e-5     # RMSNorm epsilon
    mlp_hidden: int | None = None  # SwiGLU width; None: 256 * ceil((8d/3) / 256) (2048 at d = 768)
    init_std: float = 0.02     # std of the normal init; residual output projections use init_std / sqrt(2L)

    def __post_init__(self):
        if self.d_model % self.n_head != 0:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}; "
                             f"pick n_head that divides d_model (head_dim = d_model / n_head)")
        if self.head_dim % 2 != 0:
            raise ValueError(f"head_dim = d_model / n_head = {self.head_dim} is odd; RoPE rotates pairs, "
                             f"pick d_model and n_head with an even ratio")
        if self.mlp_hidden is None:
            self.mlp_hidden = swiglu_hidden_dim(self.d_model)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


@dataclass
class KernelOps:
    """The fused-op functions the modules call; filled by `Llama.set_kernels`, shared by all modules."""
    impl: str | None = None                      # "torch" or "triton", once resolved
    rms_norm: Callable | None = None             # (x, weight, eps) -> y
    apply_rope: Callable | None = None           # (q, k, cos, sin) -> (q, k)
    swiglu: Callable | None = None               # (gate, up) -> silu(gate) * up
    linear_cross_entropy: Callable | None = None  # (hidden [N, d], weight [V, d], targets [N]) -> mean loss


class KVCache:
    """Keys and values of the positions seen so far, per layer, so that decoding one more token costs
    one position's projections instead of a forward over the whole prefix. Buffers
    [n_layer, B, H, max_len, hd] are allocated at the first write with the keys' batch, dtype and
    device; `length` positions are filled and the next forward continues at position `length`.
    Training never builds one: `cache=None` runs exactly the code it ran before the cache existed."""

    def __init__(self, n_layer: int, max_len: int):
        self.n_layer, self.max_len = n_layer, max_len
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store layer's keys / values [B, H, T, hd] of positions length..length+T-1; return those of
        positions 0..length+T-1. `length` itself moves on in `advance`, once every layer has written."""
        if self.keys is None:
            B, H, _, hd = k.shape
            self.keys = k.new_zeros(self.n_layer, B, H, self.max_len, hd)
            self.values = torch.zeros_like(self.keys)
        if k.shape[0] != self.keys.shape[1]:
            raise ValueError(f"this KV cache holds a batch of {self.keys.shape[1]} sequences, the tokens are a "
                             f"batch of {k.shape[0]}: use one cache per batch (model.new_cache())")
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, ops: KernelOps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.ops = ops

    def forward(self, x):
        return self.ops.rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    """Multi-head causal self-attention with RoPE on queries and keys."""

    def __init__(self, cfg: LlamaConfig, ops: KernelOps, layer: int = 0):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.layer = layer  # this layer's slot in a KVCache
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)  # residual output projection
        self.ops = ops

    def forward(self, x, cos, sin, cache: KVCache | None = None):
        B, T, d = x.shape
        # [B, T, d] -> [B, H, T, hd]
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        q, k = self.ops.apply_rope(q, k, cos, sin)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # flash attention on GPU
        else:
            start = cache.length
            k, v = cache.update(self.layer, k, v)  # [B, H, start + T, hd]
            # query t sits at position start + t and sees keys 0..start + t: the causal mask shifted
            # by start (one query sees every cached key, so it needs no mask)
            mask = None if T == 1 else torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, d))


class SwiGLUMLP(nn.Module):
    def __init__(self, cfg: LlamaConfig, ops: KernelOps):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False)  # residual output projection
        self.ops = ops

    def forward(self, x):
        return self.down_proj(self.ops.swiglu(self.gate_proj(x), self.up_proj(x)))


class Block(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)): pre-norm keeps the residual stream un-normalized."""

    def __init__(self, cfg: LlamaConfig, ops: KernelOps, layer: int = 0):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps, ops)
        self.attn = Attention(cfg, ops, layer)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps, ops)
        self.mlp = SwiGLUMLP(cfg, ops)

    def forward(self, x, cos, sin, cache: KVCache | None = None):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache)
        return x + self.mlp(self.mlp_norm(x))


class Llama(nn.Module):
    def __init__(self, vocab_size: int, n_layer: int, n_head: int, d_model: int, max_seq_len: int,
                 kernels: str = "auto", rope_theta: float = 10000.0, norm_eps: float = 1e-5,
                 mlp_hidden: int | None = None, init_std: float = 0.02):
        super().__init__()
        self.config = cfg = LlamaConfig(vocab_size, n_layer, n_head, d_model, max_seq_len, kernels,
                                        rope_theta, norm_eps, mlp_hidden, init_std)
        self.ops = KernelOps()
        self.kernels_device_type = None  # the device type the kernels were resolved for (None: not yet)
        self.set_kernels(None)  # auto: torch until the device is known; a bad `kernels` name fails here

        # The embedding doubles as the LM head (tied): logits = final_hidden @ embed_tokens.weight.T.
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, self.ops, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps, self.ops)
        # RoPE tables [max_seq_len, head_dim / 2], float32; derived from the config, so not saved
        cos, sin = rope.rope_cos_sin(cfg.max_seq_len, cfg.head_dim, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights()

    def init_weights(self):
        """Normal(0, init_std) everywhere, residual output projections init_std / sqrt(2L), norms 1.

        The smaller residual std (GPT-2) keeps the residual stream's variance independent of depth:
        it receives 2L such projections.
        """
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        for block in self.layers:
            nn.init.normal_(block.attn.o_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.down_proj.weight, mean=0.0, std=residual_std)

    def set_kernels(self, device_type: str | None) -> str:
        """Resolve `config.kernels` for a device type ("cuda", "cpu", ...) and switch every module to it."""
        impl = resolve_kernels(self.config.kernels, device_type)
        if impl == "triton":
            self.ops.rms_norm = rmsnorm.rms_norm_triton
            self.ops.apply_rope = rope.apply_rope_triton
            self.ops.swiglu = swiglu.swiglu_triton
            self.ops.linear_cross_entropy = cross_entropy.linear_cross_entropy_triton
        else:
            self.ops.rms_norm = rmsnorm.rms_norm_torch
            self.ops.apply_rope = rope.apply_rope_torch
            self.ops.swiglu = swiglu.swiglu_torch
            self.ops.linear_cross_entropy = cross_entropy.linear_cross_entropy_torch
        self.ops.impl = impl
        self.kernels_device_type = device_type
        return impl

    def new_cache(self) -> KVCache:
        """An empty KV cache for `forward(..., cache=)`: room for max_seq_len positions."""
        return KVCache(self.config.n_layer, self.config.max_seq_len)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """tokens [B, T] -> logits [B, T, V] (float32); with targets [B, T] -> scalar mean loss.

        targets[b, t] is the token that should follow tokens[b, :t+1] (the caller shifts); positions
        with target -100 are left out of the mean. With a `cache` (from `new_cache`), tokens are the
        positions after the cache.length ones it holds: they attend to those too, and are added to it.
        """
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [batch, seq_len], got shape {tuple(tokens.shape)}")
        B, T = tokens.shape
        start = 0 if cache is None else cache.length
        if start + T > self.config.max_seq_len:
            raise ValueError(f"sequence length {start + T} exceeds max_seq_len={self.config.max_seq_len}; "
                             f"raise model.max_seq_len or lower trainer.seq_len"
                             + (" (or generate fewer tokens)" if cache is not None else ""))
        if tokens.device.type != self.kernels_device_type:
            self.set_kernels(tokens.device.type)

        x = self.embed_tokens(tokens)  # [B, T, d]
        cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]  # angles of these positions
        for block in self.layers:
            x = block(x, cos, sin, cache)
        x = self.norm(x)
        if cache is not None:
            cache.advance(T)

        if targets is None:
            return F.linear(x, self.embed_tokens.weight).float()  # [B, T, V]
        if targets.shape != tokens.shape:
            raise ValueError(f"targets shape {tuple(targets.shape)} != tokens shape {tuple(tokens.shape)}; "
                             f"pass one target per input position (-100 to ignore it)")
        # the loss op sees flat [B*T, d] rows; a fused kernel never materializes the [B*T, V] logits
        return self.ops.linear_cross_entropy(x.reshape(B * T, -1), self.embed_tokens.weight, targets.reshape(B * T))

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters, the tied embedding counted once; non_embedding=True leaves it out."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.embed_tokens.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs (forward + backward) per token at sequence length seq_len, for MFU.

        6N for the weight matmuls (2 per parameter forward, 4 backward; N counts the tied embedding
        once, as the LM head matmul), plus 12 * L * d * seq_len for attention: the scores QK^T and
        the weighted sum AV cost 2 * seq_len * d each per token and layer forward, times 3 for
        forward + backward. Convention of PaLM (appendix B) and nanoGPT: the causal mask is NOT
        credited (no halving), so MFU is comparable with those reports.
        """
        cfg = self.config
        return 6 * self.num_params() + 12 * cfg.n_layer * cfg.d_model * seq_len
