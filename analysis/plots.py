"""Plots of the analysis: measured loss vs fitted bound, final loss vs peak LR, bound curves.

    from analysis.plots import plot_overlay, plot_lr_sweep, plot_bound_curves
    plot_overlay([(curve, fit), ...], "outputs/analysis/overlay")    # writes overlay.png and overlay.pdf

Figures are built with matplotlib's object API (no pyplot state, no display, no LaTeX); every
function writes a PNG and a PDF next to each other and returns their paths. Categorical series get
a qualitative colour map; axes say their units (nats, steps); measured data are solid, theory dashed.
Used by `python -m analysis advise ...` (analysis/cli.py, analysis/extend.py).
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


def _finish(fig, ax, title, path=None, grid_which="major", handles=None):
    """Title, grid and legend as every analysis plot has them, then save_figure (path None: the figure)."""
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which=grid_which)
    ax.legend(handles=handles, fontsize=7)
    return fig if path is None else save_figure(fig, path)


def category_colors(n):
    """Distinct colours for categorical series (runs, schedules): a qualitative map, tab10 (tab20 beyond)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]


def plot_overlay(pairs, path, title="measured loss vs fitted bound", ylim=None, xlabel="step"):
    """pairs: [(Curve, BoundFit)]: each measured curve as a solid coloured line, the fitted bound
    C + M * Omega_t over it as a dashed black line (from the first fitted step to the run's end).
    Returns the written paths; path=None returns the Figure instead (tests look at its lines)."""
    from matplotlib.lines import Line2D

    fig, ax = _axes()
    handles = []
    for (curve, fit), color in zip(pairs, category_colors(len(pairs))):
        ax.plot(curve.steps, curve.loss, "-", lw=1.6, color=color, alpha=0.85)
        handles.append(Line2D([], [], color=color, lw=1.6, label=f"{curve.label} (fit R$^2$ {fit.r2:.3f})"))
    for curve, fit in pairs:     # drawn after all measured lines, so no bound hides under a curve
        first = int(curve.steps.min()) if curve.steps.size else 1     # the fit starts there
        steps = np.unique(np.linspace(first, curve.lr.size, 600).astype(np.int64))
        ax.plot(steps, fit.predict(curve.lr, steps), "--", lw=1.1, color="black", zorder=3)
    handles += [Line2D([], [], color="gray", lw=1.6, label="measured validation loss"),
                Line2D([], [], color="black", ls="--", lw=1.1, label="fitted bound C + M $\\Omega_t$")]
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation loss (nats)")
    if ylim is None and pairs:
        low = min(float(np.nanmin(c.loss)) for c, _ in pairs)
        high = max(float(np.nanpercentile(c.loss, 90)) for c, _ in pairs)
        ylim = (low - 0.05 * (high - low), high)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return _finish(fig, ax, title, path, handles=handles)


# How each status of a fitted optimum is drawn on the LR sweep (analysis.fit.LRFit.status).
_OPTIMUM_MARKERS = {"bracketed": dict(marker="*", ms=13, label="fitted optimum, bracketed by the sweep"),
                    "extrapolated": dict(marker="^", ms=9, mfc="none", mew=1.5,
                                         label="fitted optimum, extrapolated beyond the sweep")}


