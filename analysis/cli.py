"""`python -m analysis advise|refine|random-features ...`: LR advice from runs (tables and Hydra overrides);
schedules refined from gradient norms or derived from the Bordelon-Mori model.

    # transfer: the tuned LR of one schedule -> the LR of others at the same horizon
    python -m analysis advise transfer --runs 'sweep/wsd02_*' --set cooldown_fraction=0.1,0.4 --target linear
    # extension: continue a finished run to a longer horizon
    python -m analysis advise extend --run outputs/runs/<run> --steps 100000
    # sweep: empirical optimum per schedule and horizon vs the theory's prediction
    python -m analysis advise sweep --runs 'outputs/multiruns/<date>/*'
    # horizon: how the best LR scales with T across sweeps at several horizons (Bordelon-Mori phase)
    python -m analysis advise horizon --runs 'sweeps/T*/*'
    # refine: a schedule from a run's gradient norms (analysis/refine.py owns the subcommand)
    python -m analysis refine outputs/runs/<run> --optimizer adam --steps 5000
    # random-features export: the Bordelon-Mori optimal schedule as a from_array file (analysis/random_features_cli.py)
    python -m analysis random-features export --phase hard --horizon 20000 --out outputs/rf/hard.npy

--runs / --target-runs: globs (quoted) of anything analysis.runs.load reads; failed launches are
skipped, diverged runs and runs without a final loss left out, each with a note. The source LR is
--lr, else the optimum fitted to the source runs' final losses (>= 3 peak LRs) when bracketed by the
swept LRs or extrapolated by at most --max-extrapolation, else their one peak LR. An undetermined
optimum gets no override, but the LRs to run next. Exit status 1 when transfer has no source LR or
no target, or sweep no determined optimum. Per horizon; plots (PNG + PDF) go to --out.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis import advise, horizon, plots, random_features_cli, refine
from analysis.extend import cmd_extend
from analysis.fit import G_MODELS, fit_bound
from analysis.groups import describe, same_shape
from analysis.report import curve_of, note, print_table, say, setup_of
from analysis.runs import load_many


def _load(patterns, what="--runs"):
    """load_many, with its warnings (runs skipped and why) printed as notes; runs without a schedule
    config or a peak LR are left out with a note."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = load_many(patterns)
    for warning in caught:
        if issubclass(warning.category, UserWarning) and type(warning.message) is UserWarning:
            note(str(warning.message))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    usable = [r for r in runs if r.schedule_config is not None and r.peak_lr]
    for run in (r for r in runs if r not in usable):
        note(f"left out {run.name}: it records no schedule config or peak LR")
    if not usable:
        raise SystemExit(f"{what}: none of the {len(runs)} runs records a schedule config and a peak LR")
    return usable


def _factor(text: str) -> float:
    """--max-extrapolation: a factor >= 1 beyond the swept LRs."""
    value = float(text)
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a factor >= 1 (1: trust only bracketed optima)")
    return value


def _notes(sweep):
    for name, reason in sweep.excluded:
        note(f"{sweep.name}, T={sweep.config['total_steps']}: left out {reason}: {name}")


def _lrs(values) -> str:
    return ",".join(f"{v:.2g}" for v in values)


def _status(sweep) -> str:
    """The status of a sweep's optimum as the tables print it."""
    if sweep.status == "extrapolated":
        return f"extrapolated x{sweep.fit.factor_outside:.2f}"
    return sweep.status


def _run_next(config, sweep) -> str:
    return f"python train.py -m {advise.hydra_overrides(config, None)} optimizer.lr={_lrs(sweep.next_lrs())}"


def _plotted(sweep) -> dict:
    """What plots.plot_lr_sweep draws of a sweep."""
    diverged = [r.peak_lr for r in sweep.runs if r.peak_lr and advise.diverged_reason(r)] + \
        ([sweep.ceiling] if np.isfinite(sweep.ceiling) else [])
    return {"lrs": sweep.lrs, "losses": sweep.losses, "fit": sweep.fit, "diverged_lrs": sorted(set(diverged)),
            "next_lrs": sweep.next_lrs() if len(sweep.lrs) > 1 else []}


def _plot_name(out, stem, T, horizons):
    return Path(out) / (stem if len(horizons) == 1 else f"{stem}_T{T}")


def _title(what, runs, T):
    setup = setup_of(runs)
    return f"{what}, T = {T:,} steps" + (f" ({setup})" if setup else "")


