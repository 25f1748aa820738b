"""Benchmark: training throughput, MFU and peak memory of full steps of our Llama vs Hugging Face's
LlamaForCausalLM with the identical config, all in this process on one GPU, same batch, bf16 autocast.

    python -m scripts.bench_train                              # 124M@512, 210M@512, 124M@1024, every variant
    python -m scripts.bench_train --setups 124m:512 --variants ours-triton hf-compile
    python -m scripts.bench_train --setups 124m:512 --variants ours-triton-compile --profile   # where a step goes
    python -m scripts.bench_train --dry-run                    # CPU smoke test: a tiny model, one step each

A step is what the trainer does per micro-batch and update: forward under bf16 autocast, backward,
grad-norm clip, fused AdamW step, zero_grad; it is timed with CUDA events after a few warm-up steps
(compilation happens there), and tokens/s uses the median step. MFU = tokens/s x
models.llama.Llama.flops_per_token / the GPU's bf16 peak (training.metrics). Peak memory is the most
allocated during the variant (weights, AdamW state and activations). The micro-batch is
--batch-tokens / seq_len sequences (the paper: 50 x 512) of random tokens.

Variants:
    ours-triton          models.llama.Llama, kernels=triton (the fused ops), not compiled
    ours-triton-compile  the same under torch.compile (one graph; the kernels are opaque custom ops in it)
    ours-torch-compile   kernels=torch (the plain references) under torch.compile
    hf, hf-compile       transformers LlamaForCausalLM (sdpa attention), eager and compiled
    hf-liger, hf-liger-compile   the same with Liger-Kernel's Llama patch (when installed)
The targets of the issue are checked at the end for 124M@512: ours-triton (the better of its two
variants) >= 1.25x the tokens/s of hf-compile, and >= 50% MFU.

A whole default run compiles about a dozen models; on a machine that limits one command's time, run
one setup per command (--setups 124m:512, then 210m:512, then 124m:1024).
HF computes its loss on T-1 positions of each row (it shifts the labels itself), ours on T.
"""

import argparse
import contextlib
import gc
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from scripts.bench_common import bench_device, compile_for, liger_functional

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("ours-triton", "ours-triton-compile", "ours-torch-compile", "hf", "hf-compile", "hf-liger",
            "hf-liger-compile")
SETUPS = ("124m:512", "210m:512", "124m:1024")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS),
                        help="model size (a configs/model/llama<size>.yaml) and sequence length, as SIZE:SEQ_LEN")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--batch-tokens", type=int, default=50 * 512, help="tokens per micro-batch")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, profile 3 steps per variant and print the kernels by total GPU time")
    parser.add_argument("--dry-run", action="store_true", help="CPU smoke test: a tiny model, one step per variant")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.setups, args.batch_tokens, args.warmup, args.steps = ["tiny:16"], 32, 0, 1
    elif not torch.cuda.is_available():
        parser.error("no CUDA device: the benchmark needs a GPU (use --dry-run for a CPU smoke test)")
    for setup in args.setups:
        size, _, seq_len = setup.partition(":")
        if not seq_len.isdigit() or (size != "tiny" and not (ROOT / f"configs/model/llama{size}.yaml").exists()):
            parser.error(f"--setups {setup}: expected SIZE:SEQ_LEN with configs/model/llama<SIZE>.yaml, e.g. 124m:512")
        if args.batch_tokens < int(seq_len):
            parser.error(f"--batch-tokens {args.batch_tokens} is less than one sequence of {seq_len}")
    return args


# ---- models --------------------------------------------------------------------------------------

def llama_kwargs(size: str, seq_len: int) -> dict:
    """Arguments of models.llama.Llama from configs/model/llama<size>.yaml (tiny: a CPU-sized model)."""
    if size == "tiny":
        return dict(vocab_size=131, n_layer=2, n_head=3, d_model=48, max_seq_len=seq_len, mlp_hidden=100)
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / f"configs/model/llama{size}.yaml"))
    cfg.pop("_target_")
    cfg.update(max_seq_len=seq_len)
    return cfg


def hf_llama(kwargs: dict):
    """transformers LlamaForCausalLM with the architecture of Llama(**kwargs) (the mapping: models/hf.py)."""
    from transformers import LlamaForCausalLM

    from models.hf import hf_config
    from models.llama import LlamaConfig as OurConfig

    config = hf_config(OurConfig(**{k: v for k, v in kwargs.items() if k != "kernels"}), use_cache=False)
    config._attn_implementation = "sdpa"  # flash attention through SDPA, as our model uses
    return LlamaForCausalLM(config)


@contextlib.contextmanager
def liger_patched(model):
    """Liger-Kernel's Llama patch on `model`, undone afterwards: the patch also replaces classes and
    functions in transformers' modeling_llama, which would leak into the later HF variants."""
    import transformers.models.llama.modeling_llama as modeling_llama
    from liger_kernel.transformers import apply_liger_kernel_to_llama

    saved = dict(vars(modeling_llama))
    saved_forward = modeling_llama.LlamaForCausalLM.forward
    try:
        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=True, model=model)
        yield model
    finally:
        for name, value in saved.items():
            setattr(modeling_llama, name, value)
        modeling_llama.LlamaForCausalLM.forward = saved_forward


