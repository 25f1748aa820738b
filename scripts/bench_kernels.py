"""Benchmark: each fused op (models/kernels), forward + backward, against eager torch, torch.compile
and Liger-Kernel, all measured in this process on one GPU.

    python -m scripts.bench_kernels                        # all ops at the 124M shapes, 50 x 512 tokens
    python -m scripts.bench_kernels --ops cross_entropy --batch 25 --seq-len 1024
    python -m scripts.bench_kernels --dry-run              # CPU smoke test: tiny shapes, every path once

Per op and implementation: the median forward+backward time (triton.testing.do_bench), the peak
memory above the inputs during one forward+backward, both also as ratios to eager, and the largest
deviation of outputs and gradients from eager (a check that the GPU path computes the same thing).
Eager is the plain-torch reference in models/kernels (imported, never copied); "compile" is
torch.compile of that reference; "liger" runs when liger-kernel is installed; "ours" is the
Triton version the model uses. Inputs have the model's dtypes under bf16 autocast: RMSNorm reads
the float32 residual stream, RoPE and SwiGLU the bf16 projections, the loss the float32 final hidden
states and the float32 tied embedding. The targets of the issue are checked at the end:
each op >= 1.5x eager and >= 1x compile; the fused loss's peak memory <= 1/4 of eager's.

--dry-run runs on CPU (kernels under TRITON_INTERPRET=1, torch.compile with the "eager" backend) at
tiny shapes, once per implementation, and prints the same table with CPU wall times that mean nothing.
"""

import argparse
import math
import sys
import time

import torch