def _overlay(sweep, args, path, title):
    """Per-run (or joint with --joint) fits of the counted runs' validation curves to the bound; a run
    with fewer than 4 validation points (or only a final value) gets a note instead."""
    curves = [curve_of(run) for run in sweep.counted]
    for run, curve in zip(sweep.counted, curves):
        if curve is None:
            note(f"no curve fit for {run.name}: fewer than 4 validation points")
    curves = [c for c in curves if c is not None]
    try:
        if args.joint and curves:
            fit = fit_bound(curves, g_model=args.g_model, min_step=args.fit_from)
            pairs = [(c, fit) for c in fit.curves]
        else:
            pairs = [(f.curves[0], f) for f in (fit_bound(c, g_model=args.g_model, min_step=args.fit_from)
                                                for c in curves)]
    except ValueError as error:
        note(f"no bound fit for the curves of {title}: {error}")
        return []
    if not pairs:
        return []
    print(f"\nbound fits ({args.g_model} G_t, {'joint' if args.joint else 'per run'}):")
    for curve, fit in pairs:
        print(f"  {curve.label:>12}: C={fit.C:.4f} M={fit.M:.4g} R^2={fit.r2:.4f} RMSE={fit.rmse:.4f}")
    return plots.plot_overlay(pairs, path, title=title)


def _targets(source, target_sweeps, args):
    """Target schedule configs at the source's horizon: --target-runs' schedules, --set, --target."""
    targets = [s.config for s in target_sweeps if not same_shape(s.config, source, args.group_tolerance)
               and s.config["total_steps"] == source["total_steps"]]
    for spec in args.set:
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--set {spec!r} is not KEY=V1,V2,...; write e.g. --set cooldown_fraction=0.1,0.4")
        # values as YAML reads them: 0.1 -> float, null -> None, linear -> str
        targets += [advise.with_args(source, **{key: yaml.safe_load(v)}) for v in values.split(",")]
    for spec in args.target:
        name, _, rest = spec.partition(":")
        pairs = [item.partition("=") for item in rest.split(",") if item]
        if any(not key or not sep for key, sep, _ in pairs):
            raise ValueError(f"--target {spec!r} is not NAME[:KEY=VALUE,...]; "
                             "write e.g. --target cosine:final_fraction=0.1")
        targets.append(advise.group_config(name, like=source, **{k: yaml.safe_load(v) for k, _, v in pairs}))
    return targets


