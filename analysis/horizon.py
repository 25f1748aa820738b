"""Horizon transfer: how the best peak LR of one schedule family scales with the horizon T, from real runs.

    python -m analysis advise horizon --runs 'outputs/multiruns/*/*' [--runs GLOB ...] [--out DIR]
    python -m analysis.horizon --runs 'paper-logs/ann124-0.2_*decay_linear*'     # the same, standalone
    from analysis.horizon import horizon_fits
    fits = horizon_fits(load_many(...))     # one HorizonFit per family: fit.xi, fit.se, fit.phase

Bordelon & Mori (THEORY.md section 6; the model is analysis/random_features.py) tell two phases apart
by how the optimal base LR depends on the horizon: in the easy phase it shrinks, eta*(T) ~ T^-xi with
xi = 1 - b/a > 0; in the hard phase an annealed schedule keeps its base LR (xi = 0) and only shortens its
anneal. Here, per family:
1. The runs are grouped into LR sweeps (analysis.advise.sweep_groups: one schedule shape, horizon,
   model and data); the sweeps of one family are those whose schedule reads the same in words
   (analysis.groups.describe, warmup included: "WSD, 20% linear cooldown" at any T) and whose model
   and data agree. Diverged runs are left out as `advise sweep` does (analysis.advise.make_sweep).
2. Per horizon, eta* is the optimum of the sweep's fit final loss = A/lr + B lr + C (analysis.fit, the
   parabola-like shape in log LR that `advise sweep` prints), used where it is bracketed by the swept
   LRs (or extrapolated by at most --max-extrapolation); a horizon whose best run sits at an edge of its
   sweep (the fit's optimum inside, the runs' not) is flagged, and --strict leaves it out. The standard
   error of log eta* comes from the fit's covariance (delta method on log eta* = (log A - log B)/2), with
   the residual variance of the final losses pooled over the family's fitted sweeps: a 3-LR sweep fits
   exactly and has no residual of its own, and the noise of a final loss (seed, misfit of the model) is
   taken to be the same at every horizon. The model is symmetric in log(lr/eta*) but no parabola: on the
   paper's 4-LR sweeps its rms residual is 4-8x a parabola's, while on losses that are exact parabolas in
   log LR, sampled on one fixed grid at every T, it leans toward the grid's centre (measured: xi 0.357 +-
   0.026 for a true 0.4, 7 LRs 5e-5..3.2e-3, T = 1k..16k); sweeps centred near the optimum avoid that.
3. log eta*(T) = c - xi log T by weighted least squares (weights 1/se^2). The exponent's standard error
   is the propagated one, scaled up by sqrt(chi^2/dof) when the horizons scatter more than their errors
   say (>= 3 horizons). Without any residual (every sweep has 3 LRs): unweighted, with the scatter's se
   (>= 3 horizons), else no se.
4. Verdict, with t the 95% two-sided Student-t quantile at the dof the se rests on (the pooled residual's,
   or n - 2 for the scatter; 1.96 for many, 4.3 for 2): easy when xi > t se; eta* grows (neither phase)
   when xi < -t se; hard when xi is within t se of 0 and xi + t se < HARD_BAND (the data rule out a drift
   like the easy phase's); otherwise inconclusive (consistent with 0, but too uncertain).
The convex bound's own prediction (gamma* of the family's shape at each T, analysis.bound) is printed
beside it (about 1/2 for a schedule whose shape is fixed in t/T).
Exit status 1 when a family has fewer than 2 horizons with a determined optimum (the message names
the horizons and what each is missing). Tests: python -m pytest tests/test_horizon.py
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from analysis import advise
from analysis.bound import optimal_lr
from analysis.groups import describe

LEVEL = 0.95          # two-sided confidence of the verdict: |xi| > t se, t the Student-t quantile at the se's dof
HARD_BAND = 0.15      # hard: xi + t se below this; over the paper's 15k-50k steps, eta* then moves < 20%


@dataclass
class HorizonFit:
    """One family: its sweeps by horizon, the optima used, the fitted exponent and the verdict."""
    family: str                                    # the schedule in words, then the model and data
    sweeps: list                                   # analysis.advise.Sweep, one per horizon, by T
    used: list = field(default_factory=list)       # indices into sweeps of the horizons fitted
    log_opt: np.ndarray = None                     # log eta* per sweep (NaN where not used)
    log_se: np.ndarray = None                      # its standard error (NaN where unknown)
    residual_dof: int = 0                          # dof of the pooled residual variance of final losses
    xi: float = np.nan
    se: float = np.nan
    c: float = np.nan                              # log eta*(T) = c - xi log T
    chi2_dof: float = np.nan                       # chi^2/dof of the WLS fit (NaN below 3 horizons)
    se_from: str = ""                              # how the se was found, in words
    se_dof: int = 0                                # the dof the se rests on (sets the verdict's t quantile)
    bound_xi: float = np.nan                       # the convex bound's exponent for this family
    phase: str = "undetermined"                    # easy / hard / neither / inconclusive / undetermined
    verdict: str = ""
    schedule: str = ""                             # the family's name in parts: the schedule in words,
    setup: str = ""                                # and the model and data keys its runs share

    @property
    def horizons(self) -> list[int]:
        return [int(s.config["total_steps"]) for s in self.sweeps]

    def problem(self) -> str:
        """What is missing when fewer than 2 horizons have a determined optimum ('' otherwise)."""
        if len(self.used) >= 2:
            return ""
        missing = [f"T={T}: " + (f"{s.why()} (next LRs {', '.join(f'{lr:.2g}' for lr in s.next_lrs())})"
                                 if s.status == "undetermined" else "the best run is at an edge of the swept LRs "
                                 "(--strict)") for i, (T, s) in enumerate(zip(self.horizons, self.sweeps))
                   if i not in self.used]
        found = [f"T={self.horizons[i]}" for i in self.used]
        return (f"{self.family}: {len(self.used)} horizon(s) with a determined optimum ({', '.join(found) or 'none'})"
                f", a fit of eta*(T) needs >= 2" + ("; " + "; ".join(missing) if missing else
                                                     "; run this schedule at another horizon"))


def log_optimum_se(fit, residual_variance: float) -> float:
    """Standard error of log sqrt(A/B) for the fit final loss = A/lr + B lr + C (analysis.fit.LRFit), by
    the delta method: Cov(A, B, C) = s^2 (J^T J)^-1 with J = [1/lr, lr, 1], gradient (1/(2A), -1/(2B), 0).
    The LRs are scaled by their geometric mean first (the same fit, better conditioned)."""
    ref = float(np.exp(np.mean(np.log(fit.lrs))))
    x = fit.lrs / ref
    J = np.stack([1.0 / x, x, np.ones_like(x)], axis=1)
    a, b = fit.A / ref, fit.B * ref
    grad = np.array([0.5 / a, -0.5 / b, 0.0])
    return float(np.sqrt(residual_variance * grad @ np.linalg.solve(J.T @ J, grad)))


def _family_sweeps(runs, max_loss, tolerance, max_extrapolation) -> dict[tuple[str, str], list]:
    """The LR sweeps among runs (analysis.advise.sweep_groups, make_sweep) grouped by family: the schedule
    in words, warmup included, and the model and data keys the runs record (the groups' `by`)."""
    families = {}
    for group in advise.sweep_groups(runs, tolerance):
        sweep = advise.make_sweep(group.runs, max_loss, max_extrapolation, name=group.name)
        setup = ", ".join(f"{key}={value}" for key, value in sorted(group.by.items()))
        families.setdefault((describe(group.config, warmup=True), setup), []).append(sweep)
    return families


def fit_exponent(T, log_opt, log_se):
    """log eta* = c - xi log T by WLS: (xi, se, c, chi2/dof, how). log_se all NaN: unweighted, with the
    scatter's se (NaN with 2 points). chi2/dof is NaN with 2 points."""
    x, y, se = np.log(np.asarray(T, dtype=float)), np.asarray(log_opt, float), np.asarray(log_se, float)
    dof = len(x) - 2
    if np.all(np.isfinite(se)) and np.all(se > 0):
        (slope, c), cov = np.polyfit(x, y, 1, w=1.0 / se, cov="unscaled")
        chi2 = float((((y - (c + slope * x)) / se) ** 2).sum())
        chi2_dof = chi2 / dof if dof > 0 else np.nan
        se_xi = float(np.sqrt(cov[0, 0]) * (np.sqrt(max(chi2_dof, 1.0)) if dof > 0 else 1.0))
        how = "WLS on the per-horizon errors" + (f", chi2/dof {chi2_dof:.2f}" if dof > 0 else "") + \
            (": se scaled by its square root" if dof > 0 and chi2_dof > 1 else "")
        return -float(slope), se_xi, float(c), chi2_dof, how
    if dof > 0:
        (slope, c), cov = np.polyfit(x, y, 1, cov=True)    # cov scaled by the residual variance
        return -float(slope), float(np.sqrt(cov[0, 0])), float(c), np.nan, "OLS, se from the scatter"
    slope, c = np.polyfit(x, y, 1)
    return -float(slope), np.nan, float(c), np.nan, "exact line through 2 points, no error estimate"


def classify(xi: float, se: float, n: int, dof: int) -> tuple[str, str]:
    """(phase, verdict in words) from the fitted exponent, its standard error (resting on `dof` degrees of
    freedom) and the number of horizons n."""
    band = HARD_BAND
    if not np.isfinite(se) or dof < 1:
        return "undetermined", (f"no uncertainty for xi = {xi:.3f}: give a sweep >= 4 LRs (a residual) or a "
                                "third horizon")
    z = float(student_t.ppf(0.5 + LEVEL / 2, dof))
    if xi > z * se:
        return "easy", (f"easy phase: eta* shrinks with T, xi = {xi:.3f} +- {se:.3f} > {z:.2f} se over {n} "
                        "horizons (Bordelon-Mori: a base LR tuned at one horizon is too large at a longer one)")
    if xi < -z * se:
        return "neither", (f"neither phase: eta* grows with T, xi = {xi:.3f} +- {se:.3f} < -{z:.2f} se over {n} "
                           "horizons (neither Bordelon-Mori phase has that)")
    if xi + z * se < band:
        return "hard", (f"hard phase: the base LR transfers across horizons, xi = {xi:.3f} +- {se:.3f} is within "
                        f"{z:.2f} se of 0 and xi + {z:.2f} se = {xi + z * se:.2f} < {band:g}, over {n} horizons "
                        "(Bordelon-Mori: anneal, keep the base LR)")
    return "inconclusive", (f"inconclusive: xi = {xi:.3f} +- {se:.3f} is consistent with 0 but also with up to "
                            f"{xi + z * se:.2f}; add horizons (a wider T range) or LRs around the optima")


def _bound_xi(sweeps) -> float:
    """The convex bound's exponent: gamma* (D = G = 1) of the family's shape at each horizon, fitted in log-log."""
    if len(sweeps) < 2:
        return np.nan
    T = [s.config["total_steps"] for s in sweeps]
    gamma = [optimal_lr(advise.shape_of(s.config))[0] for s in sweeps]
    return -float(np.polyfit(np.log(T), np.log(gamma), 1)[0])


def best_run_inside(sweep) -> bool:
    """Whether the sweep's lowest final loss has a swept LR on each side (the measurements bracket the
    optimum, not only the fit: a fitted optimum can lie inside while the best run is the largest LR)."""
    best = sweep.lrs[int(np.argmin(sweep.losses))]
    return min(sweep.lrs) < best < max(sweep.lrs)


def horizon_fits(runs, max_loss=None, tolerance=0.01, max_extrapolation=1.0, strict=False,
                 bound=True) -> list[HorizonFit]:
    """One HorizonFit per family among `runs` (analysis.runs.Run), ordered by name. max_extrapolation 1:
    bracketed optima only; strict: only those whose best run is inside too (best_run_inside).
    bound=False skips the convex bound's exponent (it builds every schedule)."""
    fits = []
    for (schedule, setup), sweeps in sorted(_family_sweeps(runs, max_loss, tolerance, max_extrapolation).items()):
        sweeps = sorted(sweeps, key=lambda s: s.config["total_steps"])
        used = [i for i, s in enumerate(sweeps) if s.status != "undetermined" and (best_run_inside(s) or not strict)]
        # Residual variance of final losses, pooled over the sweeps with a determined optimum (used or left
        # out by --strict; an undetermined fit sits on its A, B >= 0 bounds), each fit with 3 parameters.
        fitted = [s.fit for s in sweeps if s.status != "undetermined"]
        sse = sum(float(((f.losses - f.predict(f.lrs)) ** 2).sum()) for f in fitted)
        dof = sum(len(f.lrs) - 3 for f in fitted)
        s2 = sse / dof if dof > 0 else np.nan
        log_opt = np.full(len(sweeps), np.nan)
        log_se = np.full(len(sweeps), np.nan)
        for i in used:
            log_opt[i] = np.log(sweeps[i].optimum)
            log_se[i] = log_optimum_se(sweeps[i].fit, s2) if dof > 0 else np.nan
        fit = HorizonFit(schedule + (f" ({setup})" if setup else ""), sweeps, used, log_opt, log_se,
                         residual_dof=dof, schedule=schedule, setup=setup)
        if len(used) >= 2:
            T = [fit.horizons[i] for i in used]
            fit.xi, fit.se, fit.c, fit.chi2_dof, fit.se_from = fit_exponent(T, log_opt[used], log_se[used])
            weighted = bool(np.all(log_se[used] > 0))     # as fit_exponent decides (NaN compares False)
            fit.se_dof = dof if weighted else len(used) - 2
            fit.phase, fit.verdict = classify(fit.xi, fit.se, len(used), fit.se_dof)
            fit.bound_xi = _bound_xi([sweeps[i] for i in used]) if bound else np.nan
        fits.append(fit)
    return fits


# --- Output: table, verdict, plot; the `advise horizon` subcommand. --------------------------------
def _table(fit: HorizonFit) -> pd.DataFrame:
    """The printed table: per horizon the runs counted/all, the swept LRs, eta* +- its se, and whether the
    optimum is bracketed (by the fit, and by the runs: else which edge holds the best run)."""
    rows = []
    for i, (T, sweep) in enumerate(zip(fit.horizons, fit.sweeps)):
        opt, se = np.exp(fit.log_opt[i]), fit.log_se[i]
        status = "yes" if sweep.status == "bracketed" else sweep.status
        if sweep.status == "extrapolated":
            status = f"extrapolated x{sweep.fit.factor_outside:.2f}"
        if sweep.status != "undetermined" and not best_run_inside(sweep):
            edge = "largest" if sweep.losses[-1] <= min(sweep.losses) else "smallest"
            status += f" (fit; best run at the {edge} LR{', not used: --strict' if i not in fit.used else ''})"
        rows.append({"horizon": T, "#runs": f"{len(sweep.lrs)}/{len(sweep.runs)}",
                     "LRs": ",".join(f"{lr:.2g}" for lr in sorted(set(sweep.lrs))) or "-",
                     "best LR": opt, "+- err": opt * se, "bracketed?": status})
    return pd.DataFrame(rows)


def plot_horizon(fits, path, title="best peak LR vs horizon") -> list[Path]:
    """eta* vs T (log-log) per family with its +-1 se bars and the fitted power law, the swept LRs of
    each horizon as faint circles. Writes PNG + PDF (analysis.plots.save_figure); path=None: the Figure."""
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    from analysis.plots import category_colors, save_figure

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    setups = {fit.setup for fit in fits}
    common = setups.pop() if len(setups) == 1 else None     # said once, in the title
    for fit, color in zip(fits, category_colors(len(fits))):
        for T, sweep in zip(fit.horizons, fit.sweeps):
            ax.plot([T] * len(sweep.lrs), sweep.lrs, "o", ms=4, color=color, alpha=0.35, mfc="none")
        used = fit.used
        T = np.array([fit.horizons[i] for i in used], dtype=float)
        opt, se = np.exp(fit.log_opt[used]), np.nan_to_num(fit.log_se[used])
        ax.errorbar(T, opt, yerr=[opt - opt * np.exp(-se), opt * np.exp(se) - opt], fmt="o", ms=5, capsize=3,
                    color=color, label=textwrap.fill(fit.schedule if common is not None else fit.family, 90)
                    + (f": xi = {fit.xi:.3f} +- {fit.se:.3f} ({fit.phase})" if np.isfinite(fit.xi) else ""))
        if np.isfinite(fit.xi):
            grid = np.geomspace(T.min(), T.max(), 50)
            ax.plot(grid, np.exp(fit.c) * grid ** -fit.xi, "--", color=color, lw=1.2)
    horizons = sorted({T for fit in fits for T in fit.horizons})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(horizons, labels=[f"{T:,}" for T in horizons])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("horizon T (steps)")
    ax.set_ylabel("peak LR")
    ax.set_title(title + (f" ({common})" if common else ""), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    swept = Line2D([], [], ls="", marker="o", mfc="none", color="gray", alpha=0.5, label="swept LRs")
    fitted = Line2D([], [], ls="--", color="gray", label="fit eta* = exp(c) T^-xi (WLS); bars: eta* +- 1 se")
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], fitted, swept], fontsize=6, loc="upper center",
              bbox_to_anchor=(0.5, -0.14))
    return fig if path is None else save_figure(fig, path)


