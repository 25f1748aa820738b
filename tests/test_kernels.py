"""The fused Triton kernels (models/kernels) against their plain-torch references.

Outputs and gradients in float32 and bfloat16 on odd sizes (hidden not a power of two, row counts
not a multiple of any block), the cross-entropy's chunking / ignore_index / autocast paths, and a
tiny Llama trained a few steps with kernels=triton and kernels=torch. Every buffer the kernels
allocate starts as NaN (fixture below), so an element a kernel forgets to write fails the comparison.
Then what torch.compile and the GPU rely on: the launchers' custom-op registrations (opcheck), the
tiny model compiled as one graph, every kernel compiled for Hopper by triton's own compiler (no GPU
needed), and the dry runs of the benchmark scripts.

On CPU the kernels run under the Triton interpreter (tests/conftest.py sets TRITON_INTERPRET=1 when no
GPU is present); on a GPU the same tests run natively. Run:

    python -m pytest tests/test_kernels.py -q
"""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import models.kernels as kernels
from models.kernels import resolve_kernels, triton_interpreted
from models.kernels.cross_entropy import linear_cross_entropy_torch, linear_cross_entropy_triton
from models.kernels.rmsnorm import rms_norm_torch, rms_norm_triton
from models.kernels.rope import apply_rope_torch, apply_rope_triton, rope_cos_sin
from models.kernels.swiglu import swiglu_torch, swiglu_triton
from models.llama import Llama

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    DEVICE == "cpu" and not triton_interpreted(),
    reason="Triton kernels need a CUDA device, or TRITON_INTERPRET=1 before import (tests/conftest.py sets it)",
)

# Kernel vs reference, per dtype of the inputs (applies to outputs and gradients).
TOLERANCE = {
    # The same float32 formulas evaluated in another order (one-block row sums vs torch's reduction
    # tree, chunked matmul sums, fused multiply-adds on GPU): a few float32 ulps on values of order 1.
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    # Both sides compute in float32 and round to bf16 (8 significant bits), but not identically: the
    # interpreter rounds float32 -> bf16 toward zero (GPUs round to nearest), the references round some
    # intermediates (F.silu(gate) before the product, bf16 logits-gradients summed by one matmul vs in
    # chunks). Two bf16 ulps: 2^-6 relative, and as absolute floor for values near zero.
    torch.bfloat16: dict(rtol=2**-6, atol=2**-6),
}
DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(autouse=True)
def poison_new_buffers(monkeypatch):
    """Fill every floating tensor made by torch.empty / torch.empty_like during a test with NaN."""

    def poisoned(factory):
        def make(*args, **kwargs):
            tensor = factory(*args, **kwargs)
            return tensor.fill_(math.nan) if tensor.is_floating_point() else tensor

        return make

    monkeypatch.setattr(torch, "empty", poisoned(torch.empty))
    monkeypatch.setattr(torch, "empty_like", poisoned(torch.empty_like))


def outputs_and_grads(fn, inputs, grad_outputs):
    """Call fn on fresh leaf copies of the floating inputs; return (outputs, grads of the inputs)."""
    leaves = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    outputs = fn(*leaves)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    wrt = [x for x in leaves if x.requires_grad]
    grads = torch.autograd.grad(outputs, wrt, grad_outputs)
    return [o.detach() for o in outputs], list(grads)


def assert_all_close(actual, expected, dtype):
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **TOLERANCE[dtype])


def randn(*shape, dtype=torch.float32, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g)).to(device=DEVICE, dtype=dtype)


