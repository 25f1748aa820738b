"""Fig. "bm_shapes": the optimal schedule shapes of the convex bound and of the Bordelon-Mori random-feature
model side by side, against the fraction of the run t/T, with linear decay and WSD for reference.

    python -m scripts.reproduce --figure bm_shapes [--small]

(a) the normalized optima (peak 1): the refined bound's (analysis.bound_schedule, D = G = 1) and the
random-feature model's in the easy (a = 3.5, b = 2) and hard (a = 3.5, b = 5) phases (batch 5, label
noise sigma = 0.5, eta_max = 1; analysis.random_features.optimal_schedule), linear decay and WSD with a
20% linear cooldown. (b) each curve minus linear decay 1 - t/T. (c) every shape in every problem: its
bound Omega_T at the optimal peak (analysis.bound.optimal_lr) and its random-feature excess loss L(T)
at the best peak c <= eta_max (1-D search), each relative to that problem's own optimum; the shapes are
resampled to each problem's horizon by interpolation in t/T (analysis.random_features_cli.resample).
Full settings: bound T = 400, random features N = 1000, T = 3000 (about 30 s on 2 cores); small: bound
T = 200, N = 100, T = 120 (about 1 s).
Tested by tests/test_bound_schedule.py (the JSON curves against the modules' own outputs).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from analysis.bound import optimal_lr
from analysis.bound_schedule import linear_gap, optimal_bound_schedule
from analysis.random_features import PowerLawModel, excess_loss, optimal_schedule
from analysis.random_features_cli import resample
from scripts.figures.common import FigureSpec
from scripts.figures.theory_common import figure, finish, linear, schedule_color, shape, wsd

A, SIGMA, BATCH, ETA_MAX = 3.5, 0.5, 5, 1.0          # the paper's Fig. 2-3 model (sigma = 0.5 as in Fig. 3)
PHASES = {"easy": 2.0, "hard": 5.0}                  # b per phase
WSD_COOLDOWN = 0.2
CURVES = {                                           # name -> (legend, colour index, line style)
    "bound": ("convex bound's optimum (refined, D = G = 1)", 0, "-"),
    "rf_easy": ("random features, easy (a = 3.5, b = 2)", 1, "-"),
    "rf_hard": ("random features, hard (a = 3.5, b = 5)", 3, "-"),
    "linear": ("linear decay", "0.25", "--"),
    "wsd": (f"WSD, {WSD_COOLDOWN:.0%} linear cooldown", "0.6", ":"),
}                                                    # references: a grey level instead of a tab10 index


def settings(small: bool) -> dict:
    """Horizons, feature count and the control method's tolerance of the full or small figure."""
    if small:
        return {"bound_T": 200, "N": 100, "rf_T": 120, "tol": 1e-5}
    return {"bound_T": 400, "N": 1000, "rf_T": 3000, "tol": 1e-9}


def rf_model(phase: str, N: int) -> PowerLawModel:
    return PowerLawModel(N=N, a=A, b=PHASES[phase], batch=BATCH, sigma=SIGMA, eta_max=ETA_MAX)


def optimal_shapes(s: dict) -> dict:
    """{name: {"t_over_T", "multiplier"}} of every curve of panel (a): peak-1 multipliers of steps
    t = 0..T-1 at t/T, with the raw optimum (`lr` or `eta`) and its objective beside the optima."""
    best = optimal_bound_schedule(s["bound_T"])
    T_b = s["bound_T"]
    out = {"bound": {"t_over_T": np.arange(T_b) / T_b, "multiplier": best.shape, "lr": best.lr,
                     "omega": best.omega}}
    for phase in PHASES:
        etas, loss = optimal_schedule(rf_model(phase, s["N"]), s["rf_T"], tol=s["tol"])
        out[f"rf_{phase}"] = {"t_over_T": np.arange(etas.size) / etas.size, "multiplier": etas / etas.max(),
                              "eta": etas, "loss": loss}
    for name, config in (("linear", linear(T_b)), ("wsd", wsd(T_b, WSD_COOLDOWN))):
        out[name] = {"t_over_T": np.arange(T_b) / T_b, "multiplier": shape(config)}
    return out


