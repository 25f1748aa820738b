"""Tests of the Llama model (models/llama.py), its plain-torch op references and configs/model/*.yaml.

References: the paper's parameter counts, Hugging Face transformers' LlamaForCausalLM with the same
weights (mapped by models/hf.py), F.cross_entropy on the logits, a complex-number RoPE, closed-form formulas.
Run: python -m pytest tests/test_model.py -q   (~10 s on 2 cores)
"""

import math
from pathlib import Path

import hydra
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from models.kernels import resolve_kernels
from models.kernels.rmsnorm import rms_norm_torch
from models.kernels.rope import apply_rope_torch, rope_cos_sin
from models.kernels.swiglu import swiglu_torch
from models.llama import Llama, swiglu_hidden_dim

MODEL_CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "model").glob("*.yaml"))
# The lead's data/trainer configs define these; a stub keeps this file independent of them.
STUB = {"data": {"vocab_size": 512}, "trainer": {"seq_len": 64}}
TINY = dict(vocab_size=97, n_layer=2, n_head=4, d_model=64, max_seq_len=32, kernels="torch")


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return Llama(**{**TINY, **overrides})


def instantiate_model_config(path: Path):
    cfg = OmegaConf.merge(OmegaConf.create(STUB), {"model": OmegaConf.load(path)})
    OmegaConf.resolve(cfg)
    return hydra.utils.instantiate(cfg.model)


# ---- sizes and configs -------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [("llama124m", 123_587_328), ("llama210m", 208_540_416)])
def test_paper_parameter_counts(name, expected):
    with torch.device("meta"):  # no memory, no init cost
        model = instantiate_model_config(Path(__file__).parents[1] / "configs" / "model" / f"{name}.yaml")
    assert model.num_params() == expected
    assert model.num_params(non_embedding=True) == expected - 50304 * 768


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_every_model_config_instantiates(path):
    with torch.device("meta"):
        model = instantiate_model_config(path)
    assert isinstance(model, Llama)
    assert model.config.vocab_size in (512, 50304)


def test_flops_per_token_closed_form():
    with torch.device("meta"):
        model = Llama(50304, 12, 12, 768, 512)
    assert model.flops_per_token(512) == 6 * 123_587_328 + 12 * 12 * 768 * 512


@pytest.mark.parametrize("d_model, hidden", [(768, 2048), (256, 768), (128, 512), (1024, 2816), (96, 256)])
def test_swiglu_hidden_formula(d_model, hidden):
    assert swiglu_hidden_dim(d_model) == hidden == 256 * math.ceil((8 * d_model / 3) / 256)
    with torch.device("meta"):
        assert Llama(97, 1, 2, d_model, 16).layers[0].mlp.gate_proj.out_features == hidden
        assert Llama(97, 1, 2, d_model, 16, mlp_hidden=100).layers[0].mlp.down_proj.in_features == 100


# ---- equality with Hugging Face Llama ----------------------------------------------------------

def hf_llama_with_same_weights(model):
    """transformers' LlamaForCausalLM with our weights through models/hf.py, the mapping export uses."""
    from transformers import LlamaForCausalLM

    from models.hf import hf_config, to_hf_state

    hf = LlamaForCausalLM(hf_config(model.config, attn_implementation="eager")).float().eval()  # not our SDPA
    missing, unexpected = hf.load_state_dict(to_hf_state(model.state_dict()), strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # lm_head is tied to the embedding
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    return hf


def test_matches_hugging_face_llama_logits_loss_and_grads():
    model = tiny_model()
    with torch.no_grad():  # norms away from 1 so that their mapping is tested too
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    hf = hf_llama_with_same_weights(model)
    tokens = torch.randint(0, TINY["vocab_size"], (3, 20), generator=torch.Generator().manual_seed(1))

    torch.testing.assert_close(model(tokens), hf(tokens).logits, rtol=1e-5, atol=1e-5)
    # HF shifts labels inside; we are handed shifted targets, the last position has none
    targets = torch.cat([tokens[:, 1:], torch.full((3, 1), -100)], dim=1)
    loss, hf_loss = model(tokens, targets), hf(tokens, labels=tokens).loss
    torch.testing.assert_close(loss, hf_loss, rtol=1e-6, atol=1e-6)

    loss.backward()
    hf_loss.backward()
    hf_params = dict(hf.named_parameters())
    torch.testing.assert_close(model.embed_tokens.weight.grad, hf_params["model.embed_tokens.weight"].grad,
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model.layers[0].attn.q_proj.weight.grad,
                               hf_params["model.layers.0.self_attn.q_proj.weight"].grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model.layers[1].mlp_norm.weight.grad,
                               hf_params["model.layers.1.post_attention_layernorm.weight"].grad, rtol=1e-4, atol=1e-6)


# ---- loss and attention semantics ---------------------------------------------------------------

def test_loss_is_cross_entropy_of_logits_with_ignore_index():
    model = tiny_model()
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 97, (2, 16), generator=g)
    targets = torch.randint(0, 97, (2, 16), generator=g)
    logits = model(tokens)
    assert logits.shape == (2, 16, 97) and logits.dtype == torch.float32
    torch.testing.assert_close(model(tokens, targets), F.cross_entropy(logits.flatten(0, 1), targets.flatten()))

    targets[0, :5] = -100
    targets[1, 10:] = -100
    kept = targets != -100
    # mean over kept positions only, written out with log_softmax + gather
    nll = -logits.log_softmax(-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(model(tokens, targets), nll[kept].mean())


def test_causality_future_tokens_do_not_change_past_logits():
    model = tiny_model()
    tokens = torch.randint(0, 97, (1, 24), generator=torch.Generator().manual_seed(3))
    perturbed = tokens.clone()
    perturbed[0, 15] = (tokens[0, 15] + 1) % 97
    a, b = model(tokens), model(perturbed)
    torch.testing.assert_close(a[:, :15], b[:, :15], rtol=0, atol=1e-6)
    assert (a[:, 15:] - b[:, 15:]).abs().amax(-1).min() > 1e-4  # every later position sees the change


# ---- init --------------------------------------------------------------------------------------

def test_init_statistics_and_no_biases_and_tied_head():
    n_layer = 4
    model = tiny_model(vocab_size=512, n_layer=n_layer, n_head=4, d_model=256)
    residual_std = 0.02 / math.sqrt(2 * n_layer)
    for name, p in model.named_parameters():
        assert not name.endswith("bias")
        if name.endswith("norm.weight"):
            assert torch.equal(p, torch.ones_like(p)), name
        else:
            expected = residual_std if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            # >= 65k samples: the sample std is within ~0.3% of the true one; 3% leaves room
            assert p.std().item() == pytest.approx(expected, rel=0.03), name
            assert abs(p.mean().item()) < 0.05 * expected, name
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))

    # tied: the output layer IS the embedding matrix: zeroing token 7's embedding zeroes its logit
    with torch.no_grad():
        model.embed_tokens.weight[7] = 0
    tokens = torch.randint(0, 512, (2, 8), generator=torch.Generator().manual_seed(4))
    assert torch.equal(model(tokens)[..., 7], torch.zeros(2, 8))


