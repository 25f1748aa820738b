"""Figs. 12 and 21 of Schaipp et al. (ICML 2025): an LR sweep of several schedules at one horizon.

    python -m scripts.reproduce --figure fig12 --figure fig21          # the shipped 124M cooldown x LR grid
    python -m scripts.reproduce --figure fig12 --logs outputs/multiruns/<date>/<time>   # any sweep of yours

fig12  (main text, LR transfer across schedules) left: final validation loss vs peak LR per schedule
       (in the paper: WSD with linear cooldown fractions 0.1..0.9, 50k steps), the fit A/lr + B lr + C
       (analysis.fit.fit_lr_sweep) and its optimum; right: that fitted optimum against the LR the
       theory transfers from the reference schedule (WSD with 20% cooldown when present):
       gamma_ref * gamma*(schedule) / gamma*(ref) (analysis.advise.transfer_lr, closed-form gamma*).
fig21  (appendix) the loss curve of each schedule at one peak LR (the one most schedules ran, 1e-3 in
       the paper's grid), over one bound fitted to all of them (analysis.fit.fit_bound: shared C, M and
       G_t model).
The sweep: runs grouped by schedule shape (analysis.groups.group_runs) per model, each made a sweep by
the advisor (analysis.advise.make_sweep: diverged runs left out, the optimum classified), keeping the schedules
with final losses at >= 3 peak LRs; of the (model, horizon) pairs the one with the most such schedules.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from analysis.advise import make_sweep, shape_of, transfer_lr
from analysis.bound import optimal_lr
from analysis.groups import group_runs
from analysis.plots import category_colors
from scripts.figures.real_runs import (by_model, final_loss, finish_loss_axes, fit_numbers, fit_start,
                                       load_runs, loss_ylim, overlay, steps_label)

REFERENCE = "WSD, 20% linear cooldown"    # the paper's tuned schedule, the source of the transfer
MAX_EXTRAPOLATION = 2.0  # a fitted optimum further than this factor outside the swept LRs is not shown
TRANSFER_BAND = 1.5      # the right panel's dotted band: transferred / fitted within this factor


def sweep(ctx):
    """(model, horizon, [(group, lrs, losses, diverged, LRFit)]) of the largest sweep in ctx.logs."""
    runs, _ = load_runs(ctx.logs)
    candidates = []
    for model, members in by_model(runs).items():
        members = [r for r in members if r.schedule_config is not None and r.peak_lr]
        for T in sorted({r.total_steps for r in members}):   # one horizon at a time: names need no "T = ..."
            fitted = []
            for group in group_runs([r for r in members if r.total_steps == T]):
                # the advisor's own rules: diverged runs left out, the optimum classified
                swept = make_sweep(group.runs, max_extrapolation=MAX_EXTRAPOLATION, name=group.name)
                if swept.fit is not None:
                    counted = {id(r) for r in swept.counted}
                    diverged = sorted(r.peak_lr for r in group.runs if id(r) not in counted)
                    fitted.append((group, swept.lrs, swept.losses, diverged, swept.fit))
            if fitted:
                candidates.append((model, T, fitted))
    if not candidates:
        raise ValueError(f"fig12/fig21 need an LR sweep: runs of one schedule at >= 3 peak LRs with a final "
                         f"validation loss, e.g. `python train.py -m optimizer.lr=1e-3,2e-3,4e-3 "
                         f"schedule=wsd,cosine`; {ctx.logs} has none")
    return max(candidates, key=lambda c: len(c[2]))


def fitted_optimum(fit) -> float:
    """The fit's optimal LR if the sweep pins it down (status bracketed, or extrapolated within
    MAX_EXTRAPOLATION with curvature on both sides: analysis.fit.LRFit.status), else NaN."""
    return float(fit.optimal_lr) if fit.status in ("bracketed", "extrapolated") else math.nan


def _reference(groups):
    """The transfer's source: the paper's WSD-0.2 if its optimum is bracketed, else the first schedule
    whose fitted optimum is bracketed by its sweep, else the first with a finite optimum."""
    usable = [g for g in groups if math.isfinite(fitted_optimum(g[4]))]
    if not usable:
        raise ValueError("no schedule of the sweep has a fitted optimal LR (every fit is monotone in the LR); "
                         "extend the sweep to larger and smaller LRs")
    inside = [g for g in usable if g[4].status == "bracketed"]
    named = [g for g in inside if g[0].name == REFERENCE]
    return (named or inside or usable)[0]


def fig12(ctx):
    model, T, groups = sweep(ctx)
    ref = _reference(groups)
    ref_lr, ref_shape = fitted_optimum(ref[4]), shape_of(ref[0].config)
    fig = Figure(figsize=(11.5, 4.6))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    numbers = []
    for (group, lrs, losses, diverged, fit), color in zip(groups, category_colors(len(groups))):
        transferred = transfer_lr(ref_lr, ref_shape, shape_of(group.config))
        opt = fitted_optimum(fit)
        left.plot(lrs, losses, "o", color=color, ms=5, label=group.name)
        grid = np.geomspace(min(lrs) / 1.5, max(lrs) * 1.5, 200)
        left.plot(grid, fit.predict(grid), "-", color=color, lw=1.2)
        if math.isfinite(opt):
            left.plot([opt], [fit.predict(opt)], "o", mfc="none", mec=color, ms=11, mew=1.5)
            marker = "*" if group is ref[0] else "o" if fit.status == "bracketed" else "s"
            right.plot([transferred], [opt], marker, ms=12 if marker == "*" else 8, color=color,
                       mfc="none" if marker == "s" else color, mew=1.5)
        left.plot([transferred], [fit.predict(transferred)], "v", color=color, mec="black", ms=8)
        numbers.append({"schedule": group.name, "config": group.config, "lrs": lrs, "final_losses": losses,
                        "diverged_lrs": diverged, "fit": {"A": fit.A, "B": fit.B, "C": fit.C, "r2": fit.r2},
                        "fitted_optimal_lr": opt, "status": fit.status, "bracketed": fit.status == "bracketed",
                        "theory_gamma": optimal_lr(shape_of(group.config))[0], "transferred_lr": transferred,
                        "transferred_over_fitted": transferred / opt})
    left.set_xscale("log")
    all_lrs = [lr for g in groups for lr in g[1]]
    left.set_xlim(min(all_lrs) / 1.6, max(all_lrs) * 1.6)
    left.set_xlabel("peak learning rate")
    left.set_ylabel("final validation loss (nats)")
    finite = np.concatenate([g[2] for g in groups])
    left.set_ylim(finite.min() - 0.01, finite.max() + 0.01)
    left.set_title(f"{model}, T = {steps_label(T)} steps: final loss vs peak LR", fontsize=9)
    left.grid(alpha=0.3, which="both")
    styles = [Line2D([], [], color="0.3", marker="o", ls="", label="measured final loss"),
              Line2D([], [], color="0.3", label="fit A/lr + B lr + C"),
              Line2D([], [], color="0.3", marker="o", mfc="none", ms=11, ls="", label="fitted optimum"),
              Line2D([], [], color="0.6", marker="v", mec="black", ls="", ms=8, label=f"theory: transferred from {ref[0].name}")]
    handles, _ = left.get_legend_handles_labels()
    left.legend(handles=styles, fontsize=7, loc="upper right")
    fig.legend(handles=handles, fontsize=7.5, loc="lower center", ncol=min(len(handles), 5), frameon=False)
    points = [v for n in numbers for v in (n["transferred_lr"], n["fitted_optimal_lr"]) if math.isfinite(v)]
    span = np.geomspace(min(points) / 1.6, max(points) * 1.6, 50)
    right.plot(span, span, "--", color="black", lw=1.3, label="fitted = transferred (theory exact)")
    right.fill_between(span, span / TRANSFER_BAND, span * TRANSFER_BAND, color="0.85", zorder=0,
                       label=f"within {TRANSFER_BAND}x")
    right.plot([], [], "o", color="0.4", label="optimum bracketed by the sweep")
    right.plot([], [], "s", color="0.4", mfc="none", label=f"optimum extrapolated (<= {MAX_EXTRAPOLATION:g}x)")
    right.plot([], [], "*", color="0.4", ms=12, label="the reference (on the line by construction)")
    right.set_xscale("log")
    right.set_yscale("log")
    for axis in (right.xaxis, right.yaxis):   # 1-2-5 ticks in plain numbers: the span is about one decade
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    right.set_xlim(span[0], span[-1])
    right.set_ylim(span[0], span[-1])
    right.set_xlabel(f"LR transferred by the theory from {ref[0].name}")
    right.set_ylabel("fitted optimal peak LR")
    right.set_title("LR transfer across schedules: fit vs theory (colours as left)", fontsize=9)
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=7, loc="upper left")
    fig.tight_layout(rect=(0, 0.045 * ((len(handles) + 4) // 5), 1, 1))
    return fig, {"model": model, "total_steps": T, "reference": ref[0].name, "reference_lr": ref_lr,
                 "groups": numbers}


def common_lr(groups) -> float:
    """The peak LR that the most schedules of the sweep ran (not diverged); of those, the one with the
    lowest mean final loss. Curves at one LR share the bound's constants (C, M, G_t) well; across LRs
    a single fit is poor (R^2 0.89 instead of 0.99 on the paper's 124M sweep)."""
    counts: dict[float, list] = {}
    for _, lrs, losses, _, _ in groups:
        for lr, loss in zip(lrs, losses):
            counts.setdefault(lr, []).append(loss)
    return min(counts, key=lambda lr: (-len(counts[lr]), float(np.mean(counts[lr]))))


def fig21(ctx):
    model, T, groups = sweep(ctx)
    lr = common_lr(groups)
    fig = Figure(figsize=(9, 5.4))
    ax = fig.add_subplot()
    entries = []
    for (group, lrs, _, _, _), color in zip(groups, category_colors(len(groups))):
        runs = [r for r in group.runs if r.peak_lr == lr and lr in lrs]
        if runs:
            entries.append((min(runs, key=final_loss), color, group.name))
    # exp_power G_t: R^2 0.991 on the paper's sweep vs 0.980 with a constant G, but ~70 s on 2 cores
    fit, records = overlay(ax, entries, "constant" if ctx.small else "exp_power")
    loss_ylim(ax, records)
    finish_loss_axes(ax, f"{model}, T = {steps_label(T)} steps, peak LR {lr:g}: {len(records)} schedules, "
                         f"one bound fitted to all (R$^2$ {fit.r2:.3f})")
    return fig, {"model": model, "total_steps": T, "peak_lr": lr, "curves": records,
                 "fit": fit_numbers(fit, fit_start(T))}
