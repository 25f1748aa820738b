"""Writing a study's results: tidy tables (CSV + JSON, one row per run), Markdown tables, plots.

    from scripts.schedule_benchmark.report import write_table, markdown, plot_curves, plot_ranks

Plots use matplotlib's object API (no pyplot; headless) and analysis.plots' save_figure (.png + .pdf)
and category colours, so the benchmark's figures look like the analysis package's.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.plots import category_colors, save_figure
from scripts.schedule_benchmark.problems import PROBLEMS


def write_table(df: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """<out>/<name>.csv and <name>.json (records; NaN -> null). Tuple cells (LR grids) become lists."""
    out.mkdir(parents=True, exist_ok=True)
    df = df.apply(lambda col: col.map(lambda v: list(v) if isinstance(v, tuple) else v))
    csv, js = out / f"{name}.csv", out / f"{name}.json"
    df.to_csv(csv, index=False)
    df.to_json(js, orient="records", indent=1)
    return [csv, js]


def _cell(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, tuple):
        return " ".join(f"{x:g}" for x in v)
    return str(v)


def markdown(df: pd.DataFrame, index: bool = False) -> str:
    """A GitHub Markdown table (floats to 4 significant digits). pandas.to_markdown needs tabulate,
    which the project does not install; this is the few lines it would do for us."""
    if index:
        df = df.reset_index()
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def mean_curves(results, ranked: pd.DataFrame) -> dict:
    """(problem, optimizer, schedule) -> (steps, mean over seeds of the tuned runs' metric curves):
    the train objective's gap to f* on convex problems, the validation loss otherwise."""
    tuned = {(r.problem, r.optimizer, r.schedule, r.budget): r.lr for r in ranked.itertuples()}
    picked = {}
    for res in results:
        row = res.row
        key = (row["problem"], row["optimizer"], row["schedule"], row["budget"])
        if tuned.get(key) != row["lr"] or row["diverged"]:
            continue
        curve = np.asarray(res.curve)
        y = curve[:, 1] - (row["final_train"] - row["gap"]) if row["metric_name"] == "final_train" else curve[:, 2]
        picked.setdefault(key[:3], []).append((curve[:, 0], y))
    return {k: (v[0][0], np.mean([y for _, y in v], axis=0)) for k, v in picked.items()
            if all(len(y) == len(v[0][1]) for _, y in v)}


def plot_curves(results, ranked: pd.DataFrame, path: Path, title: str) -> list[Path]:
    """One panel per (problem, optimizer): the tuned runs' mean curve of every schedule, log y."""
    curves = mean_curves(results, ranked)
    problems, optimizers = sorted({k[0] for k in curves}), sorted({k[1] for k in curves})
    schedules = sorted({k[2] for k in curves})
    colors = dict(zip(schedules, category_colors(len(schedules))))
    fig = Figure(figsize=(4.2 * len(optimizers), 3.0 * len(problems)), layout="constrained")
    axes = fig.subplots(len(problems), len(optimizers), squeeze=False)
    for (i, p), (j, o) in ((a, b) for a in enumerate(problems) for b in enumerate(optimizers)):
        ax = axes[i][j]
        for s in schedules:
            if (p, o, s) in curves:
                x, y = curves[(p, o, s)]
                ax.plot(x, np.maximum(y, 1e-12), label=s, color=colors[s], lw=1.2)
        convex = PROBLEMS[p].convex
        ax.set_yscale("log")
        ax.set_title(f"{p} / {o}", fontsize=9)
        ax.set_xlabel("update")
        ax.set_ylabel("train objective - f*" if convex else "val loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_shapes(shapes: dict, path: Path, title: str) -> list[Path]:
    """Multiplier curves: {label: array}, e.g. the refined schedules beside linear decay."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    for (label, y), c in zip(shapes.items(), category_colors(len(shapes))):
        ax.plot(np.arange(len(y)), y, label=label, color=c, lw=1.2)
    ax.set_xlabel("update")
    ax.set_ylabel("multiplier of the peak LR")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_ranks(ranked: pd.DataFrame, path: Path, title: str) -> list[Path]:
    """Mean rank over problems (1 = best) against the budget, one line per schedule, per optimizer."""
    optimizers = sorted(ranked["optimizer"].unique())
    schedules = sorted(ranked["schedule"].unique())
    colors = dict(zip(schedules, category_colors(len(schedules))))
    fig = Figure(figsize=(5.0 * len(optimizers), 3.8), layout="constrained")
    axes = fig.subplots(1, len(optimizers), squeeze=False)[0]
    for ax, o in zip(axes, optimizers):
        mean = ranked[ranked.optimizer == o].groupby(["schedule", "budget"])["rank"].mean()
        for s in schedules:
            ax.plot(mean.loc[s].index * 100, mean.loc[s].values, marker="o", label=s, color=colors[s], lw=1.2)
        ax.set_xscale("log")
        budgets = sorted(ranked["budget"].unique() * 100)
        ax.set_xticks(budgets, labels=[f"{b:g}%" for b in budgets], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_xlabel("budget (% of the full run)")
        ax.set_ylabel("mean rank over problems (1 = best)")
        ax.set_title(o, fontsize=9)
        ax.invert_yaxis()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