def build_variant(variant: str, kwargs: dict, device, stack: contextlib.ExitStack):
    """(model, loss function(model, x, y), compile?) for one variant."""
    from models.llama import Llama

    compile_it = variant.endswith("-compile")
    if variant.startswith("ours"):
        model = Llama(**kwargs, kernels="triton" if "triton" in variant else "torch").to(device)
        return model, (lambda m, x, y: m(x, y)), compile_it
    model = hf_llama(kwargs).to(device)
    if "liger" in variant:
        stack.enter_context(liger_patched(model))
    # HF shifts the labels itself: labels = inputs gives the next-token loss on T - 1 positions
    return model, (lambda m, x, y: m(input_ids=x, labels=x).loss), compile_it


# ---- measuring ---------------------------------------------------------------------------------

def run_variant(variant, kwargs, batch, device, args):
    """{tok_per_s, mfu, peak_gib, step_ms, loss0} for one variant, or raises."""
    from models.llama import Llama
    from training.metrics import mfu, peak_flops
    from training.optim import param_groups

    seq_len = kwargs["max_seq_len"]
    x, y = batch
    with torch.device("meta"):  # FLOPs from the architecture, the same for HF's identical model
        architecture = Llama(**kwargs, kernels="torch")
    flops_per_token = architecture.flops_per_token(seq_len)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    with contextlib.ExitStack() as stack:
        torch.manual_seed(0)  # the same initial weights for every variant of our model (same loss@0)
        model, loss_fn, compile_it = build_variant(variant, kwargs, device, stack)
        n_params = sum(p.numel() for p in model.parameters())  # a tied weight is yielded once
        assert n_params == architecture.num_params(), (
            f"{variant} has {n_params:,} parameters, our Llama {architecture.num_params():,}: not the same model")
        model.train()
        optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                                      fused=device.type == "cuda")
        if compile_it:
            model = compile_for(device, model)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def step():
            with autocast:
                loss = loss_fn(model, x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        loss0 = step().item()
        for _ in range(args.warmup):
            step()
        times_ms = []
        for _ in range(args.steps):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step()
                end.record()
                end.synchronize()
                times_ms.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                step()
                times_ms.append((time.perf_counter() - t0) * 1e3)
        step_ms = statistics.median(times_ms)
        if args.profile:
            print_profile(step, variant, device)
        tok_per_s = x.numel() / (step_ms / 1e3)
        peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
        peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else math.nan
        return dict(tok_per_s=tok_per_s, mfu=mfu(flops_per_token, tok_per_s, peak), peak_gib=peak_gib,
                    step_ms=step_ms, loss0=loss0)


def print_profile(step, variant: str, device, n_steps: int = 3) -> None:
    """The kernels of a few steps by total device time: where a step goes (e.g. whether the residual
    adds beside the RMSNorm kernels are worth fusing)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(n_steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort_by = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(f"--- profile of {variant}, {n_steps} steps ---")
    print(prof.key_averages().table(sort_by=sort_by, row_limit=25))


def release_memory(device) -> None:
    """Free what the last variant left (its frame is gone): compiled graphs, cached CUDA blocks."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv=None):
    args = parse_args(argv)
    device = bench_device(args.dry_run)
    if device.type != "cuda":
        print("DRY RUN on CPU: kernels under the Triton interpreter, compile with the eager backend; "
              "the numbers mean nothing")
    if liger_functional() is None:
        print("liger-kernel not installed: the hf-liger variants are skipped (pip install liger-kernel)")
        args.variants = [v for v in args.variants if "liger" not in v]

    header = f"{'setup':<11}{'variant':<21}{'tok/s':>11}{'MFU':>7}{'peak GiB':>10}{'step ms':>10}{'loss@0':>8}"
    print(header)
    print("-" * len(header))
    results = {}
    for setup in args.setups:
        size, _, seq_len = setup.partition(":")
        kwargs = llama_kwargs(size, int(seq_len))
        batch_size = args.batch_tokens // int(seq_len)
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, kwargs["vocab_size"], (batch_size, int(seq_len) + 1), generator=g).to(device)
        batch = (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
        for variant in args.variants:
            try:
                r = run_variant(variant, kwargs, batch, device, args)
            except Exception as err:  # e.g. out of memory, or a Liger API change: report and go on
                print(f"{setup:<11}{variant:<21}failed: {type(err).__name__}: {str(err).splitlines()[0][:100]}")
                continue
            finally:
                release_memory(device)
            results[setup, variant] = r
            mfu_text = f"{r['mfu']:.3f}" if r["mfu"] is not None else "n/a"
            print(f"{setup:<11}{variant:<21}{r['tok_per_s']:>11,.0f}{mfu_text:>7}{r['peak_gib']:>10.2f}"
                  f"{r['step_ms']:>10.1f}{r['loss0']:>8.3f}")

    for setup in args.setups:
        ours = [results[setup, v] for v in ("ours-triton", "ours-triton-compile") if (setup, v) in results]
        baseline = results.get((setup, "hf-compile"))
        if ours and baseline:
            best = max(ours, key=lambda r: r["tok_per_s"])
            speedup = best["tok_per_s"] / baseline["tok_per_s"]
            line = f"{setup}: ours-triton (best) / hf-compile tokens/s = {speedup:.2f}x"
            if setup == "124m:512" and device.type == "cuda":
                line += f" (target >= 1.25x); MFU {best['mfu'] or math.nan:.3f} (target >= 0.50)"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
