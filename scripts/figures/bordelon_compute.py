"""Bordelon & Mori Fig. 4 ("bm4"): compute-optimal scaling of the power-law random-feature model.

    python -m scripts.reproduce --figure bm4 [--small]

The residual loss of a model of N features trained for T steps is R(N, T) = L_T + sum_{k>N} k^-a:
the excess loss at the end of training (analysis.random_features.excess_loss leaves out sigma^2 and
the unlearnable tail) plus that tail, the Hurwitz zeta zeta(a, N + 1); R is the paper's L_C - sigma^2.
Compute is C = N T. Each per-N curve is R(N, C / N) against C; the compute-optimal frontier takes,
for each C, the best N on the grid, so it is the lower envelope of the per-N curves. Every (N, T)
uses the optimal schedule of that horizon (optimal_schedule) or, as a cheaper check, the best
constant LR (best_constant). Phases (the caption of the paper's Fig. 4): easy a = 2, b = 1.5; hard
a = 1.5, b = 2; sigma = 0.5, batch m = 5, eta_max = 1 (THEORY.md section 6).

Derived exponents. Write the residual as the sum of two power laws,
    R(N, T) ~ A T^-z + B N^-(a-1),
the horizon law of the schedule when N does not limit it (z = min((a-1)/a, (a-1)/b) for the optimal
schedule, z = (a-1)/(a+b-1) for the best constant LR) plus the tail, sum_{k>N} k^-a ~ N^-(a-1)/(a-1).
(Annealed to the end, the N learned modes add a variance ~ sigma^2 N / T: at N* ~ T^(1/a) it is of
the order of the easy horizon term, changing only the prefactor, and in the hard phase it is smaller.)
At fixed C put T = C / N; then dR/dlog N = z A T^-z - (a-1) B N^-(a-1) = 0, so both terms are of the
same order at the optimum: N* ~ T^(z/(a-1)), C = N* T ~ T^(1 + z/(a-1)), and
    R* ~ T^-z ~ C^-chi,   chi = z (a-1) / (a - 1 + z).
  optimal, easy (b < a): z = (a-1)/a, chi = (a-1)/(a+1) = 1/3 at a = 2; N* ~ T^(1/a).
  optimal, hard (b > a): z = (a-1)/b, chi = (a-1)/(b+1) = 1/6 at a = 1.5, b = 2; N* ~ T^(1/b).
  best constant LR: z = (a-1)/(a+b-1), chi = (a-1)/(a+b) = 2/7 (easy), 1/7 (hard).
tests/test_bordelon_compute.py checks chi against a direct numerical minimization of this model
and the fitted frontier slopes against chi.

The grid. N runs over {2^i, 3 2^i} and C over {3 2^i, 9 2^i} (steps of 4/3 and 3/2 in turn), so that
T = C / N is an exact integer for every T >= 8 that is used. The table is filled column by column
in C, from T = T_min on; work stays near the frontier: a row below the column's best N is dropped
once it lies `keep` times above the column minimum (a smaller model that has flattened onto its
tail does not come back: tests/test_bordelon_compute.py checks this against the full table).
A frontier point is `interior` when its N has a neighbour on the grid above it that was evaluated
in the same column and is not the smallest N (the minimum is bracketed); only those are fitted.

Measured (2-core machine shared with other jobs, load 5-11, nice 10; fits over the interior frontier
points with C >= 96; "last decade" = the local slope over the top decade of C):
  full  (N = 2..768, C = 24..786432; 324 s): optimal easy 0.343 (last decade 0.336; derived 1/3),
        hard 0.170 (0.172; 1/6); constant easy 0.293 (0.287; 2/7 = 0.286), hard 0.152 (0.151; 1/7 = 0.143).
  small (N = 2..96, C up to 6144 optimal / 12288 constant; ~15 s): optimal 0.349, 0.169; constant 0.299, 0.152.
  The best N grows as C^0.37 (easy) and C^0.35 (hard) against the derived 1/3 (C^0.32 vs 1/(a+b) = 0.286
  for the constant LR): N* moves on a coarse grid, so only the loss exponent is tested tightly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.special import zeta as hurwitz_zeta
from scipy.stats import linregress

from analysis.random_features import PowerLawModel, best_constant, optimal_schedules
from scripts.figures.common import FigureSpec
from scripts.figures.theory_common import colorbar, figure, finish, value_shades

PHASES = {"easy": {"a": 2.0, "b": 1.5}, "hard": {"a": 1.5, "b": 2.0}}
SIGMA, BATCH, ETA_MAX = 0.5, 5, 1.0
SCHEDULES = ("optimal", "constant")


# ----- the derived exponents -----
def horizon_exponent(a: float, b: float, schedule: str) -> float:
    """z of L_T ~ T^-z when N does not limit (THEORY.md section 6)."""
    _check_schedule(schedule)
    return min((a - 1) / a, (a - 1) / b) if schedule == "optimal" else (a - 1) / (a + b - 1)


def compute_exponent(a: float, b: float, schedule: str) -> float:
    """chi of the frontier R* ~ C^-chi: chi = z (a-1) / (a-1+z) (derived in the module docstring)."""
    z = horizon_exponent(a, b, schedule)
    return z * (a - 1) / (a - 1 + z)


def tail(N: int, a: float) -> float:
    """The unlearnable part sum_{k>N} k^-a = zeta(a, N + 1) (Hurwitz zeta)."""
    return float(hurwitz_zeta(a, N + 1))


def _check_schedule(schedule):
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}: use one of {SCHEDULES}")


# ----- the grid -----
def lattice(lo: float, hi: float, factor: int = 1) -> list[int]:
    """factor * {2^i, 3 2^i} within [lo, hi], ascending (N: factor 1; C: factor 3)."""
    if not 1 <= lo <= hi:
        raise ValueError(f"lattice bounds lo={lo}, hi={hi}: need 1 <= lo <= hi")
    top = int(np.ceil(np.log2(hi))) + 1
    values = {factor * m * 2**i for i in range(top) for m in (1, 3)}
    return sorted(v for v in values if lo <= v <= hi)


@dataclass(frozen=True)
class Grid:
    """Where the (N, C) table is evaluated; see the module docstring for keep."""
    N: tuple
    C: tuple
    T_min: int = 8
    keep: float = 1.25
    tol: float = 1e-3               # optimal_schedule's stopping tolerance (L_T settles well before 1e-3)

    def __post_init__(self):
        if self.T_min < 8:
            raise ValueError(f"T_min={self.T_min}: need >= 8 so that C / N is an integer on the lattice")
        if not self.keep > 1:
            raise ValueError(f"keep={self.keep}: must exceed 1 (rows are dropped `keep` times above the frontier)")
        if len(self.N) < 3 or len(self.C) < 3:
            raise ValueError("a grid needs at least 3 model sizes N and 3 compute values C")


def final_excess(model: PowerLawModel, T: int, schedule: str, tol: float = 1e-3, init=None):
    """(L_T, etas): the excess loss at the end (no tail, no sigma^2) of the optimal schedule, warm-started
    from `init` (a shorter horizon's optimum) when given, or of the best constant LR."""
    _check_schedule(schedule)
    if schedule == "optimal":
        etas, loss = optimal_schedules(model, [T], init=init, tol=tol)[0]
        return loss, etas
    eta, loss = best_constant(model, T)
    return loss, np.full(T, eta)


def scan(a: float, b: float, schedule: str, grid: Grid) -> dict:
    """The per-N curves and the frontier: {"curves": {N: {C, T, excess, residual, tail}}, "frontier": {...}}."""
    curves = {N: {"C": [], "T": [], "excess": [], "residual": [], "tail": tail(N, a)} for N in grid.N}
    front = {"C": [], "N": [], "T": [], "residual": [], "interior": []}
    dropped, warm = set(), {}
    for C in grid.C:
        column = {}
        for N in grid.N:
            T = C // N
            if T < grid.T_min or N in dropped:
                continue
            assert T * N == C, (N, C)      # the lattice keeps C / N integral for T >= 8
            model = PowerLawModel(N=int(N), a=a, b=b, batch=BATCH, sigma=SIGMA, eta_max=ETA_MAX)
            excess, warm[N] = final_excess(model, int(T), schedule, grid.tol, warm.get(N))
            column[N] = excess + curves[N]["tail"]
            for key, value in zip(("C", "T", "excess", "residual"), (C, T, excess, column[N])):
                curves[N][key].append(value)
        if not column:
            continue
        best_N = min(column, key=column.get)
        above = [N for N in column if N > best_N]
        below_known = best_N != grid.N[0]
        for key, value in zip(("C", "N", "T", "residual", "interior"),
                              (C, best_N, C // best_N, column[best_N], bool(above) and below_known)):
            front[key].append(value)
        dropped |= {N for N in column if N < best_N and column[N] > grid.keep * column[best_N]}
    return {"curves": {N: c for N, c in curves.items() if c["C"]}, "frontier": front}


def fit_frontier(front: dict, C_range=None) -> dict:
    """Least squares of log R on log C over the interior frontier points in C_range (default: all)."""
    C, R = np.asarray(front["C"], dtype=float), np.asarray(front["residual"], dtype=float)
    use = np.asarray(front["interior"], dtype=bool)
    if C_range is not None:
        use &= (C >= C_range[0]) & (C <= C_range[1])
    if use.sum() < 3:
        raise ValueError(f"only {int(use.sum())} interior frontier points in C_range={C_range}: widen the C grid "
                         "or the N grid (the best N must have evaluated neighbours on both sides)")
    r = linregress(np.log(C[use]), np.log(R[use]))
    return {"fit": -r.slope, "stderr": r.stderr, "prefactor": float(np.exp(r.intercept)),
            "C_range": [float(C[use].min()), float(C[use].max())], "points": int(use.sum())}


def optimal_N_exponent(a: float, b: float, schedule: str) -> float:
    """nu of the frontier's model size N* ~ C^nu: N* ~ T^(z/(a-1)) and C ~ T^(1 + z/(a-1)) give
    nu = z / (a - 1 + z) (1/3 for the optimal schedule in both phases here, 1/(a+b) for the constant LR)."""
    z = horizon_exponent(a, b, schedule)
    return z / (a - 1 + z)


def fit_optimal_N(front: dict, a: float, b: float, schedule: str, C_range=None) -> dict:
    """Least squares of log N* on log C over the interior frontier points: how the best model grows.
    N* moves on a grid of steps 4/3 and 3/2, so this is a coarse check (the loss fit is the sharp one)."""
    C, N = np.asarray(front["C"], dtype=float), np.asarray(front["N"], dtype=float)
    use = np.asarray(front["interior"], dtype=bool)
    if C_range is not None:
        use &= (C >= C_range[0]) & (C <= C_range[1])
    r = linregress(np.log(C[use]), np.log(N[use]))
    return {"fit": r.slope, "stderr": r.stderr, "target": optimal_N_exponent(a, b, schedule),
            "C_range": [float(C[use].min()), float(C[use].max())]}


# ----- the figure -----
def settings(small: bool) -> dict:
    """{phase: {schedule: Grid}} (fit_from: the smallest C of the fits)."""
    out = {}
    for phase in PHASES:
        if small:
            N, C_hi = lattice(2, 96), {"optimal": 6144, "constant": 12288}
        else:
            N, C_hi = lattice(2, 768), {"optimal": 786432, "constant": 786432}
        out[phase] = {s: Grid(N=tuple(N), C=tuple(lattice(24, C_hi[s], 3))) for s in SCHEDULES}
    return out


FIT_FROM = 96       # C below this: T and N too small for the asymptotic laws (a handful of modes)


def make(ctx):
    fig, axes = figure(2, width=5.2, height=4.2)
    numbers = {"parameters": {"sigma": SIGMA, "batch": BATCH, "eta_max": ETA_MAX, "phases": PHASES,
                              "fit_from_C": FIT_FROM},
               "phases": {}, "exponents": {}, "seconds": {}}
    for ax, (phase, grids) in zip(axes, settings(ctx.small).items()):
        a, b = PHASES[phase]["a"], PHASES[phase]["b"]
        numbers["phases"][phase], numbers["exponents"][phase] = {}, {}
        for schedule, grid in grids.items():
            tic = time.perf_counter()
            data = scan(a, b, schedule, grid)
            numbers["seconds"][f"{phase}/{schedule}"] = time.perf_counter() - tic
            fit = fit_frontier(data["frontier"], (FIT_FROM, np.inf))
            # the local slope at the large-C end: the last decade of fitted points (closer to the asymptote)
            fit["last_decade"] = fit_frontier(data["frontier"], (fit["C_range"][1] / 10, np.inf))["fit"]
            key = "frontier" if schedule == "optimal" else "frontier_constant"
            numbers["exponents"][phase][key] = {**fit, "target": compute_exponent(a, b, schedule)}
            numbers["exponents"][phase]["N_star" if schedule == "optimal" else "N_star_constant"] = fit_optimal_N(
                data["frontier"], a, b, schedule, (FIT_FROM, np.inf))
            numbers["phases"][phase][schedule] = {"grid": {"N": grid.N, "C": grid.C, "T_min": grid.T_min,
                                                           "keep": grid.keep, "tol": grid.tol},
                                                  **data}
            _draw(ax, data, fit, compute_exponent(a, b, schedule), schedule)
        finish(ax, "compute C = N T", "residual loss $L_T + \\sum_{k>N} k^{-a}$",
               f"{phase} phase: a = {a:g}, b = {b:g}", loc="lower left")
        Ns = sorted(numbers["phases"][phase]["optimal"]["curves"])
        colorbar(fig, ax, "viridis", np.log2(Ns), "$\\log_2 N$ (per-N curves, optimal schedule)")
    fig.suptitle("Bordelon & Mori Fig. 4: compute-optimal scaling (sigma = 0.5, m = 5, eta_max = 1)", fontsize=11)
    return fig, numbers


def _draw(ax, data, fit, target, schedule):
    front = data["frontier"]
    C, R = np.asarray(front["C"], dtype=float), np.asarray(front["residual"], dtype=float)
    if schedule == "optimal":
        Ns = sorted(data["curves"])
        for N, color in zip(Ns, value_shades("viridis", np.log2(Ns))):
            ax.plot(data["curves"][N]["C"], data["curves"][N]["residual"], color=color, lw=1, alpha=0.8)
        style = {"color": "k", "marker": "o", "ms": 3, "lw": 2}
    else:
        style = {"color": "0.5", "marker": "s", "ms": 3, "lw": 1.5}
    ax.plot(C, R, **style, label=f"frontier, {schedule} {'schedule' if schedule == 'optimal' else 'LR'}")
    # the derived law through the middle of the fitted range, shifted up x1.25 to stay visible
    grid = np.geomspace(*fit["C_range"], 50)
    mid = np.sqrt(np.prod(fit["C_range"]))
    anchor = 1.25 * fit["prefactor"] * mid ** -fit["fit"]
    ax.plot(grid, anchor * (grid / mid) ** -target, "--", color=style["color"],
            label=f"derived $C^{{-{target:.3f}}}$ (x1.25); fit {fit['fit']:.3f} $\\pm$ {fit['stderr']:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")


FIGURES = [FigureSpec(
    "bm4", "Bordelon-Mori Fig. 4: residual loss (final excess + tail zeta(a, N+1)) vs compute C = N T per model size "
    "N, the compute-optimal frontier's fitted exponent vs the derived 1/3 (easy), 1/6 (hard); best constant LR beside",
    make)]
