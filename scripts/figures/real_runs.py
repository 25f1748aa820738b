"""What the real-data figures share: reading the runs of a logs folder, naming their model, and
overlaying measured loss curves on one jointly fitted bound.

    from scripts.figures.real_runs import load_runs, by_model, overlay
    runs, skipped = load_runs(Path("tests/data/paper_logs"))   # paper JSON logs and run directories
    for model, members in by_model(runs).items(): ...
    fit, records = overlay(ax, [(run, color), ...], g_model="constant")

Runs are read one by one through analysis.runs.load, so that one log the reader does not know (e.g.
a paper run with an unknown scheduler) is skipped with a warning instead of failing the figure.
Used by scripts/figures/real_data.py and real_sweep.py; tested by tests/test_reproduce_real.py.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D

from analysis.fit import fit_bound
from analysis.report import curve_of
from analysis.runs import load
from training.rundir import METRICS_FILE

MAX_POINTS = 250          # points per curve kept in a figure's JSON (a 50k-step run logs 250 val losses)


# ---------------------------------------------------------------------------------------------------
# Reading.
# ---------------------------------------------------------------------------------------------------
def run_sources(logs: Path) -> list[Path]:
    """The paper's JSON logs directly in `logs`, and every run directory (one with metrics.jsonl) below
    it, at any depth: a multirun folder <date>/<time>/<job>/ or a single run directory."""
    logs = Path(logs)
    if not logs.is_dir():
        raise ValueError(f"--logs {logs} is not a directory; point it at the paper's JSON logs or at run directories")
    jsons = sorted(logs.glob("*.json"))
    run_dirs = sorted({p.parent for p in logs.rglob(METRICS_FILE)})
    return jsons + run_dirs


def load_runs(logs: Path):
    """(runs, skipped): every readable run of `logs`; skipped lists 'name: why' for the others."""
    runs, skipped = [], []
    for source in run_sources(logs):
        try:
            runs.append(load(source))
        except (ValueError, KeyError, OSError) as error:
            skipped.append(f"{source.name}: {error}")
    if skipped:
        warnings.warn(f"{logs}: skipped {len(skipped)} logs the run reader cannot read, e.g. {skipped[0]}")
    if not runs:
        raise ValueError(f"no runs in {logs}: expected the paper's *.json logs or run directories with "
                         f"{METRICS_FILE} and config.yaml (e.g. a `python train.py -m ...` multirun folder)")
    return runs, skipped


def model_label(run) -> str:
    """The model and data in words, from the recorded config: 'Llama 12x768, slimpajama'."""
    config = run.config
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    layers = model.get("n_layer", config.get("n_layer"))
    width = model.get("d_model", config.get("n_embd"))
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    dataset = data.get("name", config.get("dataset"))
    text = f"Llama {layers}x{width}" if layers and width else "model not recorded"
    return text + (f", {dataset}" if dataset else "")


def by_model(runs) -> dict[str, list]:
    """{model_label: runs}: runs of different models never share a sweep or a fit."""
    models: dict[str, list] = {}
    for run in runs:
        models.setdefault(model_label(run), []).append(run)
    return models


def final_loss(run) -> float:
    """Final validation loss: the full validation split at the end, else the last logged val loss."""
    if math.isfinite(run.final_val_loss):
        return run.final_val_loss
    val = run.metrics["val/loss"].dropna()
    return float(val.iloc[-1]) if len(val) else math.nan


def steps_label(steps: int) -> str:
    """50000 -> '50k', 22222 -> '22,222'."""
    return f"{steps // 1000}k" if steps >= 1000 and steps % 1000 == 0 else f"{steps:,}"


# ---------------------------------------------------------------------------------------------------
# Drawing.
# ---------------------------------------------------------------------------------------------------
def shade(color, amount: float):
    """`color` mixed with black (amount > 0: darker) or with white (amount < 0: lighter)."""
    rgb = np.array(to_rgb(color))
    return tuple(rgb * (1 - amount)) if amount >= 0 else tuple(rgb + (1 - rgb) * -amount)


def style_handles(measured="measured (validation loss)", bound="fitted bound C + M $\\Omega_t$"):
    """Legend entries for the two line styles: solid = measured, dashed dark = the bound."""
    return [Line2D([], [], color="0.3", lw=1.8, label=measured),
            Line2D([], [], color="black", lw=1.4, ls="--", label=bound)]


def finish_loss_axes(ax, title: str, legend=None):
    """Axis labels, title, grid and a legend (`legend` handles, else the axes' own) followed by the
    measured / fitted-bound style entries, as every real-data loss-curve panel has them."""
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    handles = legend if legend is not None else ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles + style_handles(), fontsize=7, loc="upper right")


def subsample(steps, *values, n: int = MAX_POINTS):
    """At most n points, evenly spaced in index, the last one always kept."""
    steps = np.asarray(steps)
    keep = np.unique(np.r_[np.linspace(0, steps.size - 1, min(n, steps.size)).astype(int), steps.size - 1]) \
        if steps.size else np.zeros(0, dtype=int)
    return [steps[keep]] + [np.asarray(v)[keep] for v in values]


def fit_start(horizon: int) -> int:
    """First step fitted: 10% of the (longest) run. The first steps' fast drop, warmup included, is
    outside what the bound describes; fitted from step 1000 instead, the joint fit of the 124M sweep
    at one LR has R^2 0.92 instead of 0.98 (constant G_t), its misfit all in the early steps."""
    return int(max(1, horizon // 10))


def overlay(ax, entries, g_model: str):
    """Measured val-loss curves (solid) and one bound fitted to all of them jointly (dashed, darker).

    entries: [(run, color, label)]. Returns (BoundFit, records), a record per curve with the plotted
    numbers: steps, loss, bound (at the same steps, from the fit's first step on) and the curve's R^2."""
    curves = []
    for run, _, label in entries:
        curve = curve_of(run)
        if curve is None:
            raise ValueError(f"run {run.name!r} ({run.source}) logged fewer than 4 validation losses; "
                             "the bound cannot be fitted to it")
        curves.append(curve)
    start = fit_start(max(c.lr.size for c in curves))
    fit = fit_bound(curves, g_model=g_model, min_step=start)
    records = []
    for (run, color, label), curve in zip(entries, curves):
        ax.plot(curve.steps, curve.loss, color=color, lw=1.6, label=label)
        fitted = curve.steps >= start
        steps, loss = curve.steps[fitted], curve.loss[fitted]
        predicted = fit.predict(curve.lr, steps)
        ax.plot(steps, predicted, color=shade(color, 0.45), lw=1.1, ls="--")
        residual = loss - predicted
        spread = float(((loss - loss.mean()) ** 2).sum())
        r2 = 1.0 - float(residual @ residual) / spread if spread > 0 else math.nan
        kept_steps, kept_loss = subsample(curve.steps, curve.loss)
        bound_steps, bound = subsample(steps, predicted)
        records.append({"label": label, "run": run.name, "peak_lr": run.peak_lr, "total_steps": int(curve.lr.size),
                        "steps": kept_steps, "loss": kept_loss, "bound_steps": bound_steps, "bound": bound,
                        "r2": r2, "final_val_loss": final_loss(run)})
    return fit, records


def fit_numbers(fit, start_step: int) -> dict:
    return {"C": fit.C, "M": fit.M, "g_model": fit.g_model, "theta": list(fit.theta), "r2": fit.r2,
            "rmse": fit.rmse, "first_step": start_step}


def loss_ylim(ax, records):
    """Zoom onto the fitted part of the curves: from just below the lowest loss to the 90th
    percentile of the fitted region (the first steps' loss of ~10 nats would flatten everything)."""
    fitted = np.concatenate([r["loss"][r["steps"] >= r["bound_steps"][0]] for r in records if len(r["bound_steps"])])
    low, high = float(fitted.min()), float(np.percentile(fitted, 90))
    pad = 0.05 * (high - low if high > low else 1.0)
    ax.set_ylim(low - pad, high + pad)
