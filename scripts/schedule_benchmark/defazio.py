"""Defazio et al.'s study on the benchmark suite: linear decay vs cosine vs step vs constant vs the
schedule refined from the gradient norms of a linear-decay run (THEORY.md section 4).

    python -m scripts.schedule_benchmark defazio [--problems ...] [--seeds 3] [--steps 500] [--llm]

1. Every baseline schedule x peak-LR grid x seed x optimizer; the linear-decay runs record the
   gradient norm of every update (l2 for SGD, l1 for AdamW: the refinement's weights are n^-2 and n^-1).
2. Per problem and optimizer: the norms of the linear runs at linear's tuned LR, averaged over the
   seeds, go through analysis.refine.refine_schedule(norms, steps=T, optimizer=...); the shape is saved
   as refined/<problem>_<optimizer>.npy and run as `schedule=from_array schedule.source=<npy>` on the
   same grid and seeds (its peak LR tuned like any other's).
3. Ranking at the tuned LRs with the seeds' spread, and refined vs linear per problem, as measured.
The worst-case claim is checked where theory states it, in the convex bound (bound_table): at D = G = 1
linear decay has the smallest optimal bound Omega* among the usual schedules.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate

from scripts.schedule_benchmark.harness import Job, ScheduleSpec, rank, run_grid, schedule_config, tune

BASELINES = (
    ScheduleSpec("linear", ("schedule=linear",)),
    ScheduleSpec("cosine", ("schedule=cosine",)),
    ScheduleSpec("step", ("schedule=step",)),            # x0.1 at 30/60/90% (configs/schedule/step.yaml)
    ScheduleSpec("constant", ("schedule=constant",)),
)
# The schedules of the worst-case comparison in the bound (all without warmup, to 0 where they decay).
BOUND_SPECS = BASELINES + (
    ScheduleSpec("rex", ("schedule=rex",)),
    ScheduleSpec("wsd", ("schedule=wsd",)),               # linear cooldown over the last 20%
)
NORM_COLUMN = {"sgd": 0, "adamw": 1}                     # harness norms: column 0 = l2, 1 = l1
REFINE_OPTIMIZER = {"sgd": "sgd", "adamw": "adam"}       # analysis.refine's names


def bound_table(steps: int = 100, specs=BOUND_SPECS) -> pd.DataFrame:
    """Optimal peak LR gamma* and bound Omega* (D = G = 1, analysis.bound.optimal_lr) of each schedule
    at horizon `steps`, as the trainer builds it (eta_t = schedule(t - 1)); sorted by Omega*."""
    from analysis.bound import optimal_lr

    rows = []
    for spec in specs:
        gamma, omega = optimal_lr(instantiate(schedule_config(spec.overrides, steps)).multipliers())
        rows.append(dict(schedule=spec.label, steps=steps, gamma_star=gamma, omega_star=omega))
    return pd.DataFrame(rows).sort_values("omega_star").reset_index(drop=True)


def refined_spec(path: Path) -> ScheduleSpec:
    return ScheduleSpec("refined", ("schedule=from_array", f"schedule.source={Path(path).resolve()}"))


def refine_from_runs(table: pd.DataFrame, results, tuned: pd.DataFrame, out: Path, steps: int) -> tuple[dict, list]:
    """The refined shape per (problem, optimizer) from its tuned linear-decay runs' norms (mean over the
    seeds that did not diverge); returns ({(problem, optimizer): npy path}, notes)."""
    try:
        from analysis.refine import refine_schedule   # written alongside this study (issue 12, item 2)
    except ImportError as err:
        return {}, [f"refined schedule skipped: analysis.refine is not importable ({err})"]
    paths, notes = {}, []
    linear = tuned[tuned["schedule"] == "linear"]
    for _, best in linear.iterrows():
        picked = [r.norms[:, NORM_COLUMN[best["optimizer"]]] for r in results
                  if r.norms is not None and not r.row["diverged"] and r.row["problem"] == best["problem"]
                  and r.row["optimizer"] == best["optimizer"] and r.row["lr"] == best["lr"]]
        if not picked:
            notes.append(f"{best['problem']}/{best['optimizer']}: every tuned linear run diverged; no refinement")
            continue
        shape = refine_schedule(np.mean(picked, axis=0), steps=steps, optimizer=REFINE_OPTIMIZER[best["optimizer"]])
        path = out / "refined" / f"{best['problem']}_{best['optimizer']}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.asarray(shape, dtype=np.float64))
        paths[(best["problem"], best["optimizer"])] = path
    return paths, notes


def run_study(lr_table: dict, seeds: int, steps: int, out: Path, progress: bool = True) -> dict:
    """The whole study over lr_table = {(problem, optimizer): peak-LR grid}; returns its tables (runs,
    ranked, refined_vs_linear, mean_rank, bound), notes, the runs' results and the refined files."""
    def jobs_for(spec, problem, opt, record=False):
        return [Job(problem, spec, opt, lr, seed, steps, record_norms=record)
                for lr in lr_table[(problem, opt)] for seed in range(seeds)]

    jobs = [j for (p, o) in lr_table for spec in BASELINES for j in jobs_for(spec, p, o, record=spec.label == "linear")]
    table, results = run_grid(jobs, "defazio baselines", progress)
    paths, notes = refine_from_runs(table, results, tune(table), out, steps)
    refined_jobs = [j for (p, o), path in paths.items() for j in jobs_for(refined_spec(path), p, o)]
    if refined_jobs:
        more, more_results = run_grid(refined_jobs, "defazio refined", progress)
        table, results = pd.concat([table, more], ignore_index=True), results + more_results
    ranked = rank(tune(table))
    return dict(runs=table, ranked=ranked, refined_vs_linear=refined_vs_linear(ranked),
                mean_rank=mean_rank(ranked), bound=bound_table(), notes=notes, results=results,
                refined_paths=paths)


def mean_rank(ranked: pd.DataFrame) -> pd.DataFrame:
    """Mean rank per schedule and optimizer over the problems (1 = best), with the number of wins."""
    g = ranked.groupby(["optimizer", "schedule"])["rank"]
    out = pd.DataFrame({"mean_rank": g.mean(), "wins": g.apply(lambda r: int((r == 1).sum()))}).reset_index()
    return out.sort_values(["optimizer", "mean_rank"]).reset_index(drop=True)


def refined_vs_linear(ranked: pd.DataFrame) -> pd.DataFrame:
    """Per problem and optimizer: tuned linear vs tuned refined (mean +- std over seeds), their
    difference, and whether the difference exceeds the seeds' spread (the larger of the two stds)."""
    rows = []
    for (problem, opt), grp in ranked.groupby(["problem", "optimizer"]):
        by = grp.set_index("schedule")
        if "refined" not in by.index:
            continue
        lin, ref = by.loc["linear"], by.loc["refined"]
        diff = ref["mean"] - lin["mean"]
        spread = max(lin["std"], ref["std"])
        verdict = "refined better" if diff < -spread else "linear better" if diff > spread else "within seed spread"
        rows.append(dict(problem=problem, optimizer=opt, linear=lin["mean"], linear_std=lin["std"],
                         refined=ref["mean"], refined_std=ref["std"], diff=diff, verdict=verdict,
                         best=by["mean"].idxmin()))
    return pd.DataFrame(rows)