def add_parser(modes):
    """Adds `horizon` to the `advise` subcommands (the argparse subparsers of analysis/cli.py's advise)."""
    p = modes.add_parser("horizon", help="how the best peak LR scales with the horizon (Bordelon-Mori phase)",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)
    p.set_defaults(func=main)
    return p


def _arguments(p):
    p.add_argument("--runs", required=True, action="append",
                   help="glob (quoted) of one schedule family's runs at several horizons and LRs; repeatable")
    p.add_argument("--group-tolerance", type=float, default=0.01, metavar="TOL",
                   help="runs are one sweep when their schedules' multipliers differ by at most TOL (default 0.01)")
    p.add_argument("--max-loss", type=float, default=None,
                   help="also leave out runs with a larger final loss (diverged runs are left out anyway)")
    p.add_argument("--max-extrapolation", type=float, default=1.0, metavar="FACTOR",
                   help="use a fitted optimum at most this factor beyond the swept LRs (default 1: bracketed only)")
    p.add_argument("--out", default="outputs/analysis/horizon", help="folder for the plot (horizon.png/.pdf)")
    p.add_argument("--strict", action="store_true",
                   help="use only horizons whose best run has a swept LR on each side (not only the fit's optimum)")
    p.add_argument("--no-plot", action="store_true", help="skip the plot")