# ---- op references -----------------------------------------------------------------------------

def test_rope_matches_complex_rotation():
    B, H, T, hd, theta = 2, 3, 64, 16, 10000.0
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(B, H, T, hd, generator=g), torch.randn(B, H, T, hd, generator=g)
    cos, sin = rope_cos_sin(T, hd, theta)
    q_rot, k_rot = apply_rope_torch(q, k, cos, sin)

    # pair i = (x[i], x[i + hd/2]) as the complex number x[i] + 1j x[i + hd/2], times e^{1j t theta^(-2i/hd)}
    angle = torch.arange(T, dtype=torch.float64)[:, None] * theta ** (-2 * torch.arange(hd // 2, dtype=torch.float64) / hd)
    rotation = torch.polar(torch.ones_like(angle), angle)
    for x, x_rot in ((q, q_rot), (k, k_rot)):
        z = torch.complex(x[..., : hd // 2].double(), x[..., hd // 2:].double()) * rotation
        expected = torch.cat([z.real, z.imag], dim=-1).float()
        torch.testing.assert_close(x_rot, expected, rtol=0, atol=2e-5)  # float32 angles up to 63 rad

    q16, _ = apply_rope_torch(q.bfloat16(), k.bfloat16(), cos, sin)
    assert q16.dtype == torch.bfloat16


def test_rms_norm_and_swiglu_references():
    g = torch.Generator().manual_seed(6)
    x, w = torch.randn(4, 7, 48, generator=g), torch.rand(48, generator=g) + 0.5
    x64 = x.double()
    expected = x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-5) * w.double()
    torch.testing.assert_close(rms_norm_torch(x, w, 1e-5), expected.float())
    assert rms_norm_torch(x.bfloat16(), w, 1e-5).dtype == torch.bfloat16

    gate, up = torch.randn(5, 33, generator=g), torch.randn(5, 33, generator=g)
    torch.testing.assert_close(swiglu_torch(gate, up), gate / (1 + torch.exp(-gate)) * up)


# ---- kernel selection and bad inputs -----------------------------------------------------------

def test_kernel_resolution():
    assert resolve_kernels("auto", "cpu") == "torch"
    assert resolve_kernels("torch", "cuda") == "torch"
    model = tiny_model(kernels="auto")
    model(torch.zeros(1, 4, dtype=torch.long))
    assert model.ops.impl == "torch" and model.kernels_device_type == "cpu"
    with pytest.raises(ValueError, match="model.kernels=auto"):
        tiny_model(kernels="cuda")


def test_bad_inputs_raise_value_errors_naming_the_fix():
    model = tiny_model()
    with pytest.raises(ValueError, match="max_seq_len=32.*trainer.seq_len"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="targets shape"):
        model(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="d_model=100 is not divisible by n_head=3"):
        Llama(97, 1, 3, 100, 16)
    with pytest.raises(ValueError, match="head_dim"):
        Llama(97, 1, 4, 36, 16)  # head_dim 9 cannot be rotated in pairs
