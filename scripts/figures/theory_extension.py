"""Theory figures of continued training (docs/theory.md section 3): a WSD-0.2 run tuned at T1 = 4000 is
extended to T2 = 1.5 .. 4 x T1 keeping its LR, either with a second, lower plateau rho (Fig. 8, the
two-stage WSD) or with an adapted cooldown fraction (Fig. 9). Both are solved by the project's
extension logic, analysis.extend.extension_options; the figures only draw its answers.

    python -m scripts.reproduce --figure fig8 --figure fig9 [--small]
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from analysis.extend import extension_options
from scripts.figures.common import FigureSpec
from scripts.figures.theory_common import curve, figure, finish, shades, shape, thousands, tuned

BASE_FRACTION = 0.2
# Rows of extension_options' table, found by words of their option name.
OPTIONS = {"fig8": "rho", "fig9": "adapted cooldown"}
SAME_LR, LINEAR = "same LR", "linear decay"


def _settings(ctx):
    """(T1, extension factors): the paper's T1 = 4000 and 1.5, 2, ..., 4; small: T1 = 400, fewer factors."""
    return (400, (2.0, 3.0, 4.0)) if ctx.small else (4000, (1.5, 2.0, 2.5, 3.0, 3.5, 4.0))


def base_config(T1: int) -> dict:
    """The run being extended: WSD with a 20% linear cooldown, no warmup (the paper's simulation)."""
    return {"_target_": "schedules.WSD", "total_steps": T1, "warmup_steps": 0, "warmup_start": 0.0,
            "cooldown_fraction": BASE_FRACTION, "cooldown_kind": "linear", "final_fraction": 0.0}


@lru_cache(maxsize=4)
def _extensions(T1: int, factors: tuple):
    """{T2: extension_options table (indexed by option)}, in theory units: the LR in use is gamma*(T1)."""
    config = base_config(T1)
    gamma_1 = tuned(shape(config))["gamma_star"]
    return gamma_1, {int(f * T1): extension_options(config, gamma_1, int(f * T1)).set_index("option")
                     for f in factors}


def _row(table, words):
    """The one row of an extension_options table whose option name contains `words`."""
    found = [option for option in table.index if words in option]
    assert len(found) == 1, f"extension_options has {found} for {words!r}: {list(table.index)}"
    return table.loc[found[0]]


