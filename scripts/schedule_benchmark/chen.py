"""Chen, Wolfe, Kyrillidis's budgeted-training study (REX) on the benchmark suite (THEORY.md section 5).

    python -m scripts.schedule_benchmark chen [--problems ...] [--seeds 3] [--steps 400]

Budgets of 10, 25, 50 and 100% of a full run of --steps updates; each budget is an independent run
whose schedule is stretched to it (the schedule is composed with trainer.max_steps = the budget's
steps, so every budget gets the whole profile). Schedules: REX, linear, step x0.1 at 30/60/90% and at
50/75%, exponential (to 1% of the peak), cosine, OneCycle (torch's defaults) and step decay on plateau
(reactive, driven by the harness's periodic validation). Optimizers: SGD with momentum 0.9, AdamW.
The peak LR is tuned per schedule and budget on the grid. Output: the paper's table form, the mean rank
(1 = best) of each schedule over problems and budgets at low (10, 25%) and high (50, 100%) budgets per
optimizer; the final metrics; and the paper's three claims, each stated as held or not.
"""
from __future__ import annotations

import pandas as pd

from scripts.schedule_benchmark.harness import Job, ScheduleSpec, rank, run_grid, schedule_config, tune

BUDGETS = (0.1, 0.25, 0.5, 1.0)
LOW, HIGH = (0.1, 0.25), (0.5, 1.0)
SCHEDULES = (
    ScheduleSpec("rex", ("schedule=rex",)),                                        # beta 1/2, every step
    ScheduleSpec("linear", ("schedule=linear",)),
    ScheduleSpec("step_30_60_90", ("schedule=step",)),                             # x0.1 at 30/60/90%
    ScheduleSpec("step_50_75", ("schedule=step", "schedule.milestones=[0.5,0.75]")),
    ScheduleSpec("exponential", ("schedule=exponential",)),                        # to 0.01 of the peak
    ScheduleSpec("cosine", ("schedule=cosine",)),
    ScheduleSpec("onecycle", ("schedule=onecycle",)),
    ScheduleSpec("plateau", ("schedule=plateau",)),                                # x0.1, patience 2 evals
)
STEP_LABELS = ("step_30_60_90", "step_50_75")


def budget_steps(steps: int, budget: float) -> int:
    return max(1, round(budget * steps))


def available(specs=SCHEDULES) -> tuple[list[ScheduleSpec], list[str]]:
    """The schedules whose configs compose here; the others are skipped with a note (e.g. plateau
    before configs/schedule/plateau.yaml exists)."""
    ok, notes = [], []
    for spec in specs:
        try:
            schedule_config(spec.overrides, 10)
        except Exception as err:  # hydra's MissingConfigException and friends: report, do not crash
            notes.append(f"{spec.label} skipped: its config does not compose ({type(err).__name__}: {err})")
        else:
            ok.append(spec)
    return ok, notes


def run_study(lr_table: dict, seeds: int, steps: int, progress: bool = True, budgets=BUDGETS) -> dict:
    """Every schedule x budget x LR x seed over lr_table = {(problem, optimizer): peak-LR grid};
    returns the tables (runs, ranked, ranks), the claims, notes and the runs' results."""
    specs, notes = available()
    jobs = [Job(p, spec, o, lr, seed, budget_steps(steps, b), budget=b)
            for (p, o), grid in lr_table.items() for b in budgets for spec in specs
            for lr in grid for seed in range(seeds)]
    table, results = run_grid(jobs, "chen", progress)
    ranked = rank(tune(table))
    ranks = rank_table(ranked)
    return dict(runs=table, ranked=ranked, ranks=ranks, claims=claims(ranks), notes=notes, results=results)


def rank_table(ranked: pd.DataFrame) -> pd.DataFrame:
    """The paper's table: mean rank per schedule (rows) at low and high budgets per optimizer (columns
    `<optimizer> low`, `<optimizer> high`), plus the mean over all budgets and optimizers (`all`)."""
    ranked = ranked.assign(level=ranked["budget"].map(lambda b: "low" if b in LOW else "high"))
    wide = ranked.pivot_table(index="schedule", columns=["optimizer", "level"], values="rank", aggfunc="mean")
    wide.columns = [f"{o} {lvl}" for o, lvl in wide.columns]
    order = [f"{o} {lvl}" for o in sorted(ranked["optimizer"].unique()) for lvl in ("low", "high")]
    wide = wide[[c for c in order if c in wide.columns]]
    wide["all"] = ranked.groupby("schedule")["rank"].mean()
    return wide.sort_values("all")


def claims(ranks: pd.DataFrame) -> list[dict]:
    """The paper's three claims, each judged on this run's mean ranks: 'linear strong at small budgets'
    (linear in the best three at every optimizer's low budgets), 'step at large ones' (a step schedule
    in the best three at every optimizer's high budgets), 'REX best on average' (REX first in `all`)."""
    def top3(column, labels):
        best = ranks[column].nsmallest(3).index
        return any(label in best for label in labels)

    low = [c for c in ranks.columns if c.endswith(" low")]
    high = [c for c in ranks.columns if c.endswith(" high")]
    out = [dict(claim="linear strong at small budgets (top 3 at low budgets, every optimizer)",
                held=bool(low) and all(top3(c, ["linear"]) for c in low) if "linear" in ranks.index else None,
                evidence="; ".join(f"{c}: linear {ranks.loc['linear', c]:.2f}" for c in low
                                   if "linear" in ranks.index)),
           dict(claim="step schedules strong at large budgets (one in the top 3 at high budgets, every optimizer)",
                held=bool(high) and all(top3(c, STEP_LABELS) for c in high),
                evidence="; ".join(f"{c}: " + ", ".join(f"{s} {ranks.loc[s, c]:.2f}" for s in STEP_LABELS
                                                         if s in ranks.index) for c in high))]
    if "rex" in ranks.index:
        first = ranks["all"].idxmin()
        out.append(dict(claim="REX best on average (lowest mean rank over all budgets and optimizers)",
                        held=first == "rex",
                        evidence=f"rex {ranks.loc['rex', 'all']:.2f}; best {first} {ranks.loc[first, 'all']:.2f}"))
    return out
