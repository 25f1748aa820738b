"""Benchmark: the bound at every horizon, vectorized (analysis.bound.bound_curve) vs one horizon at a time.

    python -m scripts.bench_bound                      # WSD-0.2, 50,000 steps (the naive loop takes tens of seconds)
    python -m scripts.bench_bound --steps 20000 --schedule cosine

All are timed in this process on the same step sizes; the naive loop calls analysis.bound.bound
(the O(T) one-horizon form with suffix sums, split=True) on lr[:n] for n = 1..T, O(T^2) in all, and
is the reference for both the total and the three terms of bound_curve(..., split=True).
"""
import argparse
import time

import numpy as np

from analysis.advise import group_config, shape_of
from analysis.bound import bound, bound_curve


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50_000, help="horizon T")
    parser.add_argument("--schedule", default="wsd", help="a configs/schedule/*.yaml name")
    parser.add_argument("--warmup", type=int, default=300, help="warmup steps")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak LR")
    args = parser.parse_args()

    lr = args.lr * shape_of(group_config(args.schedule, total_steps=args.steps, warmup_steps=args.warmup))
    start = time.perf_counter()
    fast = bound_curve(lr)
    t_fast = time.perf_counter() - start

    start = time.perf_counter()
    split = bound_curve(lr, split=True)
    t_split = time.perf_counter() - start

    start = time.perf_counter()
    naive = np.array([bound(lr[:n], split=True) for n in range(1, lr.size + 1)])   # (T, 3)
    t_naive = time.perf_counter() - start

    def max_rel(a, b):
        finite = np.isfinite(b) & (b != 0)
        assert np.array_equal(np.isfinite(a), np.isfinite(b)) and np.all(a[b == 0] == 0)
        return np.max(np.abs(a[finite] / b[finite] - 1.0))

    rel = max_rel(fast, naive.sum(axis=1))
    rel_terms = [max_rel(split[k], naive[:, k]) for k in range(3)]
    print(f"schedule={args.schedule} T={args.steps}: bound at all {args.steps} horizons")
    print(f"  naive loop over horizons (analysis.bound.bound): {t_naive:8.3f} s")
    print(f"  bound_curve (vectorized):                        {t_fast:8.3f} s")
    print(f"  bound_curve(split=True) (vectorized):            {t_split:8.3f} s")
    print(f"  speed-up: {t_naive / t_fast:.1f}x   max relative difference: {rel:.2e}")
    print("  split: max relative difference per term: " + ", ".join(f"{r:.2e}" for r in rel_terms))


if __name__ == "__main__":
    main()
