"""`python -m analysis advise ...`: LR advice from runs, printed as tables and Hydra overrides.

    # transfer: the tuned LR of one schedule -> the LR of others at the same horizon
    python -m analysis advise transfer --runs 'sweep/wsd02_*' --set cooldown_fraction=0.1,0.4 --target linear
    python -m analysis advise transfer \\
        --runs 'tests/data/paper_logs/ann124-0.2_*decay_linear_0.2_iter50000*.json' \\
        --target-runs 'tests/data/paper_logs/ann124-*_decay_linear_*iter50000*.json' --target linear
    # extension: continue a finished run to a longer horizon
    python -m analysis advise extend --run outputs/runs/<run> --steps 100000
    # sweep: empirical optimum per schedule vs the theory's prediction
    python -m analysis advise sweep --runs 'outputs/multiruns/<date>/*' --max-loss 4

--runs / --target-runs take globs (quote them) of anything analysis.runs.load reads. The source LR
is --lr, else the optimum fitted to the source runs' final losses (>= 3 peak LRs), else their one
peak LR. Plots (PNG + PDF) go to --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from analysis import advise, plots
from analysis.extend import cmd_extend
from analysis.fit import G_MODELS, fit_bound
from analysis.report import curve_of, print_table
from analysis.runs import load_many


def _parse_value(text: str):
    """A command-line value as YAML reads it (0.1 -> float, null -> None, linear -> str)."""
    import yaml

    return yaml.safe_load(text)


def _overlay(runs, args, path, title):
    """Per-run (or joint with --joint) fits of the validation curves to the bound; writes the plot."""
    curves = [c for c in map(curve_of, runs) if c is not None]
    if not curves:
        return []
    if args.joint:
        fit = fit_bound(curves, g_model=args.g_model, min_step=args.fit_from)
        pairs = [(c, fit) for c in fit.curves]
    else:
        fits = [fit_bound(c, g_model=args.g_model, min_step=args.fit_from) for c in curves]
        pairs = [(f.curves[0], f) for f in fits]
    print(f"\nbound fits ({args.g_model} G_t, steps >= {args.fit_from}, {'joint' if args.joint else 'per run'}):")
    for curve, fit in pairs:
        print(f"  {curve.label:>12}: C={fit.C:.4f} M={fit.M:.4g} R^2={fit.r2:.4f} RMSE={fit.rmse:.4f}")
    return plots.plot_overlay(pairs, path, title=title)


def _mark(fit):
    """A fitted optimum as text: '*' when outside the swept LRs (extrapolated), '>lr_max' or '<lr_min'
    when more than 2x outside (no upturn seen), '-' without a fit."""
    if fit is None:
        return "-"
    if not fit.optimum_determined:
        return f">{fit.lrs.max():g}" if fit.optimal_lr > fit.lrs.max() else f"<{fit.lrs.min():g}"
    return f"{fit.optimal_lr:.4g}" + ("" if fit.optimum_inside else "*")


# ---------------------------------------------------------------------------------------------------
def cmd_transfer(args):
    runs = load_many(args.runs)
    ignore = tuple(args.group_ignore)
    groups = advise.group_by_schedule(runs, ignore)
    if len(groups) != 1:
        raise SystemExit(f"--runs must share one schedule (found {len(groups)}: "
                         f"{[advise.schedule_label(json.loads(k)) for k in groups]}); "
                         "narrow the glob or use --group-ignore")
    source = runs[0].schedule_config
    lrs, losses = advise.final_losses(runs, args.max_loss)
    source_fit = advise.sweep_fit(lrs, losses)
    if args.lr is not None:
        lr, how = args.lr, "given by --lr"
    elif source_fit is not None:
        lr, how = source_fit.optimal_lr, (f"fitted to {len(lrs)} runs: final loss = A/lr + B lr + C, "
                                          f"R^2 {source_fit.r2:.4f}")
    elif len(set(r.peak_lr for r in runs)) == 1:
        lr, how = runs[0].peak_lr, "the runs' peak LR"
    else:
        raise SystemExit("the source runs have 2 peak LRs: give --lr or runs at >= 3 peak LRs")

    targets, measured = [], {}
    if args.target_runs:
        for key, members in advise.group_by_schedule(load_many(args.target_runs), ignore).items():
            config = members[0].schedule_config
            if key != advise.schedule_key(source, ignore):
                targets.append(config)
            target_lrs, target_losses = advise.final_losses(members, args.max_loss)
            measured[key] = (advise.sweep_fit(target_lrs, target_losses), target_lrs, target_losses)
    for spec in args.set:
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--set {spec!r} is not KEY=V1,V2,...; write e.g. --set cooldown_fraction=0.1,0.4")
        for value in values.split(","):
            targets.append(advise.with_args(source, **{key: _parse_value(value)}))
    for spec in args.target:
        name, _, rest = spec.partition(":")
        pairs = [item.partition("=") for item in rest.split(",") if item]
        if any(not key or not sep for key, sep, _ in pairs):
            raise ValueError(f"--target {spec!r} is not NAME[:KEY=VALUE,...]; "
                             "write e.g. --target cosine:final_fraction=0.1")
        targets.append(advise.group_config(name, like=source, **{k: _parse_value(v) for k, _, v in pairs}))
    if source_fit is not None:
        measured.setdefault(advise.schedule_key(source, ignore), (source_fit, lrs, losses))

    table = advise.transfer_table(lr, source, targets, G=args.G, D=args.D)
    table["schedule"] = [advise.schedule_label(c, base=source) if i else advise.schedule_label(c)
                         for i, c in enumerate(table["config"])]
    fits = [measured.get(advise.schedule_key(c, ignore), (None,))[0] for c in table["config"]]
    table["measured_lr"] = [f.optimal_lr if f is not None and f.optimum_determined else np.nan for f in fits]
    table["predicted/measured"] = table["lr"] / table["measured_lr"]
    print(f"source: {advise.schedule_label(source)}, T={source['total_steps']}: LR {lr:.4g} ({how})")
    print(f"transfer at the same horizon: lr_B = lr_A * gamma*_B / gamma*_A (D = {args.D:g}, G = {args.G:g}); "
          "first row: the source\n")
    shown = table.assign(measured_lr=[_mark(f) for f in fits])
    print_table(shown, ["schedule", "theory_gamma", "ratio", "lr", "measured_lr", "predicted/measured"],
                 {"theory_gamma": "{:.4g}", "ratio": "{:.3f}", "lr": "{:.4g}", "predicted/measured": "{:.3f}"})
    print("measured_lr: optimum of final loss = A/lr + B lr + C fitted to the target runs; "
          "* = outside the swept LRs (extrapolated)")
    print("\nHydra overrides (python train.py ...):")
    for _, row in table.iterrows():
        print(f"  {row['schedule']}:\n    {row['overrides']}")

    if not args.no_plot:
        out = Path(args.out)
        sweep = []
        for _, row in table.iterrows():
            fit, l, v = measured.get(advise.schedule_key(row["config"], ignore), (None, [], []))
            if l:
                sweep.append({"label": row["schedule"], "lrs": l, "losses": v, "fit": fit, "predicted_lr": row["lr"]})
        written = plots.plot_lr_sweep(sweep, out / "lr_sweep", title="transfer") if sweep else []
        written += _overlay(runs, args, out / "overlay", title=advise.schedule_label(source))
        print("\nplots: " + ", ".join(str(p) for p in written))
    return table


def cmd_sweep(args):
    table = advise.sweep_table(load_many(args.runs), reference=args.reference, max_loss=args.max_loss,
                               ignore=tuple(args.group_ignore), G=args.G, D=args.D)
    table["lrs"] = table["lrs"].map(lambda v: ",".join(f"{x:g}" for x in v))
    shown = table.assign(empirical_lr=table["fit"].map(_mark))
    print_table(shown, ["schedule", "runs", "lrs", "empirical_lr", "theory_gamma", "predicted_lr",
                         "predicted/empirical"],
                 {"theory_gamma": "{:.4g}", "predicted_lr": "{:.4g}", "predicted/empirical": "{:.3f}"})
    anchor = f"reference {args.reference}" if args.reference else "geometric mean over the schedules"
    print(f"\npredicted_lr = theory_gamma x one constant ({anchor}); empirical_lr: fit of final loss = A/lr + B lr + C"
          " (* = outside the swept LRs, extrapolated)")
    if not args.no_plot:
        sweep = [{"label": row["schedule"], "lrs": row["final_lrs"], "losses": row["final_losses"],
                  "fit": row["fit"], "predicted_lr": row["predicted_lr"]} for _, row in table.iterrows()]
        written = plots.plot_lr_sweep(sweep, Path(args.out) / "lr_sweep", title="sweep")
        print("plots: " + ", ".join(str(p) for p in written))
    return table


# ---------------------------------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    adv = commands.add_parser("advise", help="LR advice: transfer, extend, sweep")
    modes = adv.add_subparsers(dest="mode", required=True)

    def common(p, out):
        p.add_argument("--G", type=float, default=1.0, help="gradient-norm bound of the theory (default 1)")
        p.add_argument("--D", type=float, default=1.0, help="distance to the optimum of the theory (default 1)")
        p.add_argument("--out", default=f"outputs/analysis/{out}", help="folder for the plots")
        p.add_argument("--no-plot", action="store_true", help="skip the plots")

    def curve_fits(p):     # loss curves fitted to the bound (transfer: the overlay plot; extend: predictions)
        p.add_argument("--g-model", default="exp_power", choices=list(G_MODELS),
                       help="G_t model of the loss-curve fits (analysis.fit)")
        p.add_argument("--fit-from", type=int, default=1000, help="fit loss curves from this step on")

    def grouping(p):
        p.add_argument("--group-ignore", action="append", default=[], metavar="KEY",
                       help="schedule argument ignored when grouping runs (e.g. final_fraction); repeatable")
        p.add_argument("--max-loss", type=float, default=None,
                       help="leave out runs with a larger final loss (diverged)")

    p = modes.add_parser("transfer", help="the LR of other schedules from a tuned one, same horizon")
    p.add_argument("--runs", required=True, action="append",
                   help="glob (quoted) of the source schedule's runs; repeatable")
    p.add_argument("--lr", type=float, default=None, help="tuned peak LR of the source (default: fitted)")
    p.add_argument("--target-runs", action="append", default=[],
                   help="glob (quoted) of runs whose schedules are targets; repeatable")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                   help="targets: the source schedule with one argument changed, e.g. cooldown_fraction=0.1,0.4")
    p.add_argument("--target", action="append", default=[], metavar="NAME[:k=v,...]",
                   help="targets: configs/schedule/NAME.yaml at the source's horizon, "
                        "e.g. linear or cosine:final_fraction=0.1")
    grouping(p)
    common(p, "transfer")
    curve_fits(p)
    p.add_argument("--joint", action="store_true", help="one fit for all curves (shared C, M, G_t)")
    p.set_defaults(func=cmd_transfer)

    p = modes.add_parser("extend", help="continue a run to a longer horizon")
    p.add_argument("--run", required=True, help="the run (directory, wandb run or paper log)")
    p.add_argument("--steps", type=int, required=True, help="the new horizon T2")
    p.add_argument("--lr", type=float, default=None, help="the run's tuned peak LR (default: its peak LR)")
    common(p, "extend")
    curve_fits(p)
    p.set_defaults(func=cmd_extend)

    p = modes.add_parser("sweep", help="empirical optimal LR per schedule vs the theory")
    p.add_argument("--runs", required=True, action="append", help="glob (quoted) of the sweep's runs; repeatable")
    p.add_argument("--reference", default=None,
                   help="anchor the prediction at this schedule (its label as printed in the schedule column; "
                        "default: the geometric mean over the schedules)")
    grouping(p)
    common(p, "sweep")
    p.set_defaults(func=cmd_sweep)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)