def _transfer_at(group, target_sweeps, args, horizons):
    """Transfer at one horizon: prints the source's LR and how it was found, the table, then overrides
    (or, when the source optimum is undetermined, the LRs to run next). Returns (table, problem)."""
    members = group.runs
    sweep = advise.make_sweep(members, args.max_loss, args.max_extrapolation, name=group.name)
    source, T = sweep.config, sweep.config["total_steps"]
    say(f"\n== horizon T = {T:,} steps: source {sweep.name} ({advise.schedule_label(source)}), "
          f"{len(sweep.lrs)} of {len(members)} runs counted")
    _notes(sweep)
    lr, problem = None, None
    if args.lr is not None:
        lr, how = args.lr, "given by --lr"
    elif sweep.status != "undetermined":
        lr = sweep.optimum
        how = f"fitted to {len(sweep.lrs)} runs (final loss = A/lr + B lr + C, R^2 {sweep.fit.r2:.4f}), {sweep.status}"
        if sweep.status == "extrapolated":
            how += (f" {sweep.fit.factor_outside:.2f}x beyond the swept LRs "
                    f"(within --max-extrapolation {args.max_extrapolation:g})")
    elif len(set(sweep.lrs)) == 1:
        lr, how = sweep.lrs[0], "the runs' one peak LR, taken as tuned (no sweep to fit)"
    else:
        how = f"undetermined: {sweep.why()}"
        problem = f"T={T}: the source optimum is undetermined ({sweep.why()}); run next: {_run_next(source, sweep)}"
    say(f"source LR: {lr:.4g} ({how})" if lr is not None else f"source LR: {how}")
    targets = _targets(source, target_sweeps, args)
    if not targets:
        problem = problem or (f"T={T}: no target schedule; give --target NAME, --set KEY=V1,V2 or "
                              "--target-runs GLOB")
    table = advise.transfer_table(lr, source, targets, G=args.G, D=args.D)
    table["schedule"] = [sweep.name] + [describe(c) for c in targets]
    table["T"] = T
    found = [sweep] + [next((s for s in target_sweeps if same_shape(s.config, c, args.group_tolerance)), None)
                       for c in targets]
    table["measured_lr"] = [s.optimum if s is not None else np.nan for s in found]
    table["status"] = [_status(s) if s is not None else "no runs" for s in found]
    table["next_lrs"] = [_lrs(s.next_lrs()) if s is not None else "" for s in found]
    table["predicted/measured"] = table["lr"] / table["measured_lr"]
    say("lr_B = lr_A * gamma*_B / gamma*_A at the same horizon "
          f"(D = {args.D:g}, G = {args.G:g}); first row: the source\n")
    print_table(table, ["schedule", "theory_gamma", "ratio", "lr", "measured_lr", "status", "next_lrs",
                        "predicted/measured"],
                {"theory_gamma": "{:.4g}", "ratio": "{:.3f}", "lr": "{:.4g}", "measured_lr": "{:.4g}",
                 "predicted/measured": "{:.3f}"})
    if lr is not None:
        print("\nHydra overrides (python train.py ...):")
        for _, row in table.iterrows():
            print(f"  {row['schedule']}:\n    {row['overrides']}")
    else:
        print(f"\nno overrides: the source optimum is undetermined. Run next:\n  {_run_next(source, sweep)}")
    if not args.no_plot:
        sweep_groups = [{**(_plotted(s) if s else {"lrs": [], "losses": []}), "label": row["schedule"],
                         "predicted_lr": row["lr"] if lr is not None else None}
                        for (_, row), s in zip(table.iterrows(), found)]
        drawn = [g for g in sweep_groups if len(g["lrs"]) or g["predicted_lr"]]
        written = plots.plot_lr_sweep(drawn, _plot_name(args.out, "lr_sweep", T, horizons),
                                      title=_title("transfer: final loss vs peak LR", members, T)) if drawn else []
        written += _overlay(sweep, args, _plot_name(args.out, "overlay", T, horizons),
                            _title(f"{sweep.name}: validation loss and fitted bound", members, T))
        print("\nplots:\n" + "\n".join(f"  {p}" for p in written))
    return table, problem


def cmd_transfer(args):
    groups = advise.sweep_groups(_load(args.runs), args.group_tolerance)
    horizons = sorted({g.total_steps for g in groups})
    if len(groups) != len(horizons):
        raise SystemExit(f"--runs must be the runs of one schedule (per horizon); found {len(groups)} sweeps: "
                         f"{[g.name for g in groups]}; narrow the glob (or raise --group-tolerance)")
    target_sweeps = (advise.sweeps_of(_load(args.target_runs, "--target-runs"), args.max_loss,
                                      args.group_tolerance, args.max_extrapolation) if args.target_runs else [])
    if len(horizons) > 1:
        say(f"the source runs have {len(horizons)} horizons {horizons}: transfer is done per horizon")
    results = [_transfer_at(group, target_sweeps, args, horizons) for group in groups]
    problems = [problem for _, problem in results if problem]
    if problems:
        raise SystemExit("cannot advise: " + "; ".join(problems))
    return pd.concat([table for table, _ in results], ignore_index=True)


