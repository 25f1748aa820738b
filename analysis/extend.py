"""Extension of a finished run to a longer horizon (docs/theory.md section 3), and `advise extend`.

    from analysis.extend import extension_options
    extension_options(run.schedule_config, 1e-3, new_steps=100_000)   # the options, as a table
    python -m analysis advise extend --run outputs/runs/<run> --steps 100000 [--lr 1e-3 | --sweep 'sweep/*']
    python -m pytest tests/test_analysis_extend.py

A run of horizon T1 at peak LR lr continues to T2 > T1. Its LR is taken as tuned at T1: assumed, given
(--lr) or fitted to its LR sweep (--sweep: bracketed or extrapolated; undetermined gets no advice and a
non-zero exit). For schedules with a constant or slowly decaying part before a cooldown, the part
before the cooldown is kept and the continuation makes the new schedule's gamma* (analysis.bound)
equal the LR in use, by a drop to rho x the current LR or by an adapted cooldown length:
  WSD, constant      schedules.TwoStageWSD dropping where the old cooldown began (the end, for a
                     constant run), or schedules.WSD at T2 with the cooldown fraction solved for
  1/sqrt + cooldown  schedules.InverseSqrt at T2 with the cooldown fraction solved for, or a drop
                     (schedules.FromArray: no class has 1/sqrt with a drop)
  two-stage WSD      both plateaus kept: the cooldown fraction at T2, or a further drop (FromArray)
Schedules whose LR already decayed (cosine, linear, REX, ...) cannot be continued without changing
steps already taken: restarts are offered (the same schedule at T2 with the LR rescaled by
gamma*(T2)/gamma*(T1), linear decay tuned at T2). The baseline: the same LR, the old cooldown at T2.
A continuation starts from a checkpoint on disk at or before the first step where the new schedule
differs from the old (trainer.init_from); without one, the advice says how to save one next time.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from analysis import plots
from analysis.advise import build, group_config, hydra_overrides, make_sweep, schedule_label, shape_of, with_args
from analysis.bound import bound, optimal_lr
from analysis.fit import fit_bound
from analysis.groups import same_shape
from analysis.report import curve_of, note, print_table, say
from analysis.runs import load, load_many
from training.rundir import checkpoint_dirs, checkpoint_step

DEFAULT_COOLDOWN = 0.2          # the paper's cooldown fraction, for continuing a run that has none
RHO_GRID = np.linspace(0.05, 1.0, 20)      # brackets the root; gamma* is monotone in rho


def _cooldown(config: dict, fraction: float) -> dict:
    """config with the cooldown given as this fraction of its horizon (cooldown_steps unset)."""
    return with_args(config, cooldown_fraction=round(float(fraction), 4),
                     **({"cooldown_steps": None} if "cooldown_steps" in config else {}))


def _dropped(base: np.ndarray, keep: int, cool: int, rho: float, final: float) -> np.ndarray:
    """`base` (peak-1) scaled by rho from step `keep` until its cooldown starts (step `cool`); the cooldown
    then starts from rho x its level and still ends at `final`."""
    out = base.copy()
    out[keep:cool] *= rho
    level = base[cool] if cool < base.size else 1.0
    if cool < base.size and level > final:
        out[cool:] = final + (base[cool:] - final) * (rho * level - final) / (level - final)
    return out


def _array(values: np.ndarray) -> dict:      # FromArray uses an array of length T as it is
    return {"_target_": "schedules.FromArray", "total_steps": int(values.size), "warmup_steps": 0,
            "warmup_start": 0.0, "source": values.tolist()}


def continuation_plan(config: dict, new_steps: int):
    """(kept steps K, same-LR baseline at T2, [(option, name of x, make(x) -> config, grid of x)]) for a
    schedule with a constant or slowly decaying part before its cooldown; None for any other schedule."""
    import schedules

    old, T1, T2 = build(config), int(config["total_steps"]), int(new_steps)
    if not isinstance(old, (schedules.WSD, schedules.Constant, schedules.TwoStageWSD, schedules.InverseSqrt)):
        return None
    keep = getattr(old, "cooldown_start", T1)         # where the cooldown starts (a Constant has none)
    # The old cooldown's share of the horizon (given as a fraction, or in steps), else the paper's 20%.
    fraction = getattr(old, "cooldown_fraction", None) or (T1 - keep) / T1 or DEFAULT_COOLDOWN
    tail = {"cooldown_kind": getattr(old, "cooldown_kind", "linear"),
            "final_fraction": getattr(old, "final_fraction", 0.0)}
    horizon = {"total_steps": T2, "warmup_steps": old.warmup_steps, "warmup_start": old.warmup_start}
    top = lambda start: (T2 - start) / T2 - 1e-9       # the largest cooldown fraction starting after `start`
    if isinstance(old, (schedules.WSD, schedules.Constant)):
        wsd = {"_target_": "schedules.WSD", **horizon, "cooldown_fraction": fraction, **tail}
        two_stage = {"_target_": "schedules.TwoStageWSD", **horizon, "drop_step": keep, "drop_fraction": None,
                     "transition_steps": 0, "rho": 1.0, "cooldown_fraction": fraction, **tail}
        baseline = with_args(config, total_steps=T2) if isinstance(old, schedules.WSD) else wsd
        return keep, baseline, [
            ("drop to rho (two-stage WSD)", "rho", lambda r: with_args(two_stage, rho=round(float(r), 4)), RHO_GRID),
            ("adapted cooldown (WSD)", "cooldown_fraction", lambda c: _cooldown(wsd, c),
             np.linspace(1.0 / T2, top(old.warmup_steps), 30))]
    if isinstance(old, schedules.TwoStageWSD):      # the drop pinned to its step, both plateaus kept
        same = with_args(config, total_steps=T2, drop_step=old.drop_start, drop_fraction=None)
        start = old.drop_start + old.transition_steps
    else:                                           # InverseSqrt: tau does not depend on T
        same, start = with_args(config, total_steps=T2), old.warmup_steps
    baseline = _cooldown(same, fraction)
    base = shape_of(baseline)
    cool = build(baseline).cooldown_start
    drop = lambda r: _array(_dropped(base, keep, cool, round(float(r), 4), tail["final_fraction"]))
    return keep, baseline, [
        ("drop to rho (array)", "rho", drop, RHO_GRID),
        ("adapted cooldown", "cooldown_fraction", lambda c: _cooldown(same, c), np.linspace(1.0 / T2, top(start), 30))]


def _solve(f, grid):
    """(the largest root of f on `grid`, a sign change refined by brentq, or None; f at the grid's ends)."""
    values = np.array([f(x) for x in grid])
    change = np.nonzero(np.sign(values[:-1]) != np.sign(values[1:]))[0]
    root = None if change.size == 0 else brentq(f, grid[change[-1]], grid[change[-1] + 1], xtol=1e-6)
    return root, (values[0], values[-1])


def _agree_until(a: np.ndarray, b: np.ndarray) -> int:
    """The first step where two LR sequences differ (within the shorter one's length)."""
    n = min(a.size, b.size)
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


def _shape(config: dict) -> np.ndarray:
    """shape_of, reading an inline FromArray source directly (a long list is slow to instantiate)."""
    if config["_target_"] == "schedules.FromArray" and not isinstance(config["source"], str):
        return np.asarray(config["source"], dtype=np.float64)
    return shape_of(config)


def extension_options(schedule_config, lr, new_steps, tuned_lr=None, G=1.0, D=1.0, array_dir=None) -> pd.DataFrame:
    """The options for continuing a run (schedule_config at its horizon T1, run at peak LR lr, tuned_lr the
    optimal peak LR at T1, default lr) to new_steps T2 > T1, the same-LR baseline first. Columns: option,
    kind (continuation / restart), value (rho or cooldown fraction solved for), schedule, lr, bound,
    vs_same_lr, note, keeps (the step up to which the option repeats the run, at most the kept step K: a
    checkpoint at or before it starts it; None for a restart), overrides (None without a solution), config,
    shape. FromArray schedules are saved to array_dir as .npy (inline lists without it: no overrides)."""
    old_shape = shape_of(schedule_config)           # first: a crafted config is refused before it is read
    T1, T2 = int(schedule_config["total_steps"]), int(new_steps)
    if T2 <= T1:
        raise ValueError(f"new_steps={new_steps} must exceed the run's horizon total_steps={T1}; give a longer one")
    tuned_lr = lr if tuned_lr is None else tuned_lr
    gamma_1 = optimal_lr(old_shape, G, D)[0]
    unit = gamma_1 / tuned_lr                       # theory units per unit of LR
    target = lr * unit                              # the LR in use, which gamma* of a continuation must equal
    plan = continuation_plan(schedule_config, T2)
    keep, baseline, options = plan if plan is not None else (None, None, [])
    rows = []

    def add(option, config, peak, kind, note="", value=np.nan):
        shape = _shape(config)
        if array_dir is not None and config["_target_"] == "schedules.FromArray":
            path = Path(array_dir) / (re.sub(r"\W+", "_", option).strip("_") + f"_T{T2}.npy")
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, shape)
            config = with_args(config, source=str(path.resolve()))
        inline = not isinstance(config.get("source", ""), str)
        rows.append({"option": option, "kind": kind, "value": value, "lr": peak, "note": note,
                     "schedule": (f"FromArray({'inline' if inline else Path(config['source']).name}, T={T2})"
                                  if "source" in config else schedule_label(config)),
                     "bound": bound(unit * peak * shape, G, D), "config": config, "shape": shape,
                     "keeps": min(_agree_until(lr * old_shape, peak * shape), keep) if kind == "continuation" else None,
                     # A continuation repeats the run's LR exactly (repr: the shortest exact decimal).
                     "overrides": None if inline else hydra_overrides(config, None, [
                         f"optimizer.lr={peak!r}" if kind == "continuation" else f"optimizer.lr={peak:.4g}"])})

    restart = lambda config: tuned_lr * optimal_lr(shape_of(config), G, D)[0] / gamma_1    # the tuned LR, at T2
    same = with_args(schedule_config, total_steps=T2)
    if plan is None:        # a decayed LR; or a shape (e.g. FromArray) without a rule for its kept part
        why = (f"the LR already decayed to {old_shape[-1]:.3g}x the peak by step {T1}" if old_shape[-1] < 0.5
               else "a continuation is defined for WSD, constant, 1/sqrt and two-stage WSD runs only")
        add("same LR (baseline)", same, lr, "restart", f"{schedule_label(schedule_config)}: {why}, so no "
            "continuation keeps the run's state")
    else:
        add("same LR (baseline)", baseline, lr, "continuation", f"keeps steps < {keep}")
    add("same schedule, LR rescaled (restart)", same, restart(same), "restart", "the LR changes from step 0")
    linear = group_config("linear", like=schedule_config, total_steps=T2)
    add("linear decay, tuned (restart)", linear, restart(linear), "restart")
    for option, name, make, grid in options:
        x, ends = _solve(lambda v: math.log(optimal_lr(_shape(make(v)), G, D)[0] / target), grid)
        if x is None:
            rows.append({"option": option, "kind": "continuation", "value": np.nan, "lr": lr, "bound": np.nan,
                         "schedule": "-", "keeps": None, "overrides": None, "config": None, "shape": None,
                         "note": f"not advised: gamma*/(LR in use) goes from {math.exp(ends[0]):.3g} to "
                                 f"{math.exp(ends[1]):.3g} over {name} in [{grid[0]:.3g}, {grid[-1]:.3g}], never 1"})
            continue
        add(option, make(x), lr, "continuation", value=round(float(x), 4))
        row = rows[-1]
        row["note"] = (f"{name}={x:.4g}, keeps steps < {keep}" if row["keeps"] >= keep else
                       f"{name}={x:.4g}; differs from step {row['keeps']} on, before the cooldown at step {keep}")
        off = optimal_lr(row["shape"], G, D)[0] / target - 1.0
        if abs(off) > 0.01:     # a cooldown is a whole number of steps: short horizons cannot match gamma* closely
            row["note"] += f"; gamma* is {off:+.1%} off the LR in use (the closest whole number of steps)"
    table = pd.DataFrame(rows)
    table["vs_same_lr"] = table["bound"] / table["bound"].iloc[0] - 1.0
    return table


