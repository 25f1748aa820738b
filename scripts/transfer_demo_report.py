"""The advisor half of `python -m scripts.transfer_demo`: read the grid's runs, fit final loss vs peak
LR per schedule, transfer the WSD optimum to linear decay and constant LR with the bound's closed
form, then print, draw and write the numbers (transfer_demo.png/.pdf/.json under --out).

    from scripts.transfer_demo_report import report
    report(jobs, Path("outputs/transfer_demo"), settings, wall_s)   # after scripts.transfer_demo trained the grid

The fit is analysis.fit.fit_lr_sweep (A/lr + B lr + C, optimum sqrt(A/B)); the transfer is
analysis.advise.transfer_lr on the multipliers of the runs' own recorded schedules (re-instantiated
from their config.yaml), so the warmup and horizon the trainer used are the ones the theory sees.
An undetermined optimum (no upturn on one side of the grid) is reported as such, never as a value.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.advise import shape_of, transfer_lr
from analysis.fit import fit_lr_sweep
from analysis.plots import save_figure
from analysis.runs import load as load_run
from scripts.figures.common import to_jsonable

SOURCE = "wsd"                                  # the schedule tuned by the sweep
TARGETS = ("linear", "constant")                # the schedules the tuned LR is transferred to; linear is the goal
LABELS = {"constant": "constant LR", "wsd": "WSD, 20% linear cooldown", "linear": "linear decay"}
COLORS = {"constant": "tab:blue", "wsd": "tab:orange", "linear": "tab:green"}


def fit_status(fit) -> str:
    """bracketed / extrapolated / undetermined (analysis.fit.LRFit.status); undetermined without a fit."""
    return "undetermined" if fit is None else fit.status


def collect(jobs, runs_dir: Path) -> tuple[pd.DataFrame, dict]:
    """One row per run (schedule, lr, final_val_loss; NaN for a diverged run) and the loaded runs by name."""
    rows, runs = [], {}
    for job in jobs:
        run_dir = runs_dir / job.name
        run = None if (run_dir / "diverged.txt").exists() else load_run(run_dir)
        runs[job.name] = run
        rows.append({"schedule": job.schedule, "lr": job.lr, "run": job.name,
                     "final_val_loss": run.final_val_loss if run is not None else math.nan})
    return pd.DataFrame(rows), runs


def fit_schedules(table: pd.DataFrame) -> dict:
    """LRFit per schedule over its finite final losses (None with fewer than 3 of them); the smallest
    diverged LR of the schedule, if any, is the fit's ceiling (no optimum at or above it)."""
    fits = {}
    for schedule, part in table.groupby("schedule"):
        ok = part[np.isfinite(part["final_val_loss"])]
        diverged = part.loc[~np.isfinite(part["final_val_loss"]), "lr"]
        fits[schedule] = (fit_lr_sweep(ok["lr"], ok["final_val_loss"], ceiling=diverged.min() if len(diverged)
                                       else np.inf) if ok["lr"].nunique() >= 3 else None)
    return fits


def leave_one_out(fit) -> tuple[float, float] | None:
    """(min, max) of the optimum over the refits that each leave one LR out (with >= 4 LRs; undetermined
    refits are skipped): how much the fitted optimum rests on any single run."""
    if fit is None or fit.lrs.size < 4:
        return None
    refits = [fit_lr_sweep(np.delete(fit.lrs, i), np.delete(fit.losses, i), ceiling=fit.ceiling)
              for i in range(fit.lrs.size)]
    optima = [r.optimal_lr for r in refits if r.status != "undetermined"]
    return (min(optima), max(optima)) if optima else None