def plot_lr_sweep(groups, path, title="final loss vs peak LR", max_factor=2.5):
    """groups: [dict(label, lrs, losses, fit=LRFit|None, predicted_lr=float|None, diverged_lrs=(),
    next_lrs=())], one colour each (diverged runs: crosses at the top; next LRs: triangles at the bottom):
    measured points, the fit A/lr + B lr + C (dotted where undetermined), its optimum (a star when
    bracketed, a triangle when extrapolated, none when undetermined) and the predicted LR (a dashed
    line, drawn also for a group without runs). The x-axis spans the data to within `max_factor`;
    a predicted LR further out is an arrow at the edge, labelled with its value. Returns the written
    paths (path=None: the Figure)."""
    from matplotlib.lines import Line2D

    fig, ax = _axes()
    measured = [lr for g in groups for lr in g["lrs"]]
    wanted = measured + [g["predicted_lr"] for g in groups if g.get("predicted_lr")]
    wanted += [lr for g in groups for lr in (*g.get("diverged_lrs", ()), *g.get("next_lrs", ()))]
    wanted += [g["fit"].optimal_lr for g in groups if g.get("fit") is not None and g["fit"].status != "undetermined"]
    if not wanted:
        raise ValueError("plot_lr_sweep: no LRs to draw (no measured runs and no predicted LR)")
    anchor = measured or wanted
    low = max(min(wanted) / 1.25, min(anchor) / max_factor)
    high = min(max(wanted) * 1.25, max(anchor) * max_factor)
    handles, statuses = [], set()
    for group, color in zip(groups, category_colors(len(groups))):
        label = group["label"]
        if len(group["lrs"]):
            ax.plot(group["lrs"], group["losses"], "o", color=color, ms=5)
        fit = group.get("fit")
        if fit is not None:
            grid = np.geomspace(low, high, 200)
            status = fit.status
            ax.plot(grid, fit.predict(grid), ":" if status == "undetermined" else "-", lw=1, color=color)
            if status in _OPTIMUM_MARKERS:
                style = {k: v for k, v in _OPTIMUM_MARKERS[status].items() if k != "label"}
                ax.plot([fit.optimal_lr], [fit.predict(fit.optimal_lr)], ls="none", color=color, **style)
                statuses.add(status)
            label += f" ({status})"
        inside = lambda lrs: [lr for lr in lrs if low <= lr <= high]     # the table lists those further out
        for lr in inside(group.get("diverged_lrs", ())):   # left out of the fit, drawn at the top edge
            ax.plot([lr], [0.97], "x", ms=8, mew=2, color=color, transform=ax.get_xaxis_transform())
            statuses.add("diverged")
        for lr in inside(group.get("next_lrs", ())):       # where the sweep should go next, at the bottom edge
            ax.plot([lr], [0.03], "^", ms=7, color=color, alpha=0.6, transform=ax.get_xaxis_transform())
            statuses.add("next")
        predicted = group.get("predicted_lr")
        if predicted:
            shown = min(max(predicted, low), high)
            ax.axvline(shown, ls="--", lw=1, color=color)
            if shown != predicted:
                ax.annotate(f"{'→' if predicted > high else '←'} {predicted:.2g}", (shown, 0.95),
                            xycoords=("data", "axes fraction"), fontsize=7, color=color,
                            ha="right" if predicted > high else "left")
        handles.append(Line2D([], [], color=color, marker="o" if len(group["lrs"]) else None,
                              ls="--" if predicted and not len(group["lrs"]) else "-", label=label))
    handles += [Line2D([], [], color="gray", ls="none", **_OPTIMUM_MARKERS[s]) for s in sorted(statuses)
                if s in _OPTIMUM_MARKERS]
    if "diverged" in statuses:
        handles.append(Line2D([], [], color="gray", ls="none", marker="x", mew=2, label="diverged run (left out)"))
    if "next" in statuses:
        handles.append(Line2D([], [], color="gray", ls="none", marker="^", alpha=0.6, label="LR to run next"))
    if any(g.get("predicted_lr") for g in groups):
        handles.append(Line2D([], [], color="gray", ls="--", label="predicted LR (theory)"))
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("final validation loss (nats)")
    losses = [v for g in groups for v in g["losses"]]
    if losses:   # the measured points decide the y range; fit lines far outside are cut
        span = max(losses) - min(losses) or 0.1
        ax.set_ylim(min(losses) - 0.15 * span, max(losses) + 0.15 * span)
    return _finish(fig, ax, title, path, grid_which="both", handles=handles)


def plot_bound_curves(schedules, path, G=1.0, D=1.0, title="bound $\\Omega_t$", ylim=None, marks=()) -> list[Path]:
    """schedules: {label: step sizes}; Omega_t of each at every step (y from 0 to 3x the largest
    final value unless ylim is given); marks: steps to draw as vertical lines (e.g. the old horizon)."""
    fig, ax = _axes()
    finals = []
    for (label, lr), color in zip(schedules.items(), category_colors(len(schedules))):
        lr = np.asarray(lr, dtype=np.float64)
        steps = np.unique(np.linspace(1, lr.size, 1000).astype(np.int64))
        omega = bound_curve(lr, G=G, D=D, horizons=steps)
        finals.append(omega[-1])
        ax.plot(steps, omega, color=color, label=label)
    for step in marks:
        ax.axvline(step, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("bound $\\Omega_t$ (theory units, D = G = 1)" if G == 1.0 and D == 1.0 else "bound $\\Omega_t$")
    if ylim is None and finals and np.isfinite(max(finals)):
        ylim = (0.0, 3.0 * max(finals))
    if ylim is not None:
        ax.set_ylim(*ylim)
    return _finish(fig, ax, title, path)