# ---------------------------------------------------------------------------------------------------
# The command: the tuned LR and its status, checkpoints, the table, overrides and a plot.
# ---------------------------------------------------------------------------------------------------
def tuned_lr_of(run, lr=None, sweep=None, max_extrapolation=2.0):
    """(tuned LR at T1 or None, status, how): --lr, else the optimum fitted to the runs of `sweep`
    (globs) with the run's schedule and horizon (status bracketed / extrapolated / undetermined), else
    the run's own peak LR, assumed tuned."""
    if lr is not None:
        return lr, "given", "given by --lr"
    if not sweep:
        return run.peak_lr, "assumed tuned", "the run's peak LR, assumed tuned (give --lr or --sweep to say otherwise)"
    members = [r for r in load_many(sweep) if r.schedule_config is not None   # one shape: analysis.groups
               and same_shape(r.schedule_config, run.schedule_config)]
    if not members:
        raise SystemExit(f"--sweep {' '.join(sweep)} has no run with the schedule of {run.name} "
                         f"({schedule_label(run.schedule_config)}, T={run.total_steps}); give the glob of its LR sweep")
    fitted = make_sweep(members, max_extrapolation=max_extrapolation)
    counted = f"{len(fitted.lrs)} run{'s' * (len(fitted.lrs) != 1)} at LR {', '.join(f'{x:g}' for x in fitted.lrs)}"
    if fitted.status == "undetermined":
        runs_next = ", ".join(f"{x:.3g}" for x in fitted.next_lrs())
        return None, "undetermined", f"{fitted.why()} ({counted}); run next: optimizer.lr={runs_next}"
    where = ("inside the swept LRs" if fitted.status == "bracketed"
             else f"{fitted.fit.factor_outside:.2f}x outside the swept LRs (allowed: {max_extrapolation:g}x)")
    return fitted.optimum, fitted.status, f"fitted to {counted}: final loss = A/lr + B lr + C, optimum {where}"