def main(args) -> pd.DataFrame:
    """`advise horizon`: per family the table, the fit and the verdict; the plot. Returns one row per
    family (family, horizons, xi, se, phase, ...); exits 1 when a family lacks 2 determined horizons."""
    from analysis.cli import _load     # the advisor's loader (notes for skipped runs); cli imports this module
    from analysis.report import note, print_table, say

    if not args.max_extrapolation >= 1:
        raise SystemExit(f"--max-extrapolation {args.max_extrapolation:g} must be a factor >= 1 (1: bracketed only)")
    fits = horizon_fits(_load(args.runs), args.max_loss, args.group_tolerance, args.max_extrapolation, args.strict)
    for fit in fits:
        say(f"\n== {fit.family}: {len(fit.sweeps)} horizon(s)")
        for sweep in fit.sweeps:
            for name, reason in sweep.excluded:
                note(f"T={sweep.config['total_steps']}: left out {reason}: {name}")
        print_table(_table(fit), ["horizon", "#runs", "LRs", "best LR", "+- err", "bracketed?"],
                    {"horizon": "{:,}", "best LR": "{:.4g}", "+- err": "{:.2g}"})
        for T, sweep in zip(fit.horizons, fit.sweeps):
            if sweep.status == "undetermined":
                note(f"T={T}: no optimum ({sweep.why()}); not fitted")
        if len(fit.used) < 2:
            continue
        say(f"best LR: optimum of final loss = A/lr + B lr + C; err: 1 se from the fit's curvature, residual "
            f"pooled over the family's sweeps ({fit.residual_dof} dof)")
        say(f"fit log eta* = c - xi log T over {len(fit.used)} horizons ({fit.se_from}): xi = {fit.xi:.3f} +- "
            f"{fit.se:.3f}; the convex bound's own exponent for this shape: {fit.bound_xi:.3f}")
        say(f"verdict: {fit.verdict}")
    fitted = [f for f in fits if len(f.used) >= 2]
    if fitted and not args.no_plot:
        written = plot_horizon(fitted, Path(args.out) / "horizon")
        print("\nplots:\n" + "\n".join(f"  {p}" for p in written))
    problems = [f.problem() for f in fits if f.problem()]
    if problems:
        raise SystemExit("cannot fit eta*(T): " + "; ".join(problems))
    return pd.DataFrame([{"family": f.family, "horizons": [f.horizons[i] for i in f.used], "xi": f.xi, "se": f.se,
                          "phase": f.phase, "bound_xi": f.bound_xi, "fit": f} for f in fits])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m analysis.horizon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(parser)
    main(parser.parse_args())