def _figure(ctx, name):
    option = OPTIONS[name]
    T1, factors = _settings(ctx)
    gamma_1, tables = _extensions(T1, tuple(factors))
    fig, (ax_lr, ax_b, ax_p) = figure(3, width=4.5)
    horizons = list(tables)
    base = gamma_1 * shape(base_config(T1))
    numbers = {"T1": T1, "gamma_1": gamma_1, "factor": list(factors), "T2": horizons, "option": option,
               "base": {"lr": base, "curve": curve(base)}, "extended": {}, "same_lr": {}, "linear_tuned_final": {}}
    ax_lr.plot(np.arange(1, T1 + 1), base, color="k", lw=1.5, label=f"WSD-0.2 tuned at T1 = {T1:,}")
    ax_b.plot(numbers["base"]["curve"]["step"], numbers["base"]["curve"]["bound"], color="k", lw=1.5)
    previous = 0
    for i, (T2, color) in enumerate(zip(horizons, shades("Greens", len(horizons)))):
        table, last = tables[T2], i == len(horizons) - 1
        ext, same = _row(table, option), _row(table, SAME_LR)
        same_lr = same["lr"] * shape(same["config"])
        same_curve = curve(same_lr)
        numbers["same_lr"][T2] = {"bound": same["bound"], "curve": same_curve}
        numbers["linear_tuned_final"][T2] = _row(table, LINEAR)["bound"]
        step = np.arange(1, T2 + 1)
        ax_lr.plot(step, same_lr, color="0.6", lw=1, zorder=1, label="same LR, 20% cooldown at T2" if last else None)
        ax_b.plot(same_curve["step"], same_curve["bound"], color="0.6", lw=1, zorder=1,
                  label="same LR, 20% cooldown at T2" if last else None)
        ax_b.hlines(numbers["linear_tuned_final"][T2], previous, T2, colors=color, linestyles="--", lw=1,
                    label="final bound of linear decay tuned at T2" if last else None)
        previous = T2
        if ext["config"] is None:       # no parameter in the solver's range keeps gamma* (e.g. c > 1 needed)
            numbers["extended"][T2] = {"parameter": None, "note": ext["note"]}
            continue
        ext_lr = ext["lr"] * shape(ext["config"])
        ext_curve = curve(ext_lr)
        param = ext["config"]["rho"] if name == "fig8" else ext["config"]["cooldown_fraction"]
        numbers["extended"][T2] = {"parameter": param, "bound": ext["bound"], "lr": ext_lr, "curve": ext_curve,
                                   "note": ext["note"]}
        words = "two-stage WSD (second plateau $\\rho$)" if name == "fig8" else "WSD, adapted cooldown fraction"
        first = len([v for v in numbers["extended"].values() if "lr" in v]) == 1
        label = f"{words}, T2 = {horizons[0]:,}..{horizons[-1]:,} (dark = longer)" if first else None
        ax_lr.plot(step, ext_lr, color=color, lw=1.5, label=label)
        ax_b.plot(ext_curve["step"], ext_curve["bound"], color=color, lw=1.5, label=label)
    for ax in (ax_lr, ax_b):
        ax.axvline(T1, color="0.8", ls=":", lw=1)
        thousands(ax)
    ax_lr.set_ylim(0, 1.25 * gamma_1)
    finish(ax_lr, "step t", "LR $\\gamma\\eta_t$ (theory units)",
           f"{name[:3].capitalize()}. {name[3:]}a: extensions of WSD-0.2 from T1 = {T1:,}", fontsize=6,
           loc="lower left")
    final = min(numbers["linear_tuned_final"].values())
    ax_b.set_ylim(0.8 * final, 4.8 * final)
    finish(ax_b, "step t", "bound $\\Omega_t$", f"{name[:3].capitalize()}. {name[3:]}b: bound, extended vs same LR",
           fontsize=7, loc="upper right")
    ratio = [T2 / T1 for T2 in horizons]
    params = [numbers["extended"][T2]["parameter"] for T2 in horizons]
    start = 1.0 if name == "fig8" else BASE_FRACTION         # the run itself: no drop, its own cooldown
    ax_p.plot([1.0] + ratio, [start] + [np.nan if p is None else p for p in params],
              "o-", color="tab:green")
    missing = [r for r, p in zip(ratio, params) if p is None]
    if missing:
        ax_p.plot(missing, [1.0] * len(missing), "x", color="tab:red", ms=8,
                  label="no value $\\leq$ 1 keeps $\\gamma^\\star$ (none drawn)")
    ylabel = "second-plateau factor $\\rho$" if name == "fig8" else "cooldown fraction c of T2"
    finish(ax_p, "extension factor T2 / T1", ylabel,
           f"{name[:3].capitalize()}. {name[3:]}c: {ylabel.split(' $')[0]} that keeps $\\gamma^\\star$ = LR in use")
    return fig, numbers


def fig8(ctx):
    return _figure(ctx, "fig8")


def fig9(ctx):
    return _figure(ctx, "fig9")


FIGURES = [
    FigureSpec("fig8", "extending WSD-0.2 from T1 = 4000 to 1.5..4 x T1 at the same LR with a two-stage WSD: rho "
                       "and bound curves vs keeping the schedule", fig8),
    FigureSpec("fig9", "extending WSD-0.2 from T1 = 4000 to 1.5..4 x T1 at the same LR with an adapted cooldown "
                       "fraction: c and bound curves", fig9),
]