def checkpoints_of(run) -> list:
    """[(step, directory)] of the checkpoints that hold this run's own history: its own, and its
    parent's up to the branch step (recursively). Paper logs and wandb runs carry none."""
    own = []
    if Path(run.source).is_dir():
        own = [(checkpoint_step(p), p) for p in checkpoint_dirs(run.source)]
    if run.parent is not None and run.branch_step is not None:
        own += [(step, p) for step, p in checkpoints_of(run.parent) if step <= run.branch_step]
    return sorted(own)


def checkpoint_interval(step: int, horizon: int) -> tuple:
    """(interval, steps repeated): the largest divisor of `step` up to horizon/4, which saves a checkpoint
    at `step`, unless that saves over 20 per run; then the largest 1-2-5 x 10^k up to horizon/4, whose
    last checkpoint before `step` repeats `step mod interval` steps."""
    limit = max(1, horizon // 4)
    exact = max(d for d in range(1, limit + 1) if step % d == 0)
    if exact >= horizon / 20:
        return exact, 0
    interval = max(m * 10 ** k for k in range(len(str(limit))) for m in (1, 2, 5) if m * 10 ** k <= limit)
    return interval, step % interval


def init_advice(run, step: int) -> tuple:
    """(`trainer.init_from=...` or None, a remark) for an option that agrees with the run before `step`:
    the latest existing checkpoint at or before it, else the checkpoint interval to train with next time."""
    found = checkpoints_of(run)
    usable = [(s, p) for s, p in found if s <= step]
    if usable:
        s, path = usable[-1]
        return f"trainer.init_from={path}", "" if s == step else f"(none at step {step}: repeats steps {s}-{step})"
    closest = min(found, key=lambda f: abs(f[0] - step), default=None)
    interval, repeated = checkpoint_interval(step, run.total_steps)
    return None, (f"no checkpoint at or before step {step}" + (f" (closest: {closest[1]})" if closest else "")
                  + f"; next time train with trainer.checkpoint_interval={interval} trainer.keep_checkpoints=0"
                  + (f" (repeats {repeated} steps)" if repeated else ""))


def _label(config: dict, base: dict) -> str:
    """The schedule's class and its arguments (unset ones left out; for the run's class, those that differ)."""
    same = base.get("_target_") == config["_target_"]
    shown = {k: v for k, v in config.items() if v is not None and (k == "_target_" or not same or base.get(k) != v)}
    return schedule_label(shown).replace("()", "(as the run)") if same else schedule_label(shown)


def _predictions(run, table, args):
    """Predicted final loss of each option (the run's validation curve fitted to the bound), and a note.
    A fit needs twice as many points as parameters (C, M, the G_t model's); a short run falls back to
    the constant G_t model. Its extrapolation to T2 is shown only when no option's loss comes out < 0."""
    curve, why = curve_of(run), f"the run has {int(run.metrics['val/loss'].notna().sum())} validation points"
    for g_model in dict.fromkeys([args.g_model, "constant"]) if curve is not None else ():
        try:
            fit = fit_bound(curve, g_model=g_model, min_step=args.fit_from)
        except ValueError as error:
            return None, f"no predicted_final_loss: {error}"
        points, parameters = len(fit.curves[0].steps), 2 + len(fit.g2_scaled) + len(fit.theta)
        why = f"{points} validation points for the {parameters} parameters of the {g_model} G_t model"
        if points < 2 * parameters:
            continue
        values = [float(fit.predict(peak * shape, [args.steps])[0]) if shape is not None else np.nan
                  for peak, shape in zip(table["lr"], table["shape"])]
        if np.nanmin(values) < 0:
            return None, f"no predicted_final_loss: the fit ({why}) extrapolates to a negative loss at T2"
        return values, f"predicted_final_loss: C + M Omega_T2, the run's val loss fitted ({why}, R^2 {fit.r2:.4f})"
    return None, (f"no predicted_final_loss: {why}, too few "
                  "(a fit needs twice as many points as parameters, 6 at the least)")


def cmd_extend(args):
    """`advise extend`: the table, the overrides with the checkpoint to start from, and a plot. Exits
    non-zero (SystemExit) when nothing can be advised: an unreadable run, --steps not beyond the run's
    horizon, or a tuned LR that the --sweep leaves undetermined."""
    try:
        run = load(args.run)
    except ValueError as error:
        raise SystemExit(f"advise extend: {error}") from None
    if run.schedule_config is None or run.peak_lr is None or run.metrics.empty:
        raise SystemExit(f"advise extend: {run.source} recorded no schedule, peak LR or metrics (a failed launch?)")
    if args.steps <= run.total_steps:
        raise SystemExit(f"advise extend: --steps {args.steps} must exceed the run's horizon {run.total_steps}")
    tuned, status, how = tuned_lr_of(run, args.lr, args.sweep, args.max_extrapolation)
    say(f"run: {run.name}: {_label(run.schedule_config, {})}, T1={run.total_steps}, LR {run.peak_lr:.4g} "
        f"-> T2={args.steps}")
    say(f"tuned LR at T1: {status}: " + (f"{tuned:.4g}, " if tuned else "") + how)
    if run.metrics["step"].max() < run.total_steps:
        note(f"the run logged up to step {run.metrics['step'].max()} of {run.total_steps}: unfinished?")
    if tuned is None:
        raise SystemExit("advise extend: the tuned LR is undetermined, so no extension is advised "
                         "(run the LRs above, or give --lr)")
    out = Path(args.out)
    table = extension_options(run.schedule_config, run.peak_lr, args.steps, tuned_lr=tuned, G=args.G, D=args.D,
                              array_dir=out / "schedules")
    table["lr_status"] = [status if k == "restart" else f"LR in use ({status})" for k in table["kind"]]
    table["schedule"] = [_label(c, run.schedule_config) if c is not None and "source" not in c else s
                         for c, s in zip(table["config"], table["schedule"])]
    predicted, remark = _predictions(run, table, args)
    columns = ["option", "schedule", "value", "lr", "lr_status", "bound", "vs_same_lr"]
    if predicted is not None:
        table["predicted_final_loss"] = predicted
        columns.append("predicted_final_loss")
    if (table["kind"] == "restart").all():
        say(f"{table['note'].iloc[0]}. The options are restarts: the same schedule at T2 with the LR rescaled, "
            "and linear decay tuned at T2.")
    say(f"bound in theory units (D = {args.D:g}, G = {args.G:g}, the tuned LR mapped to gamma*(T1)); vs_same_lr: "
        "relative to the first row; value: the rho or cooldown fraction solved for")
    print_table(table, columns + ["note"], {"value": "{:.4g}", "lr": "{:.4g}", "bound": "{:.5f}",
                                             "vs_same_lr": "{:+.2%}", "predicted_final_loss": "{:.4f}"})
    (say if predicted is not None else note)(remark)
    if not Path(run.source).is_dir() and (table["kind"] == "continuation").any():
        note(f"{run.source} is not a run directory: paper logs and wandb runs carry no checkpoints to start from")
    print("Hydra overrides (python train.py ...):")     # not wrapped: lines to paste
    for _, row in table.iterrows():
        if not isinstance(row["overrides"], str):      # no solution (pandas keeps None as NaN)
            print(f"  {row['option']}: none ({row['note']})")
            continue
        init, advice = init_advice(run, int(row["keeps"])) if row["kind"] == "continuation" else (None, "")
        print(f"  {row['option']}:\n    {row['overrides']}" + (f" {init}" if init else "")
              + (f"\n    {advice}" if advice else ""))
    if not args.no_plot:
        unit = optimal_lr(shape_of(run.schedule_config), args.G, args.D)[0] / tuned    # theory units, as the table
        curves = {row.option: unit * row.lr * row.shape for row in table.itertuples() if row.shape is not None}
        title = f"extension to T2={args.steps}, tuned LR {status}: bound (theory units)"
        written = plots.plot_bound_curves(curves, out / "extension", G=args.G, D=args.D, marks=[run.total_steps],
                                          title=title)
        say("plots: " + ", ".join(str(p) for p in written))
    return table
