"""Fig. 7 of Schaipp et al.: the bound Omega_t against the exact worst case of the subgradient method.

    python -m scripts.reproduce --figure fig7 [--small]
    from scripts.figures.theory_pep import worst_case, worst_case_curve
    worst_case([0.5])                 # one step of size 0.5 (D = G = 1): 0.5 + 1 / (8 * 0.5) = 0.75
    worst_case_curve(lr, [1, 6, 11])  # the worst case of the schedule truncated at each horizon

The worst case of f(x_t) - f* over every convex G-Lipschitz function f (in any dimension) and every
start with ||x_1 - x*|| <= D, after the subgradient steps x_{k+1} = x_k - eta_k g_k (k < t), is a
performance-estimation problem (PEP; Drori & Teboulle 2014; Taylor, Hendrickx & Glineur 2017), an
SDP solved here with cvxpy's bundled Clarabel (no PEPit, no MOSEK):
  unknowns: the Gram matrix of (x_1 - x*, g_1, ..., g_t) (PSD, size t + 1) and f_1..f_t; f* = 0, g* = 0.
            Every x_i - x* = (x_1 - x*) - sum_{k<i} eta_k g_k is a fixed combination of those vectors.
  subject to: f_i >= f_j + <g_j, x_i - x_j> for every pair i != j of {x*, x_1..x_t}; such points are
            interpolated by the convex max_j (f_j + <g_j, x - x_j>), which is G-Lipschitz when every
            ||g_j||^2 <= G^2;  ||x_1 - x*||^2 <= D^2.
  maximise: f_t (the last iterate).
The time index is the bound's (analysis.bound): Omega_t uses eta_1..eta_t, and x_t has taken the steps
eta_1..eta_{t-1}, so worst_case_curve(lr, [t]) uses lr[:t - 1] where bound_curve(lr, horizons=[t])
uses lr[:t]. (The paper's scripts/lower_bound.py steps with eta_2..eta_t instead, one step later;
the two agree before WSD's cooldown and the paper's curve sits slightly lower within it: with its
indexing this SDP gives its published PEPit + MOSEK values at t = 51, 56, 60 to 1e-8.)
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from matplotlib.ticker import FuncFormatter, MaxNLocator

from analysis.bound import bound_curve, optimal_lr
from scripts.figures.common import FigureSpec
from scripts.figures.theory_common import cooldown_words, figure, finish, schedule_color, shape, wsd

T_FULL, T_SMALL = 60, 20      # the paper's horizon; a shorter one that still has a cooldown (4 steps)
COOLDOWN = 0.2
EVERY_FULL, EVERY_SMALL = 5, 2      # PEP horizons 1, 1 + every, ... and T (the paper's: every 5th)
FEASIBILITY_TOL = 1e-7              # relative: a skipped interpolation constraint counts as violated past it


def _check(steps, D, G):
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or not np.all(np.isfinite(steps)) or np.any(steps < 0):
        raise ValueError(f"steps must be a 1-D array of finite step sizes >= 0 (eta_1..eta_(t-1)), got {steps!r}")
    for name, value in (("D", D), ("G", G)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0 (D = ||x_1 - x*||, G the Lipschitz constant), "
                             f"got {value!r}")
    return steps


def _interpolation(steps: np.ndarray, pairs: np.ndarray):
    """The constraints f_i - f_j - <g_j, x_i - x_j> >= 0 for the rows (j, i) of `pairs` as
    (value matrix on (f*, f_1..f_t), matrix on the row-major flattened Gram matrix), both sparse.

    Points are numbered 0 = x*, 1..t = x_1..x_t; the Gram basis is (x_1 - x*, g_1, ..., g_t), so g_j
    is the basis vector j and <g_j, v> is row j of the Gram matrix applied to v's coefficients."""
    t = steps.size + 1
    n = t + 1
    X = np.zeros((t + 1, n))            # row i: the coefficients of x_i - x* (row 0: x* itself, 0)
    X[1:, 0] = 1.0
    for i in range(1, t):
        X[i + 1] = X[i]
        X[i + 1, i] -= steps[i - 1]
    j, i = pairs[:, 0], pairs[:, 1]
    m = len(pairs)
    rows = np.arange(m)
    on_f = sp.csr_matrix((np.r_[np.ones(m), -np.ones(m)], (np.r_[rows, rows], np.r_[i, j])), shape=(m, t + 1))
    on_gram = sp.csr_matrix(((X[i] - X[j]).ravel(), (np.repeat(rows, n), (j[:, None] * n + np.arange(n)).ravel())),
                            shape=(m, n * n))
    return on_f, on_gram


def _pairs(t: int, later_only: bool) -> np.ndarray:
    """Rows (j, i): the subgradient g_j of point j = 1..t (g* = 0 adds only f_i >= 0) tried at point i."""
    j, i = np.meshgrid(np.arange(1, t + 1), np.arange(t + 1), indexing="ij")
    keep = (j > i) if later_only else (j != i)
    return np.column_stack([j[keep], i[keep]])