def transfer(fits: dict, configs: dict) -> dict:
    """Per target: the bound's factor gamma*_target / gamma*_source, the predicted and measured optima
    and, with >= 4 LRs, their leave-one-LR-out ranges."""
    source_fit, source_status = fits.get(SOURCE), fit_status(fits.get(SOURCE))
    source_range = leave_one_out(source_fit) if source_status != "undetermined" else None
    out = {}
    for target in TARGETS:
        factor = transfer_lr(1.0, shape_of(configs[SOURCE]), shape_of(configs[target]))
        target_fit = fits.get(target)
        predicted = factor * source_fit.optimal_lr if source_status != "undetermined" else None
        measured = target_fit.optimal_lr if fit_status(target_fit) != "undetermined" else None
        measured_range = leave_one_out(target_fit) if measured else None
        ratio_range = None
        if source_range and measured_range:
            ratio_range = (factor * source_range[0] / measured_range[1], factor * source_range[1] / measured_range[0])
        out[target] = {"theory_factor": factor, "predicted_lr": predicted, "measured_lr": measured,
                       "measured_status": fit_status(target_fit),
                       "predicted/measured": predicted / measured if predicted and measured else None,
                       "measured_factor": measured / source_fit.optimal_lr if predicted and measured else None,
                       "predicted_range": [factor * x for x in source_range] if source_range else None,
                       "measured_range": measured_range, "ratio_range": ratio_range}
    return out


def print_report(table: pd.DataFrame, fits: dict, transfers: dict, settings: dict) -> None:
    wide = table.pivot(index="lr", columns="schedule", values="final_val_loss")[["constant", "wsd", "linear"]]
    wide = wide.rename(columns={"wsd": f"WSD-{settings['cooldown_fraction']:g}"})
    wide.index = [f"{lr:.3g}" for lr in wide.index]
    wide.index.name = "peak LR"
    print(f"\nfinal validation loss (nats, whole validation split) after T = {settings['total_steps']} steps:")
    print(wide.to_string(float_format=lambda x: f"{x:.4f}", na_rep="diverged"))
    print("\nfitted optimum of final loss = A/lr + B lr + C per schedule:")
    for schedule, fit in fits.items():
        status = fit_status(fit)
        value = f"{fit.optimal_lr:.3g}" if status != "undetermined" else "-"
        r2 = f", R^2 {fit.r2:.3f}" if fit is not None else ""
        loo = leave_one_out(fit) if status != "undetermined" else None
        r2 += f", leave-one-LR-out {loo[0]:.3g}-{loo[1]:.3g}" if loo else ""
        after = f"; add {','.join(f'{x:.3g}' for x in fit.next_lrs())} to --lrs" if fit and fit.next_lrs() else ""
        print(f"  {LABELS[schedule]:<26} {value:>9}  ({status}{r2}{after})")
    source_status = fit_status(fits.get(SOURCE))
    for target, t in transfers.items():
        print(f"\ntransfer {LABELS[SOURCE]} -> {LABELS[target]} (bound, same horizon): "
              f"gamma*_{target} / gamma*_{SOURCE} = {t['theory_factor']:.3f}")
        if t["predicted_lr"] is None:
            print(f"  no prediction: the {LABELS[SOURCE]} optimum is {source_status}; widen --lrs on its open side")
            continue
        measured = f"{t['measured_lr']:.3g} ({t['measured_status']})" if t["measured_lr"] else \
            f"undetermined (this grid does not pin down the {LABELS[target]} optimum; see the LRs to add above)"
        print(f"  predicted optimum {t['predicted_lr']:.3g}   measured optimum {measured}")
        if t["predicted/measured"]:
            spread = " ({:.2f}-{:.2f} combining leave-one-LR-out fits)".format(*t["ratio_range"]) \
                if t["ratio_range"] else ""
            print(f"  predicted / measured = {t['predicted/measured']:.3f}{spread}")
            print(f"  measured optimum {target} / {SOURCE} = {t['measured_factor']:.3f} "
                  f"(the bound: {t['theory_factor']:.3f})")


