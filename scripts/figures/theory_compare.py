"""Theory figures comparing schedules: a convex non-smooth toy problem trained with subgradient descent
(Fig. 17), six schedules in the bound (Fig. 18) and cosine cycles longer than the run (Fig. 19).

    python -m scripts.reproduce --figure fig17 --figure fig18 --figure fig19 [--small]
"""
from __future__ import annotations

import numpy as np

from analysis.bound import bound_curve
from scripts.figures.common import FigureSpec
from scripts.figures.theory_common import (GAMMA_GRID, colorbar, constant, cosine, curve, cyclic_cosine, figure,
                                           finish, inverse_sqrt, linear, lr_sweep, schedule_color, shape,
                                           tuned, value_shades, wsd)


# ----- Fig. 17: max-abs regression min_x max_i |a_i^T x - b_i| -----
def max_abs_problem(n=20, d=2, norm=5.0, seed=0):
    """A in U[-1, 1]^(n x d), x* a random direction of length `norm`, b = A x* (so f* = 0 at x*)."""
    rng = np.random.default_rng(seed)
    A = rng.uniform(-1.0, 1.0, size=(n, d))
    x_star = rng.standard_normal(d)
    x_star *= norm / np.linalg.norm(x_star)
    return A, A @ x_star, x_star


def subgradient_descent(A, b, lr, x0):
    """x_{t+1} = x_t - lr_t g_t with g_t = sign(r_i) a_i at the largest |r_i| (a subgradient of
    max_i |a_i^T x - b_i|). Returns f(x_t) and ||g_t|| for t = 1..T (x_1 = x0; lr_T is not used)."""
    x = np.array(x0, dtype=float)
    f, g_norm = np.empty(lr.size), np.empty(lr.size)
    for t, step in enumerate(lr):
        r = A @ x - b
        i = int(np.argmax(np.abs(r)))
        g = np.sign(r[i]) * A[i]
        f[t], g_norm[t] = abs(r[i]), np.linalg.norm(g)
        x = x - step * g
    return f, g_norm


def fig17(ctx):
    T, lr = (200 if ctx.small else 400), 0.02
    A, b, x_star = max_abs_problem()
    runs = {"WSD, 20% linear cooldown, peak LR 0.02": lr * shape(wsd(T, 0.2)),
            "constant LR 0.02": lr * shape(constant(T)),
            "cosine to 0, peak LR 0.04": 2 * lr * shape(cosine(T))}
    fig, (ax_f, ax_b) = figure(2, width=5.0)
    step = np.arange(1, T + 1)
    x0 = np.zeros(2)
    D = float(np.linalg.norm(x0 - x_star))
    numbers = {"T": T, "n": 20, "d": 2, "seed": 0, "D": D, "step": step, "runs": {}}
    for i, (name, eta) in enumerate(runs.items()):
        f, g_norm = subgradient_descent(A, b, eta, x0)
        # The bound with the observed subgradient norms as G_t and the true D: it must lie above f(x_t) - f*.
        omega = bound_curve(eta, G=g_norm, D=D)
        numbers["runs"][name] = {"lr": eta, "suboptimality": f, "grad_norm": g_norm, "bound": omega}
        # WSD equals the constant LR until its cooldown: the constant is drawn wide underneath.
        ax_f.plot(step, f, color=schedule_color(i), lw=2.5 if name.startswith("constant") else 1, label=name,
                  zorder=3 - i)
        ax_b.plot(step, f, color=schedule_color(i), lw=1, label=f"{name}: $f(x_t) - f^\\star$")
        ax_b.plot(step, omega, color=schedule_color(i), lw=2, ls="--", label=f"{name}: bound $\\Omega_t$")
    ax_f.set_ylim(-0.01, 0.1)
    finish(ax_f, "step t", "suboptimality $f(x_t) - f^\\star$",
           "Fig. 17a: max-abs regression (n = 20, d = 2), subgradient descent")
    ax_b.set_yscale("log")
    finish(ax_b, "step t", "$f(x_t) - f^\\star$ and bound $\\Omega_t$ (log scale)",
           "Fig. 17b: the bound with observed $\\|g_t\\|$ and D = $\\|x_1 - x^\\star\\|$", fontsize=6, ncol=1)
    return fig, numbers


# ----- Fig. 18: six schedules at T = 400 -----
def six_schedules(T):
    return {"WSD, 20% linear cooldown": wsd(T, 0.2), "linear decay to 0": linear(T),
            "1/sqrt(t)": inverse_sqrt(T), "constant": constant(T), "cosine to 0": cosine(T),
            "1-sqrt decay to 0": wsd(T, 1.0, "1-sqrt")}


