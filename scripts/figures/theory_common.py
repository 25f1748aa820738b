"""What the theory figures share: the paper's simulated schedules as project configs, and plot helpers.

    from scripts.figures.theory_common import wsd, cosine, shape, lr_sweep, power_law_fit
    eta = shape(wsd(400, 0.2))          # the paper's WSD-0.2 at horizon T = 400 (peak 1, 400 steps)

The paper's simulation convention (docs/theory.md section 1): D = G = 1, no warmup, a schedule of T + 1
steps evaluated at horizon T, a cooldown over n = floor(c (T + 1)) steps. The project's schedules
(schedules/base.py) reach their final value at step T, just after the last update, which *is* "T + 1
steps evaluated at T": Linear, Cosine and Constant give the paper's arrays as they are; for WSD the
cooldown is given in steps (cooldown_steps = n, not floor(c T)) so that it has the paper's n steps
(tested in tests/test_reproduce_theory.py against arrays built from the paper's definition).
Colours: a qualitative map (tab10) for schedules; a sequential shade of the schedule's colour
for an ordered parameter (horizon T, cooldown fraction, cycle length).
"""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from scipy.optimize import curve_fit

from analysis.advise import shape_of
from analysis.bound import bound, bound_curve, optimal_lr
from schedules.base import fraction_to_steps

# The paper's LR sweep grid for "final bound vs gamma" panels: 2^-8 .. 2^1.
GAMMA_GRID = np.logspace(-8, 1, 60, base=2)
CURVE_POINTS = 600      # horizons at which a long bound curve is evaluated and stored
KIND_WORDS = {"refined": "bound", "standard": "standard bound"}     # analysis.bound's kind= in words


# ----- the paper's schedules as configs (hydra.utils.instantiate builds them) -----
def wsd(T: int, c: float, kind: str = "linear") -> dict:
    """WSD with a cooldown of n = floor(c (T + 1)) steps (at most T: c = 1 is a decay over the whole run)."""
    n = min(fraction_to_steps(T + 1, c), T)
    return {"_target_": "schedules.WSD", "total_steps": T, "cooldown_fraction": None, "cooldown_steps": n,
            "cooldown_kind": kind}


def cosine(T: int, final: float = 0.0) -> dict:
    return {"_target_": "schedules.Cosine", "total_steps": T, "final_fraction": final}


def cyclic_cosine(T: int, cycle: float, final: float = 0.1) -> dict:
    """The paper's cosine of int(cycle (T + 1)) steps evaluated at T: half-period int(cycle (T + 1)) - 1."""
    return {"_target_": "schedules.CyclicCosine", "total_steps": T, "final_fraction": final,
            "cycle_factor": (int(cycle * (T + 1)) - 1) / T}


def linear(T: int) -> dict:
    return {"_target_": "schedules.Linear", "total_steps": T}


def constant(T: int) -> dict:
    return {"_target_": "schedules.Constant", "total_steps": T}


def inverse_sqrt(T: int) -> dict:
    """eta_t = 1 / sqrt(t), t = 1..T."""
    return {"_target_": "schedules.InverseSqrt", "total_steps": T, "timescale": 1}


def shape(config: dict) -> np.ndarray:
    """The schedule's multipliers of steps 0..T-1 (peak 1), built by hydra.utils.instantiate."""
    return shape_of(config)


def cooldown_words(c: float, kind: str) -> str:
    return f"WSD, {c:.0%} {kind} cooldown"


# ----- numbers every figure plots -----
def tuned(eta: np.ndarray, G=1.0, kind: str = "refined") -> dict:
    """gamma*, Omega* and the tuned schedule gamma* eta of a peak-1 shape (D = 1)."""
    gamma, omega = optimal_lr(eta, G=G, kind=kind)
    return {"gamma_star": gamma, "omega_star": omega}


def curve(lr: np.ndarray, G=1.0, kind: str = "refined", points: int = CURVE_POINTS) -> dict:
    """Omega_t of the step sizes lr at up to `points` horizons t (all of them for short schedules)."""
    t = np.unique(np.linspace(1, lr.size, min(points, lr.size)).astype(np.int64))
    G_t = G if np.ndim(G) == 0 else np.asarray(G)
    return {"step": t, "bound": bound_curve(lr, G=G_t, kind=kind, horizons=t)}


def lr_sweep(eta: np.ndarray, G=1.0, kind: str = "refined", grid=GAMMA_GRID) -> dict:
    """Final bound Omega_T(gamma eta) on the gamma grid."""
    return {"gamma": np.asarray(grid), "bound": np.array([bound(g * eta, G=G, kind=kind) for g in grid])}


def power_law_fit(x, y) -> dict:
    """Least-squares fit y = A x^B (scipy curve_fit, started from the log-log line)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    B0, logA0 = np.polyfit(np.log(x), np.log(y), 1)
    (A, B), _ = curve_fit(lambda t, A, B: A * t ** B, x, y, p0=(np.exp(logA0), B0))
    return {"A": float(A), "B": float(B)}


# ----- plotting -----
def figure(ncols: int, nrows: int = 1, width: float = 4.6, height: float = 3.6):
    """A constrained-layout figure and its axes (a flat list)."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, list(axes.ravel())


def schedule_color(i: int):
    """The i-th colour of the qualitative tab10 map (one per schedule)."""
    return colormaps["tab10"](i % 10)


def shades(cmap: str, n: int):
    """n shades of a sequential map, light to dark, for an ordered parameter (e.g. horizons)."""
    return [colormaps[cmap](x) for x in np.linspace(0.45, 0.95, max(n, 1))] if n > 1 else [colormaps[cmap](0.8)]


def value_shades(cmap: str, values, lo: float = 0.45, hi: float = 0.95):
    """Shades of a sequential map placed by value (uneven values), matching `colorbar(..., values)`."""
    v = np.asarray(values, dtype=float)
    u = (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else np.ones_like(v)
    return [colormaps[cmap](lo + (hi - lo) * x) for x in u]


def finish(ax, xlabel: str, ylabel: str, title: str, legend: bool = True, **legend_kw):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(**{"fontsize": 7, **legend_kw})


def colorbar(fig, ax, cmap: str, values, label: str, lo: float = 0.45, hi: float = 0.95):
    """A colourbar for an ordered parameter whose shades come from `shades(cmap, len(values))`."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    sub = LinearSegmentedColormap.from_list(cmap + "_sub", colormaps[cmap](np.linspace(lo, hi, 256)))
    mappable = ScalarMappable(norm=Normalize(min(values), max(values)), cmap=sub)
    fig.colorbar(mappable, ax=ax, label=label)


def thousands(ax):
    """Step ticks as 4k, 8k, ... so that long horizons do not crowd the axis."""
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
