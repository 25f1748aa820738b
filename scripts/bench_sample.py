"""Benchmark: greedy decoding with the KV cache against decoding without it (models/sample.py).

    python -m scripts.bench_sample                          # CPU: the default run's model and a 124M-shaped one
    python -m scripts.bench_sample --device cuda --repeats 5 --new-tokens 256

Random weights (speed does not depend on them); the same prompt, greedy, in one process. Each repeat
times the cached and the uncached decoding back to back, alternating which goes first, so that a drift
of the machine's speed hits both alike; prints tokens/s of each, the ratio uncached/cached time per
repeat and its median, and whether the two decodings produced the same tokens (they must: the cache is
an optimization, not an approximation; tests/test_sample.py asserts it).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from models.llama import Llama
from models.sample import generate

SHAPES = {  # name -> Llama kwargs
    "default run (4L d128, vocab 4096)": dict(vocab_size=4096, n_layer=4, n_head=4, d_model=128, max_seq_len=512),
    "llama124m shape (12L d768, vocab 50304)": dict(vocab_size=50304, n_layer=12, n_head=12, d_model=768,
                                                   max_seq_len=512),
}


def timed(model, prompt: list[int], new_tokens: int, use_cache: bool, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate(model, prompt, new_tokens, temperature=0, use_cache=use_cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_sample", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads on CPU")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    for name, kwargs in SHAPES.items():
        torch.manual_seed(0)
        model = Llama(kernels="torch", **kwargs).to(device).eval()
        prompt = list(range(1, args.prompt_tokens + 1))
        for use_cache in (True, False):  # warm-up of both paths: allocation, first-touch costs
            timed(model, prompt, 4, use_cache, device)
        ratios, same = [], True
        for r in range(args.repeats):
            order = (True, False) if r % 2 == 0 else (False, True)
            runs = {use_cache: timed(model, prompt, args.new_tokens, use_cache, device) for use_cache in order}
            (cached, out_cached), (plain, out_plain) = runs[True], runs[False]
            same &= out_cached == out_plain
            ratios.append(plain / cached)
            print(f"{name} repeat {r}: cache {args.new_tokens / cached:8.1f} tok/s, "
                  f"no cache {args.new_tokens / plain:8.1f} tok/s, ratio {plain / cached:.2f}")
        print(f"{name}: prompt {args.prompt_tokens} + {args.new_tokens} new tokens on {device}: cache speed-up "
              f"median {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}), "
              f"identical tokens: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
