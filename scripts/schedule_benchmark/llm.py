"""Defazio et al.'s LLM case: the tiny Llama on the embedded data through the real trainer, linear decay,
then the schedule refined from that run's own gradient norms; final validation loss of both.

    python -m scripts.schedule_benchmark defazio --llm [--llm-steps 300] [--llm-lrs 3e-3 6e-3 1.2e-2]

Both runs use configs/experiment/transfer_demo.yaml (2 layers, d = 64, 1024-token BPE, 4 x 128
tokens per update: the CPU-sized model of this project), no warmup (refinement adds none: a warmup
has to emerge from large early gradient norms), AdamW as configured, the same seed, each schedule at
every peak LR of --llm-lrs (the refinement starts from the best linear run). The
trainer writes every update's pre-clip l2 and l1 norm to <run dir>/grad_norms.bin
(trainer.log_grad_norms); AdamW's refinement weights are the l1 norms (THEORY.md section 4). Run
directories: <out>/llm/<schedule>_lr<lr> (a finished run is reported, not retrained).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd


def run_llm(out: Path, steps: int = 300, lrs=(3e-3,), extra=()) -> tuple[pd.DataFrame, np.ndarray]:
    """Linear decay at every peak LR of `lrs`; refine from the l1 norms of the best of them (lowest final
    validation loss); the refined schedule at the same LRs (its peak LR tuned like linear's). One row per run."""
    import train
    from analysis.refine import refine_schedule
    from training.rundir import read_grad_norms
    from training.setup import compose

    if steps < 10:
        raise ValueError(f"--llm-steps={steps} is too short to refine from (the cleaning drops 4 points); use >= 10")
    if not lrs or not all(0 < lr < float("inf") for lr in lrs):
        raise ValueError(f"--llm-lrs {lrs} must be finite peak LRs > 0, e.g. --llm-lrs 3e-3 6e-3")
    base = ["experiment=transfer_demo", f"trainer.max_steps={steps}", "trainer.warmup_steps=0",
            "trainer.progress=false", "trainer.log_grad_norms=true", f"trainer.eval_interval={max(1, steps // 10)}",
            *extra]
    root = Path(out) / "llm"
    rows = []

    def fit(label, lr, overrides):
        run_dir = root / f"{label}_lr{lr:g}"
        start = time.perf_counter()
        summary = train.train(compose(base + [f"optimizer.lr={lr}"] + overrides), run_dir)
        rows.append(dict(schedule=label, steps=steps, lr=lr, final_val_loss=summary.get("final_val_loss"),
                         wall_s=round(time.perf_counter() - start, 1), run_dir=str(run_dir)))
        return run_dir

    linear = {lr: fit("linear", lr, ["schedule=linear"]) for lr in lrs}
    best = min((r for r in rows if r["schedule"] == "linear"), key=lambda r: r["final_val_loss"])
    norms = read_grad_norms(linear[best["lr"]])
    if len(norms) != steps:
        raise RuntimeError(f"{linear[best['lr']]} holds {len(norms)} gradient-norm records for {steps} updates; "
                           "was it trained with trainer.log_grad_norms=false? remove the directory and rerun")
    shape = np.asarray(refine_schedule(norms["l1"].astype(np.float64), steps=steps, optimizer="adam"))
    np.save(root / "refined.npy", shape)
    for lr in lrs:
        fit("refined", lr, ["schedule=from_array", f"schedule.source={(root / 'refined.npy').resolve()}"])
    return pd.DataFrame(rows), shape
