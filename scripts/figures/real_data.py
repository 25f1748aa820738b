"""Figures of Schaipp et al. (ICML 2025) from real training logs: Figs. 1a, 10, 12 and 21.

    python -m scripts.reproduce --figure fig1a --figure fig12 --figure fig21     # the shipped paper logs
    python -m scripts.reproduce --figure fig12 --logs outputs/multiruns/2026-11-24_10-00-00   # your sweep
    python -m pytest tests/test_reproduce_real.py

fig1a  validation loss of two schedules at several horizons (the paper: 210M, WSD with 20% cooldown at
       peak 5e-4 vs cosine to 10% at peak 1e-3, T = 22,222 / 33,333 / 44,444), with one bound fitted
       to all curves; from any logs that hold one schedule at >= 2 horizons.
fig10  continued training (the paper: 50k -> 100k / 200k steps, the same LR vs the theory's rho); needs
       runs extended from a finished run to a longer horizon, which the shipped logs do not hold.
fig12, fig21  the LR sweep (scripts/figures/real_sweep.py).
Runs are read by analysis.runs, grouped with analysis.groups and named with analysis.groups.describe.
"""
from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.groups import describe
from analysis.plots import category_colors
from scripts.figures.common import FigureSpec
from scripts.figures.real_runs import (by_model, final_loss, finish_loss_axes, fit_numbers, fit_start,
                                       load_runs, loss_ylim, model_label, overlay, shade, steps_label)
from scripts.figures.real_sweep import fig12, fig21

EXTENSION_LOGS = ("the paper's continued-training logs (fabian-sp/lr-scheduling, data/horizon_transfer/"
                  "extend-50k_*: 124M and 210M, WSD and two-stage WSD from 50k to 100k/200k steps, with "
                  "their 50k parents), or this project's runs started with trainer.init_from=<a checkpoint> "
                  "and a longer trainer.max_steps than the parent's")


# The G_t model of the joint bound fits here: a constant G. On Fig. 1a's six 210M curves exp_power
# (analysis.fit) reached the same R^2 (0.968) in 30-70 s instead of 1 s.
G_MODEL = "constant"
MAX_SCHEDULES = 3     # Fig. 1a: schedules drawn at most (the paper draws 2)


# ---------------------------------------------------------------------------------------------------
# Fig. 1a: schedules at several horizons.
# ---------------------------------------------------------------------------------------------------
def horizon_families(runs) -> dict[str, dict[int, object]]:
    """{schedule in words: {horizon: run}} for the schedules logged at >= 2 horizons; at a horizon
    with several peak LRs, the run with the lowest final loss (the tuned one) stands for it."""
    families: dict[str, dict[int, object]] = {}
    for run in runs:
        if run.schedule_config is None or run.peak_lr is None:
            continue
        horizons = families.setdefault(describe(run.schedule_config), {})
        T = run.total_steps
        if T not in horizons or final_loss(run) < final_loss(horizons[T]):
            horizons[T] = run
    return {name: dict(sorted(h.items())) for name, h in families.items() if len(h) >= 2}


def fig1a(ctx):
    runs, _ = load_runs(ctx.logs)
    candidates = {model: horizon_families(members) for model, members in by_model(runs).items()}
    candidates = {model: fam for model, fam in candidates.items() if fam}
    if not candidates:
        seen = sorted({f"{describe(r.schedule_config)} at T = {r.total_steps}" for r in runs if r.schedule_config})
        raise ValueError(f"fig1a needs runs of one schedule at >= 2 horizons (trainer.max_steps), e.g. "
                         f"`python train.py -m trainer.max_steps=2000,3000,4000 schedule=wsd,cosine`; "
                         f"{ctx.logs} has only: {seen[:8]}")
    # The model with the most runs at several horizons (a logs folder may hold several models), and of
    # its schedules the MAX_SCHEDULES logged at the most horizons (more would make the figure unreadable).
    model, families = max(candidates.items(), key=lambda kv: sum(len(h) for h in kv[1].values()))
    shown = sorted(families, key=lambda name: -len(families[name]))[:MAX_SCHEDULES]
    not_shown = [name for name in families if name not in shown]
    families = {name: families[name] for name in families if name in shown}
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.add_subplot()
    entries, legend = [], []
    for (name, horizons), color in zip(families.items(), category_colors(len(families))):
        for i, (T, run) in enumerate(horizons.items()):
            # shorter horizons lighter: one colour per schedule, one legend entry for all its horizons
            tone = shade(color, -0.55 * (len(horizons) - 1 - i) / max(len(horizons) - 1, 1))
            entries.append((run, tone, f"{name}, lr {run.peak_lr:g}, T = {steps_label(T)}"))
        lrs = "/".join(f"{lr:g}" for lr in dict.fromkeys(r.peak_lr for r in horizons.values()))
        legend.append(Line2D([], [], color=color, lw=1.8,
                             label=f"{name}, lr {lrs}, T = {', '.join(steps_label(T) for T in horizons)}"))
    fit, records = overlay(ax, entries, G_MODEL)
    loss_ylim(ax, records)
    finish_loss_axes(ax, f"{model}: validation loss at several horizons (lighter: shorter), "
                         f"one bound fitted to all (R$^2$ {fit.r2:.3f})", legend)
    finals = {name: {str(T): final_loss(run) for T, run in horizons.items()} for name, horizons in families.items()}
    return fig, {"model": model, "curves": records, "fit": fit_numbers(fit, fit_start(max(r["total_steps"] for r in records))),
                 "final_val_loss": finals, "not_shown": not_shown}


