"""Plots of the analysis: measured loss vs fitted bound, final loss vs peak LR, bound curves.

    from analysis.plots import plot_overlay, plot_lr_sweep, plot_bound_curves
    plot_overlay([(curve, fit), ...], "outputs/analysis/overlay")    # writes overlay.png and overlay.pdf

Figures are built with matplotlib's object API (no pyplot state, no display, no LaTeX); every
function writes a PNG and a PDF next to each other and returns their paths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.bound import bound_curve


def save_figure(fig: Figure, path) -> list[Path]:
    """`path` with .png and .pdf (any suffix given is replaced); parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".pdf"):
        out = path.with_suffix(suffix)
        fig.savefig(out, dpi=150, bbox_inches="tight")
        written.append(out)
    return written


def _axes():
    """A new figure of the size all analysis plots share, and its one axes."""
    fig = Figure(figsize=(6.5, 4.2))
    return fig, fig.add_subplot()


def _finish(fig, ax, title, path, grid_which="major") -> list[Path]:
    """Title, grid and legend as every analysis plot has them, then save_figure."""
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which=grid_which)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _colors(n):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(n, 1))]


def plot_overlay(pairs, path, title="measured loss vs fitted bound", ylim=None) -> list[Path]:
    """pairs: [(Curve, BoundFit)]: measured points and C + M * Omega_t at every step of the run."""
    fig, ax = _axes()
    for (curve, fit), color in zip(pairs, _colors(len(pairs))):
        ax.plot(curve.steps, curve.loss, "o", ms=2.5, color=color, alpha=0.6,
                label=f"{curve.label} (R$^2$ {fit.r2:.3f})")
        first = int(curve.steps.min()) if curve.steps.size else 1     # the fit starts there
        steps = np.unique(np.linspace(first, curve.lr.size, 600).astype(np.int64))
        ax.plot(steps, fit.predict(curve.lr, steps), "-", lw=1.5, color=color)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if ylim is None and pairs:
        low = min(float(np.nanmin(c.loss)) for c, _ in pairs)
        high = max(float(np.nanpercentile(c.loss, 90)) for c, _ in pairs)
        ylim = (low - 0.05 * (high - low), high)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return _finish(fig, ax, title + " (points: measured; lines: C + M $\\Omega_t$)", path)


def plot_lr_sweep(groups, path, title="final loss vs peak LR") -> list[Path]:
    """groups: [dict(label, lrs, losses, fit=LRFit|None, predicted_lr=float|None)], one colour each:
    measured points, the fit A/lr + B lr + C, its optimum (circle) and the prediction (dashed line)."""
    fig, ax = _axes()
    for group, color in zip(groups, _colors(len(groups))):
        ax.plot(group["lrs"], group["losses"], "o", color=color, label=group["label"])
        fit = group.get("fit")
        if fit is not None:
            grid = np.geomspace(min(group["lrs"]) / 1.5, max(group["lrs"]) * 1.5, 200)
            ax.plot(grid, fit.predict(grid), "-", lw=1, color=color)
            if np.isfinite(fit.optimal_lr) and fit.optimal_lr > 0:
                ax.plot([fit.optimal_lr], [fit.predict(fit.optimal_lr)], "o", mfc="none", ms=9, color=color)
        if group.get("predicted_lr"):
            ax.axvline(group["predicted_lr"], ls="--", lw=1, color=color)
    ax.set_xscale("log")
    ax.set_xlabel("peak LR")
    ax.set_ylabel("final validation loss")
    return _finish(fig, ax, title + " (lines: fits; open circles: fitted optima; dashed: predicted LR)", path,
                   grid_which="both")


def plot_bound_curves(schedules, path, G=1.0, D=1.0, title="bound $\\Omega_t$", ylim=None, marks=()) -> list[Path]:
    """schedules: {label: step sizes}; Omega_t of each at every step (y from 0 to 3x the largest
    final value unless ylim is given); marks: steps to draw as vertical lines (e.g. the old horizon)."""
    fig, ax = _axes()
    finals = []
    for (label, lr), color in zip(schedules.items(), _colors(len(schedules))):
        lr = np.asarray(lr, dtype=np.float64)
        steps = np.unique(np.linspace(1, lr.size, 1000).astype(np.int64))
        omega = bound_curve(lr, G=G, D=D, horizons=steps)
        finals.append(omega[-1])
        ax.plot(steps, omega, color=color, label=label)
    for step in marks:
        ax.axvline(step, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("$\\Omega_t$")
    if ylim is None and finals and np.isfinite(max(finals)):
        ylim = (0.0, 3.0 * max(finals))
    if ylim is not None:
        ax.set_ylim(*ylim)
    return _finish(fig, ax, title, path)
