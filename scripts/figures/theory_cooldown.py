"""Theory figures on the cooldown: its length and shape (Figs. 4, 5, 15, 16), time-varying gradient
norms (Fig. 6) and the LR transfer from WSD to linear decay (Fig. 11). D = 1; G = 1 unless stated.

    python -m scripts.reproduce --figure fig4 --figure fig11 [--small]
"""
from __future__ import annotations

import numpy as np

from analysis.advise import build
from analysis.bound import bound
from scripts.figures.common import FigureSpec
from scripts.figures.theory_common import (GAMMA_GRID, KIND_WORDS, colorbar, cosine, curve, figure, finish,
                                           lr_sweep, shades, shape, tuned, value_shades, wsd)

T_COOLDOWN = 400
COOLDOWN_KINDS = ("linear", "1-sqrt")
# Peak LRs at which the paper draws the final bound against the cooldown fraction.
FIXED_GAMMAS = {"linear": [0.02, 0.04, 0.05, 0.07], "1-sqrt": [0.03, 0.05, 0.07, 0.09]}
FRACTION_CMAP = "viridis"
GREYS = {0.0: "0.2", -0.5: "0.45", -1.0: "0.7"}      # G_t = t^alpha, one grey per alpha


def _fractions(T, small):
    """The paper's grid: 10 fractions from one cooldown step (1/T) to the whole run (T/(T+1)); small: 4."""
    return np.linspace(1 / T, T / (T + 1), 4 if small else 10)


def _cooldown_data(kind, small):
    T = T_COOLDOWN
    out = {}
    for cooldown in COOLDOWN_KINDS:
        rows = []
        for c in _fractions(T, small):
            eta = shape(wsd(T, c, cooldown))
            best = tuned(eta, kind=kind)
            lr = best["gamma_star"] * eta
            rows.append({"fraction": c, **best, "lr": lr, "curve": curve(lr, kind=kind),
                         "sweep": lr_sweep(eta, kind=kind),
                         "fixed_gamma_bound": [bound(g * eta, kind=kind) for g in FIXED_GAMMAS[cooldown]]})
        out[cooldown] = rows
    return out


# ----- Figs. 4 and 15: optimal peak LR and final bound vs cooldown fraction -----
def _vs_fraction(ctx, kind, name):
    data = _cooldown_data(kind, ctx.small)
    words = KIND_WORDS[kind]
    fig, axes = figure(3, nrows=2, width=4.4, height=3.5)
    numbers = {"kind": kind, "T": T_COOLDOWN, "gamma": GAMMA_GRID, "cooldown": {}}
    for row, (cooldown, rows) in enumerate(data.items()):
        ax_s, ax_g, ax_o = axes[3 * row: 3 * row + 3]
        fractions = [r["fraction"] for r in rows]
        for r, color in zip(rows, value_shades(FRACTION_CMAP, [r["fraction"] for r in rows])):
            ax_s.plot(r["sweep"]["gamma"], r["sweep"]["bound"], color=color, alpha=0.6)
            ax_s.plot([r["gamma_star"]], [r["omega_star"]], "o", color=color, mec="k", ms=5)
        colorbar(fig, ax_s, FRACTION_CMAP, fractions, "cooldown fraction c")
        ax_s.set_xscale("log")
        ax_s.set_yscale("log")
        ax_s.set_ylim(0.7 * min(r["omega_star"] for r in rows), 8 * max(r["omega_star"] for r in rows))
        finish(ax_s, "peak LR $\\gamma$", f"final {words} $\\Omega_T$",
               f"{name}{'ad'[row]}: WSD, {cooldown} cooldown, T = {T_COOLDOWN}")
        ax_g.plot(fractions, [r["gamma_star"] for r in rows], "o-", color="k")
        finish(ax_g, "cooldown fraction c", "optimal peak LR $\\gamma^\\star$",
               f"{name}{'be'[row]}: $\\gamma^\\star$ vs c ({cooldown})")
        for i, (g, color) in enumerate(zip(FIXED_GAMMAS[cooldown], shades("Greens", 4))):
            ax_o.plot(fractions, [r["fixed_gamma_bound"][i] for r in rows], "o-", ms=3, color=color,
                      label=f"peak LR $\\gamma$ = {g}")
        ax_o.plot(fractions, [r["omega_star"] for r in rows], "k--", label="at $\\gamma^\\star$(c)")
        finish(ax_o, "cooldown fraction c", f"final {words} $\\Omega_T$",
               f"{name}{'cf'[row]}: final {words} vs c ({cooldown})", ncol=2)
        numbers["cooldown"][cooldown] = {
            "fraction": fractions, "gamma_star": [r["gamma_star"] for r in rows],
            "omega_star": [r["omega_star"] for r in rows], "fixed_gamma": FIXED_GAMMAS[cooldown],
            "fixed_gamma_bound": [r["fixed_gamma_bound"] for r in rows],
            "final_bound_vs_gamma": [r["sweep"]["bound"] for r in rows]}
    return fig, numbers