def tuned_rf_loss(model: PowerLawModel, multipliers: np.ndarray) -> tuple[float, float]:
    """(c*, L(T)) of the schedule c * multipliers (peak 1) at the best peak c in (0, eta_max]:
    bounded Brent search on log c, as analysis.random_features.best_constant does for a constant."""
    loss = lambda log_c: excess_loss(model, np.exp(log_c) * multipliers)[-1]
    top = np.log(model.eta_max)
    result = minimize_scalar(loss, bounds=(top - 12.0, top), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x)), float(result.fun)


def cross_table(s: dict, curves: dict) -> dict:
    """{shape: {problem: value relative to the problem's optimum}} with the tuned values themselves:
    the bound at T = bound_T (closed-form optimal peak) and L(T) of each phase at T = rf_T."""
    table = {}
    for name, curve in curves.items():
        row = {}
        gamma, omega = optimal_lr(resample(curve["multiplier"], s["bound_T"]))
        row["bound"] = {"peak": gamma, "value": omega, "ratio": omega / curves["bound"]["omega"]}
        for phase in PHASES:
            peak, loss = tuned_rf_loss(rf_model(phase, s["N"]), resample(curve["multiplier"], s["rf_T"]))
            row[f"rf_{phase}"] = {"peak": peak, "value": loss, "ratio": loss / curves[f"rf_{phase}"]["loss"]}
        table[name] = row
    return table


def _style(name):
    words, color, ls = CURVES[name]
    reference = isinstance(color, str)
    return {"label": words, "color": color if reference else schedule_color(color), "ls": ls,
            "lw": 1.2 if reference else 1.8}


def bm_shapes(ctx):
    s = settings(ctx.small)
    curves = optimal_shapes(s)
    table = cross_table(s, curves)
    fig, (ax_s, ax_d, ax_x) = figure(3, width=4.8, height=3.9)
    for name, curve in curves.items():
        ax_s.plot(curve["t_over_T"], curve["multiplier"], **_style(name))
        ax_d.plot(curve["t_over_T"], curve["multiplier"] - (1.0 - curve["t_over_T"]), **_style(name))
    ax_s.set_ylim(0, 1.05)
    finish(ax_s, "fraction of the run t/T", "multiplier of the peak LR",
           f"(a) optimal shapes (bound: T = {s['bound_T']}; RF: N = {s['N']}, T = {s['rf_T']})", legend=False)
    fig.legend(*ax_s.get_legend_handles_labels(), loc="outside lower center", ncol=len(curves), fontsize=8)
    finish(ax_d, "fraction of the run t/T", "multiplier minus (1 - t/T)", "(b) difference to linear decay",
           legend=False)
    problems = [("bound", "bound $\\Omega_T$"), ("rf_easy", "RF easy L(T)"), ("rf_hard", "RF hard L(T)")]
    width = 0.8 / len(curves)
    for i, name in enumerate(curves):
        excess = [100.0 * (table[name][p]["ratio"] - 1.0) for p, _ in problems]
        bars = ax_x.bar(np.arange(len(problems)) + (i - (len(curves) - 1) / 2) * width, excess, width,
                        color=_style(name)["color"])
        # |excess| < 0.05%: an optimum in its own problem, within its solver's tolerance; no "-0.0"
        ax_x.bar_label(bars, [f"{abs(v):.1f}" if abs(v) < 0.05 else f"{v:.1f}" for v in excess], fontsize=6,
                       padding=1)
    ax_x.set_xticks(np.arange(len(problems)), [words for _, words in problems])
    finish(ax_x, "problem (colours as in a)", "% above the problem's optimum",
           "(c) each shape in each problem, its peak tuned", legend=False)
    numbers = {"settings": {**s, "a": A, "b": PHASES, "sigma": SIGMA, "batch": BATCH, "eta_max": ETA_MAX,
                            "wsd_cooldown_fraction": WSD_COOLDOWN},
               "curves": curves,
               "linear_gap": {name: linear_gap(resample(c["multiplier"], s["bound_T"])) for name, c in curves.items()},
               "cross": table}
    return fig, numbers


FIGURES = [
    FigureSpec("bm_shapes", "normalized optimal schedules of the convex bound (T = 400) and of the random-feature "
               "model (easy b = 2, hard b = 5; N = 1000, T = 3000) vs t/T, with linear decay, WSD, and each shape "
               "tuned in each problem", bm_shapes),
]