# ---- one op at a time ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(37, 48), (2, 9, 96), (5, 100)], ids=str)
def test_rms_norm_matches_reference(shape, dtype):
    d = shape[-1]
    x = randn(*shape, dtype=dtype, scale=3.0, seed=1)
    weight = 1.0 + randn(d, scale=0.2, seed=2)  # float32, as the model's parameter
    dy = randn(*shape, dtype=dtype, seed=3)
    eps = 1e-5
    expected = outputs_and_grads(lambda a, w: rms_norm_torch(a, w, eps), (x, weight), (dy,))
    actual = outputs_and_grads(lambda a, w: rms_norm_triton(a, w, eps), (x, weight), (dy,))
    assert_all_close(actual[0] + actual[1], expected[0] + expected[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "batch, seq_len, q_heads, k_heads, head_dim",
    # hd/2 = 5, 32, 6 pairs; the second in 5 blocks of 8 positions (the last partial), the third with
    # fewer k than q heads
    [(2, 7, 3, 3, 10), (1, 37, 5, 5, 64), (2, 5, 6, 2, 12)],
)
def test_rope_matches_reference(batch, seq_len, q_heads, k_heads, head_dim, dtype):
    # q, k in the model's layout: [B, T, H, hd] projections viewed as [B, H, T, hd] (not contiguous)
    q = randn(batch, seq_len, q_heads, head_dim, dtype=dtype, seed=1).transpose(1, 2)
    k = randn(batch, seq_len, k_heads, head_dim, dtype=dtype, seed=2).transpose(1, 2)
    cos, sin = (t.to(DEVICE) for t in rope_cos_sin(seq_len, head_dim, theta=10000.0))
    dq = randn(*q.shape, dtype=dtype, seed=3)
    dk = randn(*k.shape, dtype=dtype, seed=4)
    expected = outputs_and_grads(lambda a, b: apply_rope_torch(a, b, cos, sin), (q, k), (dq, dk))
    actual = outputs_and_grads(lambda a, b: apply_rope_triton(a, b, cos, sin), (q, k), (dq, dk))
    assert_all_close(actual[0] + actual[1], expected[0] + expected[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(37, 96), (3, 5, 100)], ids=str)  # 3552 and 1500 elements: partial blocks
def test_swiglu_matches_reference(shape, dtype):
    gate = randn(*shape, dtype=dtype, scale=4.0, seed=1)  # |gate| up to ~15: sigmoid saturates both ways
    up = randn(*shape, dtype=dtype, seed=2)
    dout = randn(*shape, dtype=dtype, seed=3)
    expected = outputs_and_grads(swiglu_torch, (gate, up), (dout,))
    actual = outputs_and_grads(swiglu_triton, (gate, up), (dout,))
    assert_all_close(actual[0] + actual[1], expected[0] + expected[1], dtype)


# ---- fused linear + cross-entropy ---------------------------------------------------------------

N_TOKENS, D_MODEL, VOCAB = 37, 48, 131


def ce_inputs(dtype, logit_scale=1.0):
    hidden = randn(N_TOKENS, D_MODEL, dtype=dtype, seed=1)
    # weight std s / sqrt(d) gives logits of std ~s; every 4th target ignored
    weight = randn(VOCAB, D_MODEL, dtype=dtype, scale=logit_scale / math.sqrt(D_MODEL), seed=2)
    targets = torch.randint(0, VOCAB, (N_TOKENS,), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    targets[::4] = -100
    return hidden, weight, targets


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "chunk_size, block_v, logit_scale",
    [
        (None, None, 1.0),  # defaults: one chunk, one vocab block
        (16, 32, 1.0),  # 3 chunks (16, 16, 5 rows), 5 vocab blocks (the last 3 columns wide)
        (16, 32, 300.0),  # logits in the hundreds: the online log-sum-exp must rescale, not overflow
    ],
)
def test_linear_cross_entropy_matches_reference(chunk_size, block_v, logit_scale, dtype):
    hidden, weight, targets = ce_inputs(dtype, logit_scale)
    grad_loss = torch.tensor(2.5, device=DEVICE)  # not 1: the backward must scale the stored gradients

    def fused(h, w, t):
        return linear_cross_entropy_triton(h, w, t, chunk_size=chunk_size, block_v=block_v)

    expected = outputs_and_grads(linear_cross_entropy_torch, (hidden, weight, targets), (grad_loss,))
    actual = outputs_and_grads(fused, (hidden, weight, targets), (grad_loss,))
    assert_all_close(actual[0] + actual[1], expected[0] + expected[1], dtype)


def test_linear_cross_entropy_under_autocast_matches_reference():
    # The model's real use: float32 hidden and weight, bf16 autocast; both sides run the matmuls in bf16.
    hidden, weight, targets = ce_inputs(torch.float32)
    grad_loss = torch.tensor(1.0, device=DEVICE)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        expected = outputs_and_grads(linear_cross_entropy_torch, (hidden, weight, targets), (grad_loss,))
        actual = outputs_and_grads(lambda h, w, t: linear_cross_entropy_triton(h, w, t, chunk_size=16),
                                   (hidden, weight, targets), (grad_loss,))
    assert_all_close(actual[0] + actual[1], expected[0] + expected[1], torch.bfloat16)


def test_linear_cross_entropy_without_grad_and_all_ignored():
    hidden, weight, targets = ce_inputs(torch.float32)
    with torch.no_grad():  # the evaluation path: loss only
        torch.testing.assert_close(linear_cross_entropy_triton(hidden, weight, targets, chunk_size=16),
                                   linear_cross_entropy_torch(hidden, weight, targets), **TOLERANCE[torch.float32])
        # nothing to average over: NaN, as F.cross_entropy
        ignored = torch.full_like(targets, -100)
        assert torch.isnan(linear_cross_entropy_triton(hidden, weight, ignored))
        assert torch.isnan(linear_cross_entropy_torch(hidden, weight, ignored))


# ---- kernel selection and the whole model -------------------------------------------------------

def test_triton_selection():
    assert resolve_kernels("triton", DEVICE) == "triton"
    assert resolve_kernels("auto", "cpu") == "torch"  # the interpreter is for tests, never chosen by auto


def test_triton_on_cpu_without_interpreter_names_the_fix(monkeypatch):
    monkeypatch.setattr(kernels, "triton_interpreted", lambda: False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1.*model.kernels=auto"):
        resolve_kernels("triton", "cpu")


def test_tiny_model_trains_the_same_with_triton_and_torch_kernels():
    # Two copies of one tiny Llama (odd sizes: d 48, head_dim 16 -> 8 rotation pairs, MLP 100 wide),
    # trained 5 AdamW steps on the same batch; per-step losses agree to float32 round-off, amplified a
    # little by the steps (rtol 1e-4), and go down.
    config = dict(vocab_size=VOCAB, n_layer=2, n_head=3, d_model=D_MODEL, max_seq_len=16, mlp_hidden=100)
    torch.manual_seed(0)
    fused = Llama(**config, kernels="triton").to(DEVICE)
    plain = Llama(**config, kernels="torch").to(DEVICE)
    plain.load_state_dict(fused.state_dict())
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (2, 16), generator=g).to(DEVICE)
    targets = torch.randint(0, VOCAB, (2, 16), generator=g).to(DEVICE)
    targets[:, :3] = -100

    losses = {}
    for name, model in (("triton", fused), ("torch", plain)):
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
        losses[name] = []
        for _ in range(5):
            loss = model(tokens, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
        assert model.ops.impl == name
    torch.testing.assert_close(torch.tensor(losses["triton"]), torch.tensor(losses["torch"]), rtol=1e-4, atol=0)
    assert losses["triton"][-1] < losses["triton"][0] - 0.1


# ---- torch.compile: the launchers are custom ops, the model one graph ------------------------------

def custom_op_cases():
    """(launcher custom op, example arguments): each op file's launchers, at small odd shapes."""
    from models.kernels import cross_entropy, rmsnorm, rope, swiglu

    x, w = randn(37, 48), randn(48, seed=1)
    rstd = rmsnorm._rms_norm_forward(x, w, 1e-5)[1]
    q, k = randn(2, 7, 3, 10, seed=2).transpose(1, 2), randn(2, 7, 1, 10, seed=3).transpose(1, 2)
    cos, sin = (t.to(DEVICE) for t in rope_cos_sin(7, 10, 10000.0))
    hidden, weight, targets = ce_inputs(torch.float32)
    return {
        "rms_norm_forward": (rmsnorm._rms_norm_forward, (x, w, 1e-5)),
        "rms_norm_backward": (rmsnorm._rms_norm_backward, (randn(37, 48, seed=4), x, w, rstd)),
        "rope_rotate": (rope._rope_rotate, (q, k, cos, sin, -1)),
        "swiglu_forward": (swiglu._swiglu_forward, (x, randn(37, 48, seed=5))),
        "swiglu_backward": (swiglu._swiglu_backward, (x, randn(37, 48, seed=5), randn(37, 48, seed=6))),
        "linear_cross_entropy_forward": (cross_entropy._linear_cross_entropy_forward,
                                         (hidden, weight, targets, -100, torch.bfloat16, True, False, 16, 32)),
    }


@pytest.mark.parametrize("name", ["rms_norm_forward", "rms_norm_backward", "rope_rotate", "swiglu_forward",
                                  "swiglu_backward", "linear_cross_entropy_forward"])
def test_launcher_custom_ops_pass_opcheck(name):
    # torch.library.opcheck: the schema, and that the fake (meta) implementation torch.compile traces
    # with gives the real outputs' shapes, dtypes and strides
    op, args = custom_op_cases()[name]
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_tiny_model_compiles_to_one_graph_with_triton_kernels():
    # The kernels are custom ops: torch.compile keeps the model in one graph around them (fullgraph=True
    # fails on any graph break) and the compiled model computes what the eager one does. aot_eager runs
    # Dynamo and AOTAutograd without code generation: the graph capture is what is tested here.
    config = dict(vocab_size=VOCAB, n_layer=2, n_head=3, d_model=D_MODEL, max_seq_len=16, mlp_hidden=100)
    torch.manual_seed(0)
    model = Llama(**config, kernels="triton").to(DEVICE)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (2, 16), generator=g).to(DEVICE)
    targets = torch.randint(0, VOCAB, (2, 16), generator=g).to(DEVICE)

    def loss_and_grads(forward):
        model.zero_grad()
        loss = forward(tokens, targets)
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters()]

    torch._dynamo.reset()
    compiled = loss_and_grads(torch.compile(model, backend="aot_eager", fullgraph=True))
    torch._dynamo.reset()
    assert model.ops.impl == "triton"
    assert_all_close(compiled, loss_and_grads(model), torch.float32)


