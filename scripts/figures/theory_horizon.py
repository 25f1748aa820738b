"""Theory figures over the training horizon T: cosine vs WSD (Figs. 1b, 2, 3, 13, 14) and WSD's
missing log factor (Fig. 20). D = G = 1; the bound is analysis.bound (docs/theory.md section 1).

    python -m scripts.reproduce --figure fig2 --figure fig3 [--small]
"""
from __future__ import annotations

import numpy as np
from scipy.special import digamma

from analysis.bound import bound_curve
from scripts.figures.common import FigureSpec
from scripts.figures.theory_common import (GAMMA_GRID, KIND_WORDS, constant, cosine, curve, figure, finish,
                                           lr_sweep, power_law_fit, shades, shape, tuned, wsd)

SCHEDULES = {"cosine to 0": ("Oranges", cosine), "WSD, 20% linear cooldown": ("Blues", lambda T: wsd(T, 0.2))}


def _horizons(ctx):
    return [200, 400, 600] if ctx.small else [200, 300, 400, 500, 600]


def _per_horizon(horizons, kind):
    """{schedule: {T: tuned numbers + the tuned schedule, its bound curve and its LR sweep}}."""
    out = {}
    for name, (_, config) in SCHEDULES.items():
        out[name] = {}
        for T in horizons:
            eta = shape(config(T))
            best = tuned(eta, kind=kind)
            lr = best["gamma_star"] * eta
            out[name][T] = {**best, "step": np.arange(1, T + 1), "lr": lr, "curve": curve(lr, kind=kind),
                            "sweep": lr_sweep(eta, kind=kind)}
    return out


def _label(name, horizons):
    return f"{name}, T = {min(horizons)}..{max(horizons)} (dark = longer)"


# ----- Fig. 1b: bound curves at the LRs of the 210M runs -----
def fig1b(ctx):
    horizons = [2200, 3300, 4400] if ctx.small else [22000, 33000, 44000]
    peaks = {"cosine to 0": 0.005, "WSD, 20% linear cooldown": 0.0025}
    fig, (ax,) = figure(1, width=6.2, height=4.2)
    numbers = {"horizons": horizons, "peak_lr": peaks, "curves": {}}
    for name, (cmap, config) in SCHEDULES.items():
        numbers["curves"][name] = {}
        for T, color in zip(horizons, shades(cmap, len(horizons))):
            c = curve(peaks[name] * shape(config(T)))
            numbers["curves"][name][T] = c
            ax.plot(c["step"], c["bound"], color=color, label=f"{name}, peak LR {peaks[name]}, T = {T:,}")
    ax.set_ylim(0, 0.1)
    finish(ax, "step t", "bound $\\Omega_t$", "Fig. 1b: the bound at the 210M runs' peak LRs (D = G = 1)",
           ncol=1, loc="upper right")
    return fig, numbers


# ----- Figs. 2 and 13: tuned schedules and their bound curves -----
def _tuned_curves(ctx, kind, name):
    horizons = _horizons(ctx)
    data = _per_horizon(horizons, kind)
    fig, (ax_lr, ax_b) = figure(2)
    numbers = {"kind": kind, "horizons": horizons, "schedules": {}}
    for sched, (cmap, _) in SCHEDULES.items():
        numbers["schedules"][sched] = {}
        for i, (T, color) in enumerate(zip(horizons, shades(cmap, len(horizons)))):
            d = data[sched][T]
            label = _label(sched, horizons) if i == len(horizons) - 1 else None
            ax_lr.plot(d["step"], d["lr"], color=color, label=label)
            ax_b.plot(d["curve"]["step"], d["curve"]["bound"], color=color, label=label)
            numbers["schedules"][sched][T] = {"gamma_star": d["gamma_star"], "omega_star": d["omega_star"],
                                              "step": d["step"], "lr": d["lr"], "curve": d["curve"]}
    words = KIND_WORDS[kind]
    finish(ax_lr, "step t", "tuned LR $\\gamma^\\star\\eta_t$", f"{name}a: schedules at their optimal peak LR")
    top = max(d["omega_star"] for s in data.values() for d in s.values())
    ax_b.set_ylim(0, 3 * top)
    finish(ax_b, "step t", f"{words} $\\Omega_t$ at $\\gamma^\\star$", f"{name}b: the {words} along the run")
    return fig, numbers


def fig2(ctx):
    return _tuned_curves(ctx, "refined", "Fig. 2")


def fig13(ctx):
    return _tuned_curves(ctx, "standard", "Fig. 13")


