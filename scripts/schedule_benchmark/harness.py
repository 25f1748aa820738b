"""The benchmark harness: one seeded training run of a problem under a schedule, a grid of them, and
the peak-LR tuning on the grid. Shared by the Defazio and Chen studies (defazio.py, chen.py).

    from scripts.schedule_benchmark.harness import ScheduleSpec, Job, run_one, run_grid, tune
    spec = ScheduleSpec("step_50_75", ("schedule=step", "schedule.milestones=[0.5,0.75]"))
    result = run_one(Job("logreg_cancer", spec, "sgd", 0.1, seed=0, steps=500))
    table, results = run_grid(jobs); tuned = tune(table)

Schedules come from configs/schedule/ exactly as the trainer builds them: compose the trainer's config
with `schedule=<name>`, `trainer.max_steps=T`, `trainer.warmup_steps=0` and the spec's overrides, then
`hydra.utils.instantiate(cfg.schedule)`; update s (0-based) uses lr = peak x schedule(s). A reactive
schedule (class attribute `reactive = True`, e.g. step decay on plateau) is asked one step at a time
and told every periodic validation loss through `observe(step, val_loss)`, `step` counting completed
updates as the trainer does. Optimizers are Hydra configs too (OPTIMIZER_CONFIGS).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tqdm import tqdm

from scripts.schedule_benchmark.problems import PROBLEMS, build_model, load, loss_fn
from training.setup import compose

# SGD with heavy-ball momentum and AdamW, as `_partial_` Hydra configs (the peak LR is passed at build).
# AdamW's weight decay is 0: the convex objectives carry their own l2 term, so both optimizers minimize
# the same function (AdamW with decay 0 is Adam).
OPTIMIZER_CONFIGS = {
    "sgd": {"_target_": "torch.optim.SGD", "_partial_": True, "momentum": 0.9},
    "adamw": {"_target_": "torch.optim.AdamW", "_partial_": True, "betas": [0.9, 0.999], "weight_decay": 0.0},
}
N_EVALS = 20            # evaluations per run (train objective and validation loss on the full sets)
DIVERGED = 1e3          # a train loss above this multiple of the initial one counts as diverged


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule of the study: its label in the tables and the compose overrides that build it."""
    label: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    problem: str
    spec: ScheduleSpec
    optimizer: str
    lr: float
    seed: int
    steps: int
    budget: float = 1.0         # fraction of the full run (the Chen study); 1.0 otherwise
    record_norms: bool = False  # keep the per-update gradient norms (the refinement's input)


@dataclass
class RunResult:
    row: dict                                        # one row of the results table
    curve: list = field(default_factory=list)        # (completed steps, train objective, val loss)
    lrs: np.ndarray | None = None                    # the LR of every update
    norms: np.ndarray | None = None                  # (steps, 2): l2 and l1 norm of every update's gradient


@lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]):
    return compose([*overrides, "trainer.warmup_steps=0"])


@lru_cache(maxsize=None)
def schedule_config(overrides: tuple[str, ...], steps: int) -> dict:
    """The resolved schedule node of the trainer's config for these overrides and horizon. Composed once
    per overrides (a compose costs ~0.1-0.4 s); the horizon is then set on trainer.max_steps, which the
    schedule reads by interpolation, exactly as the `trainer.max_steps=T` override would."""
    cfg = _composed(overrides).copy()
    cfg.trainer.max_steps = steps
    return OmegaConf.to_container(cfg.schedule, resolve=True)


def make_schedule(spec: ScheduleSpec, steps: int):
    """A fresh schedule object (reactive schedules carry state, so every run builds its own)."""
    return instantiate(schedule_config(spec.overrides, steps))


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name not in OPTIMIZER_CONFIGS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZER_CONFIGS)}")
    return instantiate(OPTIMIZER_CONFIGS[name])(params, lr=lr)


def _evaluate(problem, model, data) -> tuple[float, float]:
    with torch.no_grad():
        return (float(loss_fn(problem, model, data.x_train, data.y_train)),
                float(loss_fn(problem, model, data.x_val, data.y_val)))