# ---- the GPU compiler, without a GPU -------------------------------------------------------------

# Compiles every kernel to a Hopper (sm_90) cubin with triton's bundled compiler and ptxas, in a
# process without TRITON_INTERPRET: the interpreter runs Python and misses what only the compiler
# rejects (types, shapes of constexpr paths, loop-carried values). Signatures: the 124M shapes.
COMPILE_FOR_HOPPER = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from models.kernels import cross_entropy, rmsnorm, rope, swiglu

def compile_kernel(fn, signature, constexprs, num_warps):
    signature = {**signature, **{name: "constexpr" for name in constexprs}}
    kernel = triton.compile(ASTSource(fn, signature, constexprs=constexprs), target=GPUTarget("cuda", 90, 32),
                            options={"num_warps": num_warps})
    assert "cubin" in kernel.asm, fn

for dt in ("fp32", "bf16"):
    compile_kernel(rmsnorm._rms_norm_forward_kernel,
                   dict(x_ptr=f"*{dt}", w_ptr="*fp32", y_ptr=f"*{dt}", rstd_ptr="*fp32", x_row_stride="i32",
                        y_row_stride="i32", n_cols="i32", eps="fp32"), dict(BLOCK=1024), 4)
    compile_kernel(rmsnorm._rms_norm_backward_kernel,
                   dict(dy_ptr=f"*{dt}", x_ptr=f"*{dt}", w_ptr="*fp32", rstd_ptr="*fp32", dx_ptr=f"*{dt}",
                        dw_partial_ptr="*fp32", dy_row_stride="i32", x_row_stride="i32", dx_row_stride="i32",
                        n_rows="i32", n_cols="i32"), dict(BLOCK=1024), 4)
    for write_grad in (True, False):
        compile_kernel(cross_entropy._cross_entropy_rows_kernel,
                       dict(logits_ptr=f"*{dt}", targets_ptr="*i64", loss_ptr="*fp32", n_valid_ptr="*i64",
                            logits_row_stride="i32", n_cols="i32", ignore_index="i32"),
                       dict(BLOCK_V=4096, WRITE_GRAD=write_grad), 8)