def fig4(ctx):
    return _vs_fraction(ctx, "refined", "Fig. 4")


def fig15(ctx):
    return _vs_fraction(ctx, "standard", "Fig. 15")


# ----- Figs. 5 and 16: tuned schedules and bound curves for several cooldown fractions -----
def _curves(ctx, kind, name):
    data = _cooldown_data(kind, ctx.small)
    words = KIND_WORDS[kind]
    fig, axes = figure(2, nrows=2, width=5.0, height=3.5)
    numbers = {"kind": kind, "T": T_COOLDOWN, "cooldown": {}}
    for row, (cooldown, rows) in enumerate(data.items()):
        ax_lr, ax_b = axes[2 * row: 2 * row + 2]
        step = np.arange(1, T_COOLDOWN + 1)
        for r, color in zip(rows, value_shades(FRACTION_CMAP, [r["fraction"] for r in rows])):
            ax_lr.plot(step, r["lr"], color=color)
            ax_b.plot(r["curve"]["step"], r["curve"]["bound"], color=color)
        fractions = [r["fraction"] for r in rows]
        colorbar(fig, ax_b, FRACTION_CMAP, fractions, "cooldown fraction c")
        finish(ax_lr, "step t", "tuned LR $\\gamma^\\star\\eta_t$",
               f"{name}{'ac'[row]}: WSD, {cooldown} cooldown at $\\gamma^\\star$")
        top = max(r["omega_star"] for r in rows)
        ax_b.set_ylim(0.8 * min(r["omega_star"] for r in rows), 3.5 * top)
        finish(ax_b, "step t", f"{words} $\\Omega_t$ at $\\gamma^\\star$",
               f"{name}{'bd'[row]}: {words} along the run ({cooldown})")
        numbers["cooldown"][cooldown] = {"fraction": fractions, "step": step,
                                         "gamma_star": [r["gamma_star"] for r in rows],
                                         "lr": [r["lr"] for r in rows], "curve": [r["curve"] for r in rows]}
    return fig, numbers


def fig5(ctx):
    return _curves(ctx, "refined", "Fig. 5")


def fig16(ctx):
    return _curves(ctx, "standard", "Fig. 16")