def run_one(job: Job) -> RunResult:
    """Train job.problem for job.steps updates; deterministic given the job (seeded init and batches)."""
    problem = PROBLEMS[job.problem]
    if not (isinstance(job.lr, (int, float)) and job.lr > 0 and math.isfinite(job.lr)):
        raise ValueError(f"peak lr={job.lr!r} must be a finite number > 0 (e.g. --lrs 0.01 0.1)")
    data = load(problem)
    model = build_model(problem, data, job.seed)
    opt = make_optimizer(job.optimizer, model.parameters(), job.lr)
    group = opt.param_groups[0]
    sched = make_schedule(job.spec, job.steps)
    reactive = bool(getattr(sched, "reactive", False))
    multipliers = None if reactive else np.asarray(sched(np.arange(job.steps)), dtype=np.float64)
    batches = torch.randint(0, len(data.x_train), (job.steps, problem.batch_size),
                            generator=torch.Generator().manual_seed(job.seed))
    eval_every = max(1, job.steps // N_EVALS)
    lrs = np.zeros(job.steps)
    norms = np.full((job.steps, 2), np.nan) if job.record_norms else None
    params = list(model.parameters())
    train0, val0 = _evaluate(problem, model, data)
    curve, diverged, done = [(0, train0, val0)], False, 0
    for s in range(job.steps):
        lrs[s] = job.lr * (sched(s) if reactive else multipliers[s])
        group["lr"] = lrs[s]
        idx = batches[s]
        loss = loss_fn(problem, model, data.x_train[idx], data.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if norms is not None:
            with torch.no_grad():
                grads = torch.cat([p.grad.reshape(-1) for p in params])
                norms[s] = (float(torch.linalg.vector_norm(grads)), float(grads.abs().sum()))
        opt.step()
        done = s + 1
        if done % eval_every == 0 or done == job.steps:
            train, val = _evaluate(problem, model, data)
            curve.append((done, train, val))
            if not (math.isfinite(train) and train < DIVERGED * train0):
                diverged = True
                break
            if reactive:
                sched.observe(done, val)
    final_train, final_val = curve[-1][1:]
    if diverged:
        final_train = final_val = float("nan")
    row = dict(problem=job.problem, optimizer=job.optimizer, schedule=job.spec.label, budget=job.budget,
               steps=job.steps, lr=job.lr, seed=job.seed, final_train=final_train, final_val=final_val,
               gap=final_train - data.f_star if problem.convex else float("nan"),
               metric=final_train if problem.convex else final_val, metric_name=problem.metric,
               diverged=diverged, steps_done=done, final_lr=float(lrs[done - 1]))
    return RunResult(row, curve, lrs[:done], None if norms is None else norms[:done])


def run_grid(jobs: list[Job], desc: str = "runs", progress: bool = True) -> tuple[pd.DataFrame, list[RunResult]]:
    """Run every job (in order); the tidy table has one row per run."""
    results = [run_one(j) for j in tqdm(jobs, desc=desc, disable=not progress, leave=False)]
    return pd.DataFrame([r.row for r in results]), results


GROUP = ["problem", "optimizer", "budget", "schedule"]


def tune(table: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, optimizer, budget, schedule): the grid LR with the lowest mean metric over seeds
    (a diverged seed makes that LR's mean +inf). Columns: lr, mean, std (over seeds, ddof 1), n_seeds,
    grid (the LRs tried) and at_edge (the tuned LR is the smallest or largest of the grid)."""
    t = table.assign(metric=table["metric"].fillna(np.inf))
    per_lr = (t.groupby(GROUP + ["lr"], sort=True)["metric"]
              .agg(mean="mean", std="std", n_seeds="count").reset_index())
    per_lr["std"] = per_lr["std"].fillna(0.0)
    best = per_lr.loc[per_lr.groupby(GROUP, sort=True)["mean"].idxmin()].reset_index(drop=True)
    grids = t.groupby(GROUP, sort=True)["lr"].agg(lambda v: tuple(sorted(set(v)))).rename("grid").reset_index()
    best = best.merge(grids, on=GROUP)
    best["at_edge"] = [lr in (g[0], g[-1]) and len(g) > 1 for lr, g in zip(best["lr"], best["grid"])]
    return best


def rank(tuned: pd.DataFrame) -> pd.DataFrame:
    """Rank the schedules within each (problem, optimizer, budget) by tuned mean metric: 1 = best.
    Ties (e.g. two diverged schedules) are broken by schedule name, so each group's ranks are 1..n."""
    out = tuned.sort_values(["problem", "optimizer", "budget", "mean", "schedule"]).copy()
    out["rank"] = out.groupby(["problem", "optimizer", "budget"]).cumcount() + 1
    return out.sort_values(GROUP).reset_index(drop=True)
