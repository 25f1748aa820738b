"""Extension of a finished run to a longer horizon (THEORY.md section 2 (i)), and `advise extend`.

    from analysis.extend import extension_options
    extension_options(run.schedule_config, 1e-3, new_steps=100_000)   # continue a run to a longer horizon
    python -m analysis advise extend --run outputs/runs/<run> --steps 100000

A run tuned at T1 continues to T2: (a) the same schedule at T2 with the LR scaled by
gamma*(T2)/gamma*(T1); for a WSD run, keeping everything before its cooldown and the LR in use,
(b) the two-stage WSD whose second plateau rho makes gamma*(new) = gamma*(old), or (c) the
cooldown fraction of the new horizon with the same property; baselines: the same LR with the
old cooldown fraction at T2, and linear decay tuned at T2 (a restart). Bounds are in theory units
(the run's LR mapped to gamma*(T1)).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from analysis import plots
from analysis.advise import build, group_config, hydra_overrides, schedule_label, shape_of, with_args
from analysis.bound import bound, optimal_lr
from analysis.fit import fit_bound
from analysis.report import curve_of, print_table
from analysis.runs import load


def _log_gamma_gap(config, target_gamma, G, D):
    return math.log(optimal_lr(shape_of(config), G, D)[0]) - math.log(target_gamma)


def _solve_on_grid(f, grid):
    """The largest root of f on `grid` (a sign change refined by brentq); None if f has none there.
    Also returns the grid point where |f| is smallest, the fallback."""
    values = np.array([f(x) for x in grid])
    change = np.nonzero(np.sign(values[:-1]) != np.sign(values[1:]))[0]
    closest = grid[int(np.argmin(np.abs(values)))]
    if change.size == 0:
        return None, closest
    i = change[-1]
    return brentq(f, grid[i], grid[i + 1], xtol=1e-6), closest


def extension_options(schedule_config, lr, new_steps, G=1.0, D=1.0, rho_grid=None) -> pd.DataFrame:
    """The theory's options for continuing a run (schedule_config at its total_steps T1, peak LR lr
    assumed tuned) to new_steps T2 > T1. Rows: option, schedule, lr, bound, vs_same_lr, note,
    init_step (the step whose checkpoint the continuation starts from; None for a restart), overrides."""
    import schedules

    T1 = int(schedule_config["total_steps"])
    if new_steps <= T1:
        raise ValueError(f"new_steps={new_steps} must exceed the run's horizon total_steps={T1}")
    gamma_1, _ = optimal_lr(shape_of(schedule_config), G, D)
    same = with_args(schedule_config, total_steps=int(new_steps))
    same_shape = shape_of(same)
    baseline = bound(gamma_1 * same_shape, G, D)

    rows = []

    def add(option, config, peak, note="", init_step=None):
        # Bound in theory units: the run's LR lr corresponds to gamma_1, so peak corresponds to peak/lr*gamma_1.
        omega = bound(peak / lr * gamma_1 * shape_of(config), G, D)
        rows.append({"option": option, "schedule": schedule_label(config), "lr": peak, "bound": omega,
                     "vs_same_lr": omega / baseline - 1.0, "note": note, "init_step": init_step,
                     "overrides": hydra_overrides(config, peak), "config": config})

    add("same LR (baseline)", same, lr)
    gamma_2, _ = optimal_lr(same_shape, G, D)
    add("same schedule, LR rescaled", same, lr * gamma_2 / gamma_1, "the LR changes from step 0: a restart")
    linear = group_config("linear", like=schedule_config, total_steps=int(new_steps),
                          warmup_steps=schedule_config.get("warmup_steps", 0))
    add("linear decay, tuned (restart)", linear, lr * optimal_lr(shape_of(linear), G, D)[0] / gamma_1)

    old = build(schedule_config)
    if isinstance(old, schedules.WSD):
        keep = old.cooldown_start       # everything before the old cooldown is reused
        two_stage = {"_target_": "schedules.TwoStageWSD", "total_steps": int(new_steps),
                     "warmup_steps": old.warmup_steps, "warmup_start": old.warmup_start, "drop_step": keep,
                     "drop_fraction": None, "transition_steps": 0, "rho": 1.0,
                     "cooldown_fraction": old.cooldown_fraction, "cooldown_kind": old.cooldown_kind,
                     "final_fraction": old.final_fraction}
        grid = np.linspace(0.2, 1.0, 81) if rho_grid is None else np.asarray(rho_grid)
        rho, closest = _solve_on_grid(lambda r: _log_gamma_gap(with_args(two_stage, rho=float(r)), gamma_1, G, D),
                                      grid)
        note = (f"keeps steps < {keep}" if rho is not None
                else f"no rho in [{grid[0]}, {grid[-1]}] keeps gamma*; closest")
        add("two-stage WSD (rho)", with_args(two_stage, rho=round(float(rho if rho is not None else closest), 4)),
            lr, note, init_step=keep)
        # Cooldown fraction of the new horizon. It continues the run only if the new cooldown starts
        # after the kept part (c <= c_keep); a larger root is reported with that caveat.
        c_keep = (new_steps - keep) / new_steps
        c_top = (new_steps - old.warmup_steps) / new_steps - 1e-6
        wsd = lambda c: with_args(schedule_config, total_steps=int(new_steps), cooldown_fraction=float(c))
        c, closest = _solve_on_grid(lambda c: _log_gamma_gap(wsd(c), gamma_1, G, D), np.linspace(0.01, c_top, 200))
        if c is None:
            note = "no fraction keeps gamma*; closest"
        elif c <= c_keep:
            note = f"keeps steps < {keep}"
        else:
            note = f"cooldown from step {new_steps - int(c * new_steps)} < {keep}: not a continuation"
        add("adapted cooldown fraction", wsd(round(float(c if c is not None else closest), 4)), lr, note,
            init_step=keep if c is not None and c <= c_keep else None)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# The command.
# ---------------------------------------------------------------------------------------------------
def _init_from(run, step):
    """`trainer.init_from=...`: the checkpoint at `step` of the run, or of its parent if it branched later."""
    owner = run.parent if run.parent is not None and run.branch_step is not None and step <= run.branch_step else run
    if not Path(owner.source).is_dir():
        return f"trainer.init_from=<checkpoint at step {step}>"
    return f"trainer.init_from={Path(owner.source) / 'checkpoints' / f'step_{step:07d}'}"


def cmd_extend(args):
    run = load(args.run)
    lr = args.lr if args.lr is not None else run.peak_lr
    table = extension_options(run.schedule_config, lr, args.steps, G=args.G, D=args.D)
    table["schedule"] = [schedule_label(c, base=run.schedule_config) for c in table["config"]]
    print(f"run: {run.name}: {schedule_label(run.schedule_config)}, T1={run.total_steps}, LR {lr:.4g} "
          f"(taken as tuned) -> T2={args.steps}")
    print(f"bound in theory units (D = {args.D:g}, G = {args.G:g}, the run's LR mapped to gamma*(T1)); "
          "vs_same_lr: relative to keeping the LR\n")
    shapes = [shape_of(c) for c in table["config"]]
    curve = curve_of(run)
    if curve is not None:   # predicted final loss of each option, from the run's own curve fitted to the bound
        fit = fit_bound(curve, g_model=args.g_model, min_step=args.fit_from)
        table["predicted_final_loss"] = [float(fit.predict(peak * shape, [args.steps])[0])
                                         for peak, shape in zip(table["lr"], shapes)]
        print(f"(predicted_final_loss: C + M Omega_T of each option, the run's val loss fitted with "
              f"R^2 {fit.r2:.4f})\n")
    columns = ["option", "schedule", "lr", "bound", "vs_same_lr"]
    columns += ["predicted_final_loss"] if curve is not None else []
    print_table(table, columns + ["note"], {"lr": "{:.4g}", "bound": "{:.5f}", "vs_same_lr": "{:+.2%}",
                                             "predicted_final_loss": "{:.4f}"})
    print("\nHydra overrides (python train.py ...):")
    for _, row in table.iterrows():
        keep = row["init_step"]
        init = f" {_init_from(run, int(keep))}" if pd.notna(keep) else ""
        print(f"  {row['option']}:\n    {row['overrides']}{init}")
    if not args.no_plot:
        # Theory units, as in the table's bound column: the run's LR maps to gamma*(T1).
        gamma_1 = optimal_lr(shape_of(run.schedule_config), args.G, args.D)[0]
        curves = {option: peak / lr * gamma_1 * shape
                  for option, peak, shape in zip(table["option"], table["lr"], shapes)}
        written = plots.plot_bound_curves(curves, Path(args.out) / "extension", G=args.G, D=args.D,
                                          title=f"extension to T2={args.steps}: bound (theory units)",
                                          marks=[run.total_steps])
        print("\nplots: " + ", ".join(str(p) for p in written))
    return table