# ----- Figs. 3 and 14: final bound vs gamma; gamma* vs T with a power-law fit -----
def _gamma_star_fit(ctx, kind, name):
    horizons = _horizons(ctx)
    data = _per_horizon(horizons, kind)
    fig, (ax_s, ax_g) = figure(2)
    numbers = {"kind": kind, "horizons": horizons, "gamma": GAMMA_GRID, "schedules": {}, "exponents": {}}
    for sched, (cmap, _) in SCHEDULES.items():
        colors = shades(cmap, len(horizons))
        for i, (T, color) in enumerate(zip(horizons, colors)):
            d = data[sched][T]
            ax_s.plot(d["sweep"]["gamma"], d["sweep"]["bound"], color=color, alpha=0.7,
                      label=_label(sched, horizons) if i == len(horizons) - 1 else None)
            ax_s.plot([d["gamma_star"]], [d["omega_star"]], "o", mec="k", color=color, ms=5)
        gammas = [data[sched][T]["gamma_star"] for T in horizons]
        fit = power_law_fit(horizons, gammas)
        numbers["exponents"][sched] = fit
        numbers["schedules"][sched] = {
            "gamma_star": gammas, "omega_star": [data[sched][T]["omega_star"] for T in horizons],
            "final_bound_vs_gamma": {T: data[sched][T]["sweep"]["bound"] for T in horizons}}
        grid = np.linspace(0.8 * min(horizons), 1.2 * max(horizons), 100)
        ax_g.plot(horizons, gammas, "o", color=colors[-1])
        ax_g.plot(grid, fit["A"] * grid ** fit["B"], "--", color=colors[-1],
                  label=f"{sched}: $\\gamma^\\star$ = {fit['A']:.3f} $T^{{{fit['B']:.3f}}}$")
    words = KIND_WORDS[kind]
    ax_s.set_xscale("log")
    ax_s.set_yscale("log")
    top = max(d["omega_star"] for s in data.values() for d in s.values())
    ax_s.set_ylim(0.45 * min(d["omega_star"] for s in data.values() for d in s.values()), 8 * top)
    finish(ax_s, "peak LR $\\gamma$", f"final {words} $\\Omega_T$",
           f"{name}a: final {words} vs peak LR (dots: $\\gamma^\\star$)", loc="lower right")
    finish(ax_g, "horizon T (steps)", "optimal peak LR $\\gamma^\\star$",
           f"{name}b: $\\gamma^\\star$ vs T, fit A $T^B$")
    return fig, numbers


def fig3(ctx):
    return _gamma_star_fit(ctx, "refined", "Fig. 3")


def fig14(ctx):
    return _gamma_star_fit(ctx, "standard", "Fig. 14")


# ----- Fig. 20: no log factor for WSD; the bound's 1/gamma and gamma parts -----
def fig20(ctx):
    horizons = [500, 1000, 2000] if ctx.small else [500, 1000, 2000, 4000, 8000]
    T_split = horizons[-1] // 2
    fig, (ax_c, ax_s) = figure(2)
    numbers = {"horizons": horizons, "wsd": {}, "constant": {}}
    for T, color in zip(horizons, shades("Blues", len(horizons))):
        eta = shape(wsd(T, 0.2))
        best = tuned(eta)
        c = curve(best["gamma_star"] * eta)
        numbers["wsd"][T] = {**best, "curve": c}
        ax_c.plot(c["step"], c["bound"], color=color, lw=1.2,
                  label=f"WSD, 20% linear cooldown, T = {min(horizons)}..{max(horizons)} (dark = longer)"
                  if T == horizons[-1] else None)
    # The constant schedule at its optimal gamma: Omega* = sqrt(1 + H_{T-1}) / sqrt(T) (THEORY section 1).
    t = np.unique(np.geomspace(10, max(horizons), 400).astype(np.int64))
    harmonic = digamma(t) + np.euler_gamma     # H_{t-1}
    const = np.sqrt(1.0 + harmonic) / np.sqrt(t)
    fit = power_law_fit(horizons, [numbers["wsd"][T]["omega_star"] for T in horizons])
    A = float(np.exp(np.mean([np.log(numbers["wsd"][T]["omega_star"] * np.sqrt(T)) for T in horizons])))
    numbers["constant"] = {"horizon": t, "omega_star": const,
                           "omega_star_at_horizons": [tuned(shape(constant(T)))["omega_star"] for T in horizons]}
    numbers["exponents"] = {"wsd_omega_star": fit, "A_over_sqrt_T": A}
    ax_c.plot(t, const, color="0.35", lw=2, label="constant LR, tuned at each T: $\\sqrt{1+H_{T-1}}/\\sqrt{T}$")
    ax_c.plot(t, A / np.sqrt(t), color="0.7", lw=2, ls="--",
              label=f"{A:.2f}/$\\sqrt{{T}}$ (fit to WSD's $\\Omega^\\star$)")
    ax_c.set_ylim(0, 0.1)
    finish(ax_c, "step t (constant: horizon T)", "bound $\\Omega_t$ at $\\gamma^\\star$",
           "Fig. 20a: WSD has no log factor, the constant LR has one")
    eta = shape(wsd(T_split, 0.2))
    best = tuned(eta)
    steps = np.arange(1, T_split + 1)
    terms = bound_curve(best["gamma_star"] * eta, horizons=steps, split=True)
    term1, term23 = terms.term1, terms.term2 + terms.term3
    numbers["split"] = {"T": T_split, **best, "step": steps, "term1": term1, "term2_plus_term3": term23}
    ax_s.plot(steps, term1, color="k", label="term 1: $D^2/(2\\sum\\eta_s)$, the 1/$\\gamma$ part")
    ax_s.plot(steps, term23, color="tab:red", label="terms 2 + 3, the $\\gamma$ part")
    ax_s.set_ylim(0, 0.2)
    finish(ax_s, "step t", "bound term at $\\gamma^\\star$",
           f"Fig. 20b: WSD-0.2, T = {T_split}: the two parts of $\\Omega_t$")
    return fig, numbers


FIGURES = [
    FigureSpec("fig1b", "bound curves of cosine (peak 0.005) and WSD-0.2 (peak 0.0025) for T = 22k/33k/44k", fig1b),
    FigureSpec("fig2", "cosine vs WSD-0.2 at their optimal peak LR: tuned schedules and bound curves, T = 200..600",
               fig2),
    FigureSpec("fig3", "final bound vs peak LR; optimal peak LR vs horizon with the fit A T^B (cosine, WSD-0.2)", fig3),
    FigureSpec("fig13", "Fig. 2 with the standard bound", fig13),
    FigureSpec("fig14", "Fig. 3 with the standard bound", fig14),
    FigureSpec("fig20", "WSD-0.2 vs the constant LR (no log factor); the bound's 1/gamma and gamma parts", fig20),
]