from scripts.bench_common import bench_device, compile_for, liger_functional


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="+", default=["rms_norm", "rope", "swiglu", "cross_entropy"],
                        choices=["rms_norm", "rope", "swiglu", "cross_entropy"])
    parser.add_argument("--batch", type=int, default=50, help="sequences per micro-batch (paper: 50)")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--n-head", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--mlp-hidden", type=int, default=None, help="default: Llama's 256 * ceil(8d/3 / 256)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    parser.add_argument("--dry-run", action="store_true", help="CPU smoke test at tiny shapes (no timing)")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.batch, args.seq_len, args.d_model, args.n_head, args.vocab, args.mlp_hidden = 2, 19, 48, 3, 131, 100
    elif not torch.cuda.is_available():
        parser.error("no CUDA device: the benchmark needs a GPU (use --dry-run for a CPU smoke test)")
    if args.d_model % args.n_head or (args.d_model // args.n_head) % 2:
        parser.error(f"--d-model {args.d_model} / --n-head {args.n_head} must be an even integer head size")
    return args


# ---- the cases: base inputs and the implementations of one op ------------------------------------

def op_cases(args, device):
    """{op: (base inputs, which of them get gradients, {implementation: fn(*inputs) -> outputs})}."""
    from models.kernels.cross_entropy import linear_cross_entropy_torch, linear_cross_entropy_triton, matmul_dtype
    from models.kernels.rmsnorm import rms_norm_torch, rms_norm_triton
    from models.kernels.rope import apply_rope_torch, apply_rope_triton, rope_cos_sin
    from models.kernels.swiglu import swiglu_torch, swiglu_triton
    from models.llama import swiglu_hidden_dim

    liger = liger_functional()
    g = torch.Generator(device="cpu").manual_seed(0)
    B, T, d, H = args.batch, args.seq_len, args.d_model, args.n_head
    N, hd, hidden = B * T, d // H, args.mlp_hidden or swiglu_hidden_dim(d)

    def randn(*shape, dtype=torch.float32, std=1.0):
        return (std * torch.randn(*shape, generator=g)).to(device=device, dtype=dtype)

    cases = {}
    eps = 1e-5
    cases["rms_norm"] = (
        [randn(N, d), 1.0 + randn(d, std=0.1)], [True, True],
        {"eager": lambda x, w: rms_norm_torch(x, w, eps),
         "liger": liger and (lambda x, w: liger.liger_rms_norm(x, w, eps)),
         "ours": lambda x, w: rms_norm_triton(x, w, eps)},
    )
    cos, sin = (t.to(device) for t in rope_cos_sin(T, hd, 10000.0))
    cos_hf, sin_hf = torch.cat((cos, cos), -1)[None], torch.cat((sin, sin), -1)[None]  # HF layout [1, T, hd]
    # q, k as the model makes them: [B, T, H, hd] projections viewed as [B, H, T, hd]
    cases["rope"] = (
        [randn(B, T, H, hd, dtype=torch.bfloat16).transpose(1, 2),
         randn(B, T, H, hd, dtype=torch.bfloat16).transpose(1, 2)], [True, True],
        {"eager": lambda q, k: apply_rope_torch(q, k, cos, sin),
         "liger": liger and (lambda q, k: liger.liger_rope(q, k, cos_hf, sin_hf)),
         "ours": lambda q, k: apply_rope_triton(q, k, cos, sin)},
    )
    cases["swiglu"] = (
        [randn(N, hidden, dtype=torch.bfloat16), randn(N, hidden, dtype=torch.bfloat16)], [True, True],
        {"eager": swiglu_torch, "liger": liger and liger.liger_swiglu, "ours": swiglu_triton},
    )
    targets = torch.randint(0, args.vocab, (N,), generator=g).to(device)
    targets[::50] = -100  # a few ignored positions, as padding would give
    cases["cross_entropy"] = (
        [randn(N, d), randn(args.vocab, d, std=0.02)], [True, True],
        {"eager": lambda h, w: linear_cross_entropy_torch(h, w, targets),
         "liger": liger and (lambda h, w: liger_linear_cross_entropy(liger, h, w, targets, matmul_dtype(h))),
         "ours": lambda h, w: linear_cross_entropy_triton(h, w, targets)},
    )
    for op, (_, _, impls) in cases.items():
        if not args.no_compile:
            impls["compile"] = compile_for(device, impls["eager"])  # the reference itself, compiled
        order = [name for name in ("eager", "compile", "liger", "ours") if impls.get(name)]
        cases[op] = (cases[op][0], cases[op][1], {name: impls[name] for name in order})
    return {op: cases[op] for op in args.ops}


def liger_linear_cross_entropy(liger, hidden, weight, targets, dtype):
    # Liger's fused op runs in the dtype it is given: cast to the reference's matmul dtype under
    # autocast (models.kernels.cross_entropy.matmul_dtype), to compare like with like
    out = liger.liger_fused_linear_cross_entropy(hidden.to(dtype), weight.to(dtype), targets)
    return out[0] if isinstance(out, tuple) else out


# ---- measuring ---------------------------------------------------------------------------------

def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def forward_backward(fn, leaves, grad_outputs, autocast):
    with autocast:
        outputs = as_tuple(fn(*leaves))
    torch.autograd.backward(outputs, grad_outputs)
    return outputs


def measure(fn, inputs, needs_grad, grad_outputs, autocast, device):
    """(median ms, peak MiB above the inputs, outputs + grads of one call) for one implementation.

    Every phase (warm-up, the measured call, the timing loop) gets fresh copies of the inputs and of
    the incoming gradients: some implementations (Liger's) write into them in place."""

    def fresh():
        leaves = [x.detach().clone().requires_grad_(r) for x, r in zip(inputs, needs_grad)]
        return leaves, [x for x in leaves if x.requires_grad], [g.clone() for g in grad_outputs]

    def step(leaves, wrt, grads):
        for x in wrt:
            x.grad = None
        return forward_backward(fn, leaves, grads, autocast)

    if device.type != "cuda":  # dry run: one call, a wall time that means nothing, no memory figure
        leaves, wrt, grads = fresh()
        start = time.perf_counter()
        outputs = step(leaves, wrt, grads)
        ms = (time.perf_counter() - start) * 1e3
        return ms, math.nan, [o.detach() for o in outputs] + [x.grad for x in wrt]

    import triton.testing

    step(*fresh())  # compilation / first-call costs out of the way
    leaves, wrt, grads = fresh()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    outputs = step(leaves, wrt, grads)
    torch.cuda.synchronize()
    peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    results = [o.detach() for o in outputs] + [x.grad for x in wrt]
    del outputs, leaves, wrt, grads
    timing = fresh()
    ms = triton.testing.do_bench(lambda: step(*timing), grad_to_none=timing[1], return_mode="median")
    return ms, peak_mib, results


def max_rel_error(results, reference):
    """Largest |a - b| / max|b| over outputs and gradients (float32 comparisons)."""
    return max(((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()
               for a, b in zip(results, reference, strict=True))


def main(argv=None):
    args = parse_args(argv)
    device = bench_device(args.dry_run)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    print(f"shapes: {args.batch} x {args.seq_len} tokens, d {args.d_model}, {args.n_head} heads, vocab {args.vocab}"
          + ("  [DRY RUN on CPU: times are meaningless]" if device.type == "cpu" else ""))
    if liger_functional() is None:
        print("liger-kernel not installed: its column is skipped (pip install liger-kernel)")

    header = (f"{'op':<14}{'impl':<9}{'fwd+bwd ms':>11}{'x eager':>9}{'x compile':>10}{'peak MiB':>10}"
              f"{'mem/eager':>10}{'max rel err':>13}")
    print(header)
    print("-" * len(header))
    misses = []
    for op, (inputs, needs_grad, impls) in op_cases(args, device).items():
        torch.manual_seed(0)
        with autocast, torch.no_grad():  # only the outputs' shapes and dtypes: one incoming gradient for all
            reference_outputs = as_tuple(impls["eager"](*inputs))
        grad_outputs = [torch.randn_like(o) if o.ndim else torch.ones_like(o) for o in reference_outputs]
        del reference_outputs
        stats = {}
        for name, fn in impls.items():
            try:
                stats[name] = measure(fn, inputs, needs_grad, grad_outputs, autocast, device)
            except Exception as err:  # one failing implementation (e.g. a Liger API change) must not stop the rest
                print(f"{op:<14}{name:<9}failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
        eager_ms, eager_mib, eager_results = stats["eager"]
        compile_ms = stats["compile"][0] if "compile" in stats else math.nan
        for name, (ms, mib, results) in stats.items():
            print(f"{op:<14}{name:<9}{ms:>11.3f}{eager_ms / ms:>9.2f}{compile_ms / ms:>10.2f}{mib:>10.1f}"
                  f"{mib / eager_mib if eager_mib else math.nan:>10.2f}{max_rel_error(results, eager_results):>13.2e}")
        if device.type == "cuda" and "ours" in stats:
            ours_ms, ours_mib, _ = stats["ours"]
            if eager_ms / ours_ms < 1.5:
                misses.append(f"{op}: {eager_ms / ours_ms:.2f}x eager (target >= 1.5x)")
            if compile_ms / ours_ms < 1.0:
                misses.append(f"{op}: {compile_ms / ours_ms:.2f}x compile (target >= 1x)")
            if op == "cross_entropy" and ours_mib > eager_mib / 4:
                misses.append(f"{op}: peak memory {ours_mib / eager_mib:.2f} of eager (target <= 0.25)")
    if device.type == "cuda":
        print("targets: " + ("all met" if not misses else "MISSED: " + "; ".join(misses)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
