"""Defazio et al.'s LLM case: the tiny Llama on the embedded data through the real trainer, linear decay,
then the schedule refined from that run's own gradient norms; final validation loss of both.

    python -m scripts.schedule_benchmark defazio --llm [--llm-steps 300] [--llm-lr 3e-3]

Both runs use configs/experiment/transfer_demo.yaml (2 layers, d = 64, 1024-token BPE, 4 x 128
tokens per update: the CPU-sized model of this project), no warmup (refinement adds none: a warmup
has to emerge from large early gradient norms), AdamW as configured, the same peak LR and seed. The
trainer writes every update's pre-clip l2 and l1 norm to <run dir>/grad_norms.bin
(trainer.log_grad_norms); AdamW's refinement weights are the l1 norms (THEORY.md section 4). Run
directories: <out>/llm/linear and <out>/llm/refined (a finished run is reported, not retrained).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd


def run_llm(out: Path, steps: int = 300, lr: float = 3e-3, extra=()) -> tuple[pd.DataFrame, np.ndarray]:
    """Train linear decay, refine from its l1 norms, train the refined schedule; one row per run."""
    import train
    from analysis.refine import refine_schedule
    from training.rundir import read_grad_norms
    from training.setup import compose

    if steps < 10:
        raise ValueError(f"--llm-steps={steps} is too short to refine from (the cleaning drops 4 points); use >= 10")
    base = ["experiment=transfer_demo", f"trainer.max_steps={steps}", "trainer.warmup_steps=0",
            f"optimizer.lr={lr}", "trainer.progress=false", "trainer.log_grad_norms=true",
            f"trainer.eval_interval={max(1, steps // 10)}", *extra]
    root = Path(out) / "llm"
    rows = []

    def fit(label, overrides):
        run_dir = root / label
        start = time.perf_counter()
        summary = train.train(compose(base + overrides), run_dir)
        rows.append(dict(schedule=label, steps=steps, lr=lr, final_val_loss=summary.get("final_val_loss"),
                         wall_s=round(time.perf_counter() - start, 1), run_dir=str(run_dir)))
        return run_dir

    norms = read_grad_norms(fit("linear", ["schedule=linear"]))
    if len(norms) != steps:
        raise RuntimeError(f"{root / 'linear'} holds {len(norms)} gradient-norm records for {steps} updates; "
                           "was it trained with trainer.log_grad_norms=false? remove the directory and rerun")
    shape = np.asarray(refine_schedule(norms["l1"].astype(np.float64), steps=steps, optimizer="adam"))
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "refined.npy", shape)
    fit("refined", ["schedule=from_array", f"schedule.source={(root / 'refined.npy').resolve()}"])
    return pd.DataFrame(rows), shape