def plot(table: pd.DataFrame, fits: dict, transfers: dict, runs: dict, settings: dict, path: Path) -> list[Path]:
    """(a) validation loss curves at the best WSD LR; (b) final loss vs peak LR with fits and optima."""
    fig = Figure(figsize=(11, 4.2))
    ax_curve, ax_lr = fig.subplots(1, 2)
    wsd = table[table["schedule"] == SOURCE]
    best_lr = float(wsd.loc[wsd["final_val_loss"].idxmin(), "lr"]) if wsd["final_val_loss"].notna().any() else None
    for schedule in ("constant", "wsd", "linear"):
        color, label = COLORS[schedule], LABELS[schedule]
        row = table[(table["schedule"] == schedule) & (table["lr"] == best_lr)]
        run = runs.get(row["run"].iloc[0]) if len(row) else None
        if run is not None:
            val = run.metrics.dropna(subset=["val/loss"])
            ax_curve.plot(val["step"], val["val/loss"], "o-", ms=3, color=color, label=label)
        part = table[(table["schedule"] == schedule) & np.isfinite(table["final_val_loss"])]
        ax_lr.plot(part["lr"], part["final_val_loss"], "o", color=color, label=label)
        fit, status = fits.get(schedule), fit_status(fits.get(schedule))
        if fit is None:
            continue
        grid = np.geomspace(table["lr"].min() / 1.5, table["lr"].max() * 1.5, 200)
        ax_lr.plot(grid, fit.predict(grid), "-", lw=1, color=color, alpha=0.7)
        if status != "undetermined":
            ax_lr.plot(fit.optimal_lr, fit.predict(fit.optimal_lr), "*", ms=13, color=color,
                       mfc=color if status == "bracketed" else "white",
                       label=f"optimum {fit.optimal_lr:.3g} ({status})")
    predicted = transfers["linear"]["predicted_lr"]
    if predicted is not None:
        ax_lr.axvline(predicted, color="black", ls="--", lw=1.2,
                      label=f"linear optimum predicted from WSD-0.2: {predicted:.3g}")
    if best_lr is not None:
        ax_curve.set_title(f"validation loss at peak LR {best_lr:.3g} (best WSD run)", fontsize=9)
    ax_curve.set_xlabel("step")
    ax_curve.set_ylabel("validation loss (nats)")
    lo = np.nanmin(table["final_val_loss"]) if table["final_val_loss"].notna().any() else None
    if lo is not None:   # the warmup's first points would squash the end of the curves
        ax_curve.set_ylim(lo - 0.05, lo + 1.0)
    ax_lr.set_xscale("log")
    ax_lr.set_xlabel("peak LR")
    ax_lr.set_ylabel("final validation loss (nats)")
    ax_lr.set_title(f"final loss vs peak LR, T = {settings['total_steps']} steps; fits A/lr + B lr + C", fontsize=9)
    for ax in (ax_curve, ax_lr):
        ax.grid(alpha=0.3)
    ax_curve.legend(fontsize=7, loc="upper right")
    ax_lr.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)   # below: the fits fill the axes
    fig.suptitle(f"{settings['model']} on the embedded corpus, {settings['tokens_per_step']} tokens/step",
                 fontsize=10)
    return save_figure(fig, path)


def report(jobs, out: Path, settings: dict, wall_s: float, reused: int = 0) -> dict:
    """Fit, transfer, print, plot and write <out>/transfer_demo.json; returns the JSON's content."""
    table, runs = collect(jobs, out / "runs")
    configs = {job.schedule: runs[job.name].schedule_config for job in jobs if runs[job.name] is not None}
    if set(configs) != {"constant", "wsd", "linear"}:
        raise ValueError(f"every run of some schedule diverged (have {sorted(configs)}); lower --lrs")
    any_run = next(r for r in runs.values() if r is not None)
    model, trainer = any_run.config["model"], any_run.config["trainer"]
    settings = {**settings, "total_steps": int(configs["wsd"]["total_steps"]),
                "warmup_steps": int(configs["wsd"]["warmup_steps"]),
                "tokens_per_step": int(trainer["batch_size"]) * int(trainer["seq_len"]),
                "model": f"Llama L={model['n_layer']} d={model['d_model']}"}
    fits = fit_schedules(table)
    transfers = transfer(fits, configs)
    print_report(table, fits, transfers, settings)
    figures = plot(table, fits, transfers, runs, settings, out / "transfer_demo")
    result = {"settings": settings, "wall_s": wall_s, "reused_runs": reused, "schedules": configs,
              "runs": table.to_dict(orient="records"),
              "fits": {s: None if f is None else {"A": f.A, "B": f.B, "C": f.C, "optimal_lr": f.optimal_lr,
                                                  "status": fit_status(f), "r2": f.r2,
                                                  "leave_one_out": leave_one_out(f) if fit_status(f) != "undetermined"
                                                  else None} for s, f in fits.items()},
              "transfer_from": SOURCE, "transfer": transfers}
    result = to_jsonable(result)
    (out / "transfer_demo.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {figures[0].with_suffix('')}.png/.pdf, {out / 'transfer_demo.json'}\n"
          f"{wall_s / 60:.1f} min; {reused} of {len(jobs)} runs reused from an earlier call")
    return result