def cmd_sweep(args):
    runs = _load(args.runs)
    table = advise.sweep_table(runs, reference=args.reference, max_loss=args.max_loss,
                               tolerance=args.group_tolerance, G=args.G, D=args.D,
                               max_extrapolation=args.max_extrapolation)
    table["status_text"] = table["sweep"].map(_status)
    shown = pd.DataFrame({
        "schedule": table["schedule"], "T": table["T"],
        "runs": [f"{len(s.lrs)}/{len(s.runs)}" for s in table["sweep"]],
        "swept LRs": [f"{min(s.lrs):.2g}-{max(s.lrs):.2g}" if s.lrs else "-" for s in table["sweep"]],
        "status": table["status_text"].str.replace("extrapolated", "extrap."),
        "optimum": table["empirical_lr"], "gamma*": table["theory_gamma"], "predicted": table["predicted_lr"],
        "pred/opt": table["predicted/empirical"], "next LRs": table["sweep"].map(lambda s: _lrs(s.next_lrs()))})
    print_table(shown, list(shown.columns), {"T": "{:,}", "optimum": "{:.3g}", "gamma*": "{:.3g}",
                                              "predicted": "{:.3g}", "pred/opt": "{:.2f}"})
    say("runs: counted/all; optimum: of final loss = A/lr + B lr + C; gamma*: the theory's (D = G = 1)")
    anchor = f"reference {args.reference}" if args.reference else "geometric mean over the bracketed optima"
    say(f"predicted = gamma* x one constant per horizon ({anchor}); extrap. xF: F times beyond the swept "
          f"LRs (at most --max-extrapolation {args.max_extrapolation:g}); undetermined: no optimum, run next LRs")
    for sweep in table["sweep"]:
        _notes(sweep)
    print("\nHydra overrides (python train.py ...):")
    for _, row in table.iterrows():
        sweep = row["sweep"]
        name = row["schedule"] + ("" if "T =" in row["schedule"] else f", T = {row['T']:,} steps")
        if np.isfinite(row["empirical_lr"]):
            say(f"  {name} ({row['status_text']}):")
            print(f"    {advise.hydra_overrides(row['config'], row['empirical_lr'])}")
        elif sweep.next_lrs():
            say(f"  {name}: undetermined ({sweep.why()}); run next:")
            print(f"    {_run_next(row['config'], sweep)}")
    if not args.no_plot:
        written, horizons = [], sorted(set(table["T"]))
        for T, rows in table.groupby("T"):
            groups = [{**_plotted(row["sweep"]), "label": row["schedule"], "predicted_lr": row["predicted_lr"]}
                      for _, row in rows.iterrows()]
            groups = [g for g in groups if len(g["lrs"]) or np.isfinite(g["predicted_lr"])]
            if groups:
                written += plots.plot_lr_sweep(groups, _plot_name(args.out, "lr_sweep", T, horizons),
                                               title=_title("final loss vs peak LR", runs, T))
        print("\nplots:\n" + "\n".join(f"  {p}" for p in written))
    if not np.isfinite(table["predicted_lr"]).any():
        raise SystemExit("cannot advise: no schedule has a determined optimum ("
                         + "; ".join(f"{r['schedule']}, T={r['T']}: {r['sweep'].why()}" for _, r in table.iterrows())
                         + "); run the next_lrs of the table")
    return table


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
        p.add_argument("--fit-from", type=int, default=None,
                       help="fit loss curves from this step on (default: 1000, or 10%% of a shorter run)")

    def grouping(p):
        p.add_argument("--group-tolerance", type=float, default=0.01, metavar="TOL",
                       help="runs are one sweep when their schedules' multipliers differ by at most TOL "
                            "(of the peak LR) at every step, above a floor of 1%% (analysis.groups; default 0.01)")
        p.add_argument("--max-loss", type=float, default=None,
                       help="also leave out runs with a larger final loss (diverged runs are left out anyway)")
        extrapolation(p)

    def extrapolation(p):
        p.add_argument("--max-extrapolation", type=_factor, default=2.0, metavar="FACTOR",
                       help="trust a fitted optimum at most this factor beyond the swept LRs (default 2)")

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
    p.add_argument("--lr", type=float, default=None, help="the run's tuned peak LR (default: fitted to "
                   "--sweep, else the run's peak LR)")
    p.add_argument("--sweep", action="append", default=[], metavar="GLOB",
                   help="glob (quoted) of the run's LR sweep at T1: the tuned LR is its fitted optimum; repeatable")
    extrapolation(p)
    common(p, "extend")
    curve_fits(p)
    p.set_defaults(func=cmd_extend)   # analysis/extend.py owns `advise extend`

    p = modes.add_parser("sweep", help="empirical optimal LR per schedule vs the theory")
    p.add_argument("--runs", required=True, action="append", help="glob (quoted) of the sweep's runs; repeatable")
    p.add_argument("--reference", default=None,
                   help="anchor the prediction at this schedule (its name as printed in the schedule column; "
                        "default: the geometric mean over the bracketed optima)")
    grouping(p)
    common(p, "sweep")
    p.set_defaults(func=cmd_sweep)
    horizon.add_parser(modes)      # analysis/horizon.py owns `advise horizon`
    refine.add_parser(commands)
    random_features_cli.add_parser(commands)   # analysis/random_features_cli.py owns `random-features`
    return parser


def main(argv=None):
    """Run one command; returns what it computed (a table, for scripts and tests)."""
    args = build_parser().parse_args(argv)
    return args.func(args)