# ---------------------------------------------------------------------------------------------------
# Fig. 10: continued training.
# ---------------------------------------------------------------------------------------------------
def extensions(runs) -> dict[str, list]:
    """{parent run name: its extensions}: runs branched from a finished parent (one whose schedule had
    decayed by its horizon) with a longer horizon than it. A branch of a constant-LR run (the paper's
    cooldown runs) is not an extension: the constant run had no horizon of its own to extend."""
    found: dict[str, list] = {}
    for run in runs:
        parent = run.parent
        if parent is None or parent.schedule_config is None or run.total_steps <= parent.total_steps:
            continue
        if parent.schedule().multipliers()[-1] < 0.99:
            found.setdefault(parent.name, [parent]).append(run)
    return found


def fig10(ctx):
    runs, skipped = load_runs(ctx.logs)
    found = extensions(runs)
    if not found:
        note = f" ({len(skipped)} logs there could not be read, e.g. {skipped[0]})" if skipped else ""
        raise ValueError(f"fig10 needs continued-training runs, none in {ctx.logs}{note}: {EXTENSION_LOGS}")
    # The parent with the most extensions; its own curve, then each extension stitched onto it.
    parent, *children = max(found.values(), key=len)
    names = list(dict.fromkeys(describe(r.schedule_config) for r in [parent, *children]))
    colors = dict(zip(names, category_colors(len(names))))
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.add_subplot()
    entries = []
    for run in sorted([parent, *children], key=lambda r: (r.total_steps, describe(r.schedule_config))):
        name = describe(run.schedule_config)
        # the same schedule at a shorter horizon (the parent) in a lighter tone of its colour
        longer = sum(r.total_steps > run.total_steps for r in [parent, *children] if describe(r.schedule_config) == name)
        entries.append((run, shade(colors[name], -0.5 * min(longer, 1)),
                        f"{name}, lr {run.peak_lr:g}, T = {steps_label(run.total_steps)}"))
    fit, records = overlay(ax, entries, G_MODEL)
    loss_ylim(ax, records)
    ax.axvline(parent.total_steps, color="0.5", lw=0.8, ls=":")
    finish_loss_axes(ax, f"{model_label(parent)}: continued training from "
                         f"T = {steps_label(parent.total_steps)} (dotted), bound fitted jointly")
    # The paper's comparison: at each new horizon, each schedule's final loss minus the same-schedule
    # ("same LR") continuation's, negative where the theory's schedule helped.
    same = describe(parent.schedule_config)
    gains = {}
    for T in sorted({r.total_steps for r in children}):
        at_T = {describe(r.schedule_config): final_loss(r) for r in children if r.total_steps == T}
        if same in at_T:
            gains[str(T)] = {name: loss - at_T[same] for name, loss in at_T.items() if name != same}
    return fig, {"parent": parent.name, "curves": records, "fit": fit_numbers(fit, fit_start(max(r["total_steps"]
                 for r in records))), "minus_same_lr": gains}


FIGURES = [
    FigureSpec("fig1a", "validation loss of WSD and cosine at several horizons (210M), with the fitted bound",
               fig1a, needs_logs=True),
    FigureSpec("fig10", "continued training to a longer horizon: same LR vs the theory's schedule "
                        "(needs continued-training logs)", fig10, needs_logs=True),
    FigureSpec("fig12", "final loss vs peak LR per cooldown fraction (124M, 50k steps): fitted optima vs the LR "
                        "transferred by the theory", fig12, needs_logs=True),
    FigureSpec("fig21", "loss curves of the 124M cooldown sweep at one peak LR (1e-3) over one bound fitted to all",
               fig21, needs_logs=True),
]