strides = {f"{t}_stride_{dim}": "i32" for t in ("q", "k", "qo", "ko") for dim in "bht"}
for sign in (1, -1):
    compile_kernel(rope._rope_kernel,
                   dict(q_ptr="*bf16", k_ptr="*bf16", q_out_ptr="*bf16", k_out_ptr="*bf16", cos_ptr="*fp32",
                        sin_ptr="*fp32", seq_len="i32", half="i32", cos_stride_t="i32", **strides,
                        n_q_heads="i32", n_k_heads="i32"),
                   dict(BLOCK_T=4, BLOCK_HQ=16, BLOCK_HK=16, BLOCK_HALF=32, SIGN=sign), 4)
compile_kernel(swiglu._swiglu_forward_kernel, dict(gate_ptr="*bf16", up_ptr="*bf16", out_ptr="*bf16",
                                                   n_elements="i32"), dict(BLOCK=1024), 4)
compile_kernel(swiglu._swiglu_backward_kernel, dict(dout_ptr="*bf16", gate_ptr="*bf16", up_ptr="*bf16",
                                                    dgate_ptr="*bf16", dup_ptr="*bf16", n_elements="i32"),
               dict(BLOCK=1024), 4)
"""


def bundled_ptxas_missing() -> bool:
    import triton

    bundled = Path(triton.__file__).parent / "backends/nvidia/bin/ptxas"
    return not bundled.exists() and "TRITON_PTXAS_PATH" not in os.environ


@pytest.mark.skipif(bundled_ptxas_missing(), reason="this triton build ships no ptxas (the Linux x86-64 wheels do)")
def test_kernels_compile_for_hopper_without_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silences triton 3.9's notice; 1 is its default
    proc = subprocess.run([sys.executable, "-c", COMPILE_FOR_HOPPER], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


# ---- the benchmark scripts -------------------------------------------------------------------------

def test_benchmark_scripts_run_their_dry_run(capsys):
    # tiny shapes, every implementation once (on CPU: times mean nothing); the GPU run is the measurement
    from scripts import bench_kernels, bench_train

    assert bench_kernels.main(["--dry-run"]) == 0
    assert bench_train.main(["--dry-run", "--variants", "ours-triton", "ours-torch-compile", "hf"]) == 0
    out = capsys.readouterr().out
    assert "failed" not in out
    for op in ("rms_norm", "rope", "swiglu", "cross_entropy"):
        for impl in ("eager", "compile", "ours"):
            assert re.search(rf"^{op}\s+{impl}\s", out, re.MULTILINE), f"no {op} / {impl} row"
    for variant in ("ours-triton", "ours-torch-compile", "hf"):
        assert re.search(rf"^tiny:16\s+{variant}\s", out, re.MULTILINE), f"no {variant} row"
