"""Defazio et al.'s LLM case with seeds: linear decay vs the schedule refined from a linear run's own
gradient norms, on the tiny Llama and the embedded data (CPU), each schedule's peak LR tuned on a grid.

    python -m scripts.defazio_llm                                   # 300 steps, LRs 1e-3 3e-3 1e-2 3e-2, seed 1337
    python -m scripts.defazio_llm --steps 300 --lrs 3e-3 1e-2 --seeds 1337 1338 --out outputs/defazio_llm

The experiment itself is scripts/schedule_benchmark/llm.py run_llm (one home for it): for one seed,
experiment=transfer_demo's 2-layer d=64 model, no warmup, AdamW; schedule=linear at every LR of the
grid, then schedule=from_array with the multipliers analysis.refine.refine_schedule derives from the
per-update l1 norms (grad_norms.bin; optimizer="adam") of the best linear run, at every LR of the grid.
This script repeats it over seeds (the config's `seed`: model init and data order), and reports the
final validation loss per LR and schedule (mean and spread over seeds), each schedule's best LR, and
where the refined shapes peak (a warmup that emerged from large early norms); plots the shapes.
Writes <out>/defazio_llm.csv/.json (one row per run) and <out>/refined_shapes.png/.pdf; run directories
<out>/seed<S>/llm/<schedule>_lr<LR> (a finished run is reported, not retrained).
--threads: torch's intra-op threads (default 1: on a shared 2-core machine more threads than free
cores slow a tiny model down by an order of magnitude).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from schedules import Linear
from scripts.schedule_benchmark.report import markdown, plot_shapes, write_table


def run_grid(out: Path, steps: int, lrs: list[float], seeds: list[int]) -> tuple[pd.DataFrame, dict]:
    """run_llm once per seed; its rows plus the seed and where that seed's refined shape peaks."""
    from scripts.schedule_benchmark.llm import run_llm   # imports the trainer: only when runs are asked for

    rows, shapes = [], {}
    for seed in seeds:
        table, shape = run_llm(out / f"seed{seed}", steps=steps, lrs=tuple(lrs), extra=[f"seed={seed}"])
        table["seed"] = seed
        table["refined_peak_at"] = float(np.argmax(shape) / steps)   # fraction of the run
        rows.append(table)
        shapes[f"refined, seed {seed}"] = shape
        for r in table.itertuples():
            print(f"seed {seed} {r.schedule:8} lr {r.lr:<7g} final val loss {r.final_val_loss:.4f} ({r.wall_s:.0f} s)",
                  flush=True)
    return pd.concat(rows, ignore_index=True), shapes


def summarize(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(final val loss by LR x schedule, mean over seeds with their spread; each schedule's best LR)."""
    by_lr = runs.groupby(["lr", "schedule"])["final_val_loss"].agg(["mean", "std", "count"]).unstack("schedule")
    means = runs.groupby(["schedule", "lr"])["final_val_loss"].mean().reset_index()
    best = means.loc[means.groupby("schedule")["final_val_loss"].idxmin()].set_index("schedule")
    return by_lr, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="updates per run (both schedules; >= 10)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2], help="peak-LR grid")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337], help="model/data seeds (config `seed`)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--out", type=Path, default=Path("outputs/defazio_llm"), help="output directory")
    args = parser.parse_args(argv)
    if any(lr <= 0 for lr in args.lrs):
        parser.error(f"--lrs {args.lrs}: every peak LR must be > 0, e.g. --lrs 1e-3 3e-3 1e-2")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    runs, shapes = run_grid(args.out, args.steps, args.lrs, args.seeds)
    by_lr, best = summarize(runs)
    write_table(runs, args.out, "defazio_llm")
    shapes = {"linear decay": Linear(total_steps=args.steps).multipliers()} | shapes  # the runs' linear, W = 0
    plot_shapes(shapes, args.out / "refined_shapes", f"tiny Llama, {args.steps} steps: refined from l1 norms")
    print(f"\nfinal validation loss (full split), {args.steps} steps, mean over seeds {args.seeds}:")
    print(markdown(by_lr["mean"].reset_index()))
    if len(args.seeds) > 1:
        print("standard deviation over seeds:")
        print(markdown(by_lr["std"].reset_index()))
    print("best peak LR per schedule:")
    print(markdown(best.reset_index()))
    gain = best.loc["linear", "final_val_loss"] - best.loc["refined", "final_val_loss"]
    print(f"refined - linear at their best LRs: {-gain:+.4f} ({'refined' if gain > 0 else 'linear'} lower); "
          f"refined peaks at {runs['refined_peak_at'].min():.2f}-{runs['refined_peak_at'].max():.2f} of the run; "
          f"total {time.perf_counter() - start:.0f} s; table {args.out / 'defazio_llm.csv'}")
    return runs


if __name__ == "__main__":
    main()