# ----- Fig. 6: gradient-norm bounds G_t = t^alpha -----
def fig6(ctx):
    T, alphas = 400, [0.0, -0.5, -1.0]
    schedules = {"cosine to 0": ("Oranges", cosine(T)), "WSD, 20% linear cooldown": ("Blues", wsd(T, 0.2))}
    step = np.arange(1, T + 1)
    fig, (ax_s, ax_g, ax_b) = figure(3, width=4.4)
    numbers = {"T": T, "alpha": alphas, "step": step, "gamma": GAMMA_GRID, "schedules": {}}
    for sched, (cmap, config) in schedules.items():
        eta = shape(config)
        numbers["schedules"][sched] = {}
        for alpha, color in zip(alphas, shades(cmap, len(alphas))):
            G = step.astype(float) ** alpha
            best = tuned(eta, G=G)
            c = curve(best["gamma_star"] * eta, G=G)
            sweep = lr_sweep(eta, G=G)
            label = f"{sched}, $\\alpha$ = {alpha:g}"
            ax_s.plot(sweep["gamma"], sweep["bound"], color=color, alpha=0.7)
            ax_s.plot([best["gamma_star"]], [best["omega_star"]], "o", color=color, mec="k", ms=5, label=label)
            ax_b.plot(c["step"], c["bound"], color=color, label=label)
            if sched.startswith("WSD"):
                ax_g.plot(step, G, color=GREYS[alpha], label=f"$\\alpha$ = {alpha:g}")
            numbers["schedules"][sched][alpha] = {**best, "curve": c, "final_bound_vs_gamma": sweep["bound"]}
    numbers["G"] = {alpha: step.astype(float) ** alpha for alpha in alphas}
    for ax in (ax_s, ax_g, ax_b):
        ax.set_yscale("log")
    ax_s.set_xscale("log")
    ax_b.axvline(build(wsd(T, 0.2)).cooldown_start, color="0.7", ls=":", lw=1)
    finish(ax_s, "peak LR $\\gamma$", "final bound $\\Omega_T$",
           "Fig. 6a: final bound vs peak LR (dots: $\\gamma^\\star$)",
           ncol=1, loc="upper right")
    finish(ax_g, "step t", "gradient-norm bound $G_t = t^\\alpha$", "Fig. 6b: the assumed $G_t$")
    ax_b.set_ylim(2e-3, 2)
    finish(ax_b, "step t", "bound $\\Omega_t$ at $\\gamma^\\star$",
           "Fig. 6c: bound along the run (colours as in a;\ndotted: start of the WSD cooldown)", legend=False)
    return fig, numbers


# ----- Fig. 11: ln gamma*(linear decay) - ln gamma*(WSD with cooldown fraction c) -----
def fig11(ctx):
    horizons = [400, 1600] if ctx.small else [400, 1600, 6400, 25600, 102400]
    fractions = np.linspace(0, 1, 11 if ctx.small else 31)
    fig, axes = figure(2, width=4.8)
    numbers = {"horizons": horizons, "fraction": fractions, "cooldown": {}}
    for ax, cooldown in zip(axes, COOLDOWN_KINDS):
        numbers["cooldown"][cooldown] = {}
        for T, color in zip(horizons, shades("Blues", len(horizons))):
            # c = 0 is a one-step cooldown: the paper's constant LR at horizon T; c = 1 is linear decay.
            gammas = np.array([tuned(shape(wsd(T, c, cooldown)))["gamma_star"] for c in fractions])
            log_ratio = np.log(gammas[-1]) - np.log(gammas)
            numbers["cooldown"][cooldown][T] = {"gamma_star": gammas, "log_ratio": log_ratio}
            ax.plot(fractions, log_ratio, "o-", ms=3, lw=1, color=color, label=f"T = {T:,}")
        ax.set_ylim(-0.05, 1.75)
        finish(ax, "cooldown fraction c", "$\\ln\\gamma^\\star(1) - \\ln\\gamma^\\star(c)$",
               f"Fig. 11{'ab'[cooldown != 'linear']}: WSD with {cooldown} cooldown vs linear decay (c = 1)")
    return fig, numbers


FIGURES = [
    FigureSpec("fig4", "WSD at T = 400: final bound vs peak LR, optimal peak LR and final bound vs cooldown fraction "
                       "(linear, 1-sqrt)", fig4),
    FigureSpec("fig5", "WSD at T = 400 for 10 cooldown fractions: tuned schedules and bound curves (linear, 1-sqrt)",
               fig5),
    FigureSpec("fig6", "cosine vs WSD-0.2 with gradient-norm bounds G_t = t^alpha, alpha in {0, -0.5, -1}", fig6),
    FigureSpec("fig11", "log ratio of the optimal peak LRs of linear decay and WSD vs cooldown fraction, "
                        "T = 400..102400", fig11),
    FigureSpec("fig15", "Fig. 4 with the standard bound", fig15),
    FigureSpec("fig16", "Fig. 5 with the standard bound", fig16),
]