def _solve(steps, D, G, pairs):
    """The PEP with the interpolation constraints of `pairs`: (value, Gram matrix, [f*, f_1..f_t])."""
    import cvxpy as cp     # here, not at the top: importing cvxpy takes ~1.5 s that the other figures need not pay

    t = steps.size + 1
    on_f, on_gram = _interpolation(steps, pairs)
    gram = cp.Variable((t + 1, t + 1), PSD=True)
    f = cp.Variable(t + 1)
    constraints = [on_f @ f - on_gram @ cp.vec(gram, order="C") >= 0, f[0] == 0, f[1:] >= 0,
                   cp.diag(gram)[1:] <= G ** 2, gram[0, 0] <= D ** 2]
    problem = cp.Problem(cp.Maximize(f[t]), constraints)
    problem.solve(solver=cp.CLARABEL)
    if problem.status != cp.OPTIMAL:
        raise RuntimeError(f"the PEP at horizon t = {t} ended with solver status {problem.status!r}")
    return problem.value, gram.value, f.value


def worst_case(steps, D: float = 1.0, G: float = 1.0) -> float:
    """max f(x_t) - f* over convex G-Lipschitz f and ||x_1 - x*|| <= D, after the steps eta_1..eta_(t-1).

    In every case tried (WSD, linear decay, constant steps; t <= 60) the worst case only needs the
    constraints of a later point's subgradient at an earlier point (j > i; the others carry zero
    multipliers), so the SDP is solved with those (half the constraints, ~1.5x faster)
    and the rest are checked on its solution: if none is violated the relaxed optimum is feasible,
    hence exact; otherwise the SDP is solved again with every constraint."""
    steps = _check(steps, D, G)
    t = steps.size + 1
    value, gram, f = _solve(steps, D, G, _pairs(t, later_only=True))
    skipped = _pairs(t, later_only=False)
    skipped = skipped[skipped[:, 0] < skipped[:, 1]]
    if len(skipped):
        on_f, on_gram = _interpolation(steps, skipped)
        slack = on_f @ f - on_gram @ gram.ravel()
        if slack.min() < -FEASIBILITY_TOL * D * G:
            value = _solve(steps, D, G, _pairs(t, later_only=False))[0]
    return float(value)


def worst_case_curve(lr, horizons, D: float = 1.0, G: float = 1.0) -> np.ndarray:
    """worst_case of the schedule truncated at each horizon t (1-based): the steps lr[:t - 1]."""
    lr = _check(lr, D, G)
    horizons = np.asarray(horizons)
    if horizons.ndim != 1 or not np.issubdtype(horizons.dtype, np.integer) or np.any(
            (horizons < 1) | (horizons > lr.size + 1)):
        raise ValueError(f"horizons must be a 1-D array of integers in [1, {lr.size + 1}] (len(lr) + 1)")
    return np.array([worst_case(lr[:t - 1], D, G) for t in horizons])


def pep_horizons(T: int, every: int) -> np.ndarray:
    """1, 1 + every, 1 + 2 every, ... and T: where the paper's Fig. 7 solves the PEP."""
    return np.union1d(np.arange(1, T + 1, every), [T])


# ----- Fig. 7 -----
def _plain(y, _=None) -> str:
    """Log-axis tick labels as 0.2, 1, 5 rather than 2 x 10^-1 (the values span two decades at most)."""
    return f"{y:g}"


def _leading_digit(y: float) -> int:
    return int(round(y / 10 ** np.floor(np.log10(y))))


def fig7(ctx):
    T, every = (T_SMALL, EVERY_SMALL) if ctx.small else (T_FULL, EVERY_FULL)
    name = cooldown_words(COOLDOWN, "linear")
    eta = shape(wsd(T, COOLDOWN))
    gamma, omega = optimal_lr(eta)              # the paper tunes the peak LR on the bound at T (D = G = 1)
    lr = gamma * eta
    steps = np.arange(1, T + 1)
    omega_t = bound_curve(lr)
    at = pep_horizons(T, every)
    pep = worst_case_curve(lr, at)
    cooldown_start = int(np.argmax(eta < eta.max())) + 1        # the first step below the peak
    fig, (ax,) = figure(1, width=6.2, height=4.2)
    color = schedule_color(0)
    ax.axvline(cooldown_start, color="0.6", ls=":", lw=1, label=f"cooldown starts (step {cooldown_start})")
    ax.plot(steps, omega_t, color=color, lw=2, label="bound $\\Omega_t$ (upper bound)")
    ax.plot(at, pep, "o", color="0.15", ms=5, label="worst case over convex 1-Lipschitz f (PEP, lower bound)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: _plain(y) if _leading_digit(y) in (2, 3, 5) else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    finish(ax, "step", "f(x_t) - f*",
           f"Fig. 7: {name}, T = {T}, peak LR $\\gamma^*$ = {gamma:.4f} (D = G = 1)", loc="upper right")
    numbers = {"schedule": name, "T": T, "D": 1.0, "G": 1.0, "gamma_star": gamma, "omega_star": omega,
               "cooldown_start": cooldown_start, "lr": lr, "bound": {"step": steps, "bound": omega_t},
               "pep": {"step": at, "worst_case": pep, "solver": "cvxpy + Clarabel"}}
    return fig, numbers


FIGURES = [
    FigureSpec("fig7", "WSD-0.2 at T = 60: the bound Omega_t vs the subgradient method's worst case over convex "
                       "1-Lipschitz functions (a PEP, solved as an SDP)", fig7),
]