def fig18(ctx):
    T = 400
    fig, (ax_s, ax_lr, ax_b) = figure(3, width=4.5)
    numbers = {"T": T, "gamma": GAMMA_GRID, "step": np.arange(1, T + 1), "schedules": {}}
    for i, (name, config) in enumerate(six_schedules(T).items()):
        eta = shape(config)
        best = tuned(eta)
        lr = best["gamma_star"] * eta
        sweep, c = lr_sweep(eta), curve(lr)
        numbers["schedules"][name] = {**best, "lr": lr, "curve": c, "final_bound_vs_gamma": sweep["bound"]}
        color = schedule_color(i)
        ax_s.plot(sweep["gamma"], sweep["bound"], color=color, alpha=0.8, label=name)
        ax_s.plot([best["gamma_star"]], [best["omega_star"]], "o", color=color, mec="k", ms=5)
        ax_lr.plot(numbers["step"], lr, color=color, label=name)
        ax_b.plot(c["step"], c["bound"], color=color, label=name)
    ax_s.set_xscale("log")
    ax_s.set_yscale("log")
    ax_s.set_ylim(0.09, 0.9)
    finish(ax_s, "peak LR $\\gamma$", "final bound $\\Omega_T$", f"Fig. 18a: final bound vs peak LR, T = {T} "
           "(dots: $\\gamma^\\star$)", loc="upper right")
    ax_lr.set_ylim(-0.005, 0.09)
    finish(ax_lr, "step t", "tuned LR $\\gamma^\\star\\eta_t$", "Fig. 18b: schedules at their optimal peak LR",
           legend=False)
    ax_b.set_ylim(0.075, 0.32)
    finish(ax_b, "step t", "bound $\\Omega_t$ at $\\gamma^\\star$", "Fig. 18c: the bound along the run", legend=False)
    return fig, numbers


# ----- Fig. 19: cosine whose cycle is longer than the run -----
def fig19(ctx):
    T, cycles = 400, [1.0, 1.5, 2.0, 4.0, 5.0]
    fig, (ax_s, ax_lr, ax_b) = figure(3, width=4.5)
    step = np.arange(1, T + 1)
    etas = {c: shape(cyclic_cosine(T, c)) for c in cycles}
    gamma_1 = tuned(etas[1.0])["gamma_star"]        # the paper draws every cycle at the LR tuned for cycle 1
    numbers = {"T": T, "final_fraction": 0.1, "cycle": cycles, "gamma": GAMMA_GRID, "step": step,
               "gamma_cycle_1": gamma_1, "cycles": {}}
    for c, color in zip(cycles, value_shades("viridis", cycles)):
        eta = etas[c]
        best, sweep = tuned(eta), lr_sweep(eta)
        cv = curve(gamma_1 * eta)
        numbers["cycles"][c] = {**best, "lr": gamma_1 * eta, "curve": cv, "final_bound_vs_gamma": sweep["bound"]}
        ax_s.plot(sweep["gamma"], sweep["bound"], color=color, alpha=0.8)
        ax_s.plot([best["gamma_star"]], [best["omega_star"]], "o", color=color, mec="k", ms=5)
        ax_lr.plot(step, gamma_1 * eta, color=color)
        ax_b.plot(cv["step"], cv["bound"], color=color)
    colorbar(fig, ax_b, "viridis", cycles, "cosine half-period / run length")
    ax_s.set_xscale("log")
    ax_s.set_yscale("log")
    ax_s.set_ylim(0.09, 0.9)
    finish(ax_s, "peak LR $\\gamma$", "final bound $\\Omega_T$",
           f"Fig. 19a: cosine to 0.1 x peak, T = {T}")
    finish(ax_lr, "step t", "LR $\\gamma\\eta_t$ ($\\gamma$ tuned for cycle 1)",
           "Fig. 19b: cycle lengths 1, 1.5, 2, 4, 5 x T")
    ax_b.set_ylim(0.08, 0.35)
    finish(ax_b, "step t", "bound $\\Omega_t$", "Fig. 19c: the bound along the run")
    return fig, numbers


FIGURES = [
    FigureSpec("fig17", "max-abs regression (d = 2, n = 20) by subgradient descent, T = 400: WSD-0.2 and constant "
                        "at LR 0.02, cosine at 0.04; suboptimality vs the bound", fig17),
    FigureSpec("fig18", "six schedules at T = 400 (WSD-0.2, linear, 1/sqrt, constant, cosine, 1-sqrt): LR sweep, "
                        "tuned schedules, bound curves", fig18),
    FigureSpec("fig19", "cosine with final LR 0.1 and cycle length 1, 1.5, 2, 4, 5 x T (T = 400)", fig19),
]
