"""The LR advisor: the bound's closed-form optimal LR applied to real runs (docs/theory.md sections 3 and 5).

    from analysis.advise import transfer_lr, transfer_table, sweep_table
    transfer_lr(1e-3, wsd.multipliers(), linear.multipliers())   # tuned LR of A -> LR for B
    transfer_table(1e-3, run.schedule_config, [cfg_b, cfg_c])    # the same for several schedules
    sweep_table(load_many("outputs/multiruns/*/*"))              # empirical vs predicted optimum per schedule
CLI: python -m analysis advise --help

- transfer: at a fixed horizon, gamma_B = gamma_A * gamma*_B / gamma*_A (gamma* of the peak-1 shapes,
  D = G = 1 unless given): the bound's prediction up to the unknown problem constants, which cancel
  in the ratio.
- extension to a longer horizon: analysis/extend.py.
- sweep: per schedule and horizon (runs grouped by analysis.groups), the empirical optimum of final
  loss vs peak LR (analysis.fit) with its status (bracketed / extrapolated / undetermined, and the
  LRs to run next) next to the theory's prediction, anchored by one constant per horizon.
  Diverged runs (diverged_reason, and make_sweep's rule against the best run) are left out with
  the reason, and an LR that diverged caps the optimum.
Schedules are configs (`_target_` + arguments), built by hydra.utils.instantiate as the trainer does, through
analysis.runs.build_schedule (a schedules class with plain arguments only: a config cannot run code).
Tests: python -m pytest tests/test_analysis_advise.py tests/test_analysis_cli.py
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bound import optimal_lr
from analysis.fit import LRFit, fit_lr_sweep, next_grid_lrs
from analysis.groups import describe, group_runs
from analysis.runs import FINAL_KEY
from analysis.safe_schedule import build_schedule

SCHEDULE_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "schedule"
# Horizon and warmup arguments: a target schedule inherits them from the source (same horizon, same warmup).
HORIZON_KEYS = ("total_steps", "warmup_steps", "warmup_start")


# --- Schedules as configs. --------------------------------------------------------------------------
def build(config: dict):
    """The schedule object of `config`, through the analysis' one safe builder (analysis.runs.build_schedule)."""
    return build_schedule(config)


def shape_of(config: dict) -> np.ndarray:
    """Multipliers of the peak LR for all T updates of the schedule `config`."""
    return build(config).multipliers()


def with_args(config: dict, **changes) -> dict:
    return {**config, **changes}


def group_config(name: str, like: dict | None = None, **args) -> dict:
    """The config of configs/schedule/<name>.yaml with its horizon arguments (total_steps,
    warmup_steps, warmup_start) taken from the schedule config `like`, then `args` applied."""
    from omegaconf import OmegaConf

    path = SCHEDULE_CONFIGS / f"{name}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in SCHEDULE_CONFIGS.glob("*.yaml"))
        raise ValueError(f"no schedule config {path}; choose one of {names}")
    config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    for key in HORIZON_KEYS:
        if like is not None and key in like and key in config:
            config[key] = like[key]
    config.update(args)
    unresolved = [k for k, v in config.items() if isinstance(v, str) and v.startswith("${")]
    if unresolved:
        raise ValueError(f"schedule {name}: give {unresolved} (they come from the trainer config in train.py)")
    return config


def schedule_label(config: dict, base: dict | None = None) -> str:
    """Short name: class and its arguments (those differing from `base` if given), horizon keys left out."""
    name = config["_target_"].rsplit(".", 1)[-1]
    args = {k: v for k, v in config.items() if k != "_target_" and k not in HORIZON_KEYS}
    if base is not None and base.get("_target_") == config["_target_"]:
        args = {k: v for k, v in args.items() if base.get(k) != v}
    return name + "(" + ", ".join(f"{k}={_fmt(v)}" for k, v in args.items()) + ")"


def _fmt(value) -> str:
    """A value as Hydra's override grammar writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return str(value)


def hydra_overrides(config: dict, lr: float | None, extra=()) -> str:
    """`schedule=<group> schedule.k=v ... trainer.max_steps=T optimizer.lr=lr`, ready for train.py
    (without optimizer.lr when lr is None: the caller sweeps it).

    The group is the configs/schedule/*.yaml with the same `_target_` and the fewest differing
    arguments; the horizon arguments go to the trainer keys the group interpolates them from.
    """
    from omegaconf import OmegaConf

    best = None
    for path in sorted(SCHEDULE_CONFIGS.glob("*.yaml")):
        raw = OmegaConf.load(path)
        if raw.get("_target_") != config["_target_"]:
            continue
        overrides = []
        for key, value in config.items():
            if key == "_target_":
                continue
            if key in raw and OmegaConf.is_interpolation(raw, key):
                source = OmegaConf.to_container(raw, resolve=False)[key].strip("${}")
                overrides.append(f"{source}={_fmt(value)}")
            elif key not in raw:                    # not in the group's file: Hydra's append syntax
                overrides.append(f"+schedule.{key}={_fmt(value)}")
            elif raw[key] != value:
                overrides.append(f"schedule.{key}={_fmt(value)}")
        n_diff = sum(o.lstrip("+").startswith("schedule.") for o in overrides)
        if best is None or n_diff < best[0]:
            best = (n_diff, [f"schedule={path.stem}"] + overrides)
    if best is None:
        raise ValueError(f"no configs/schedule/*.yaml builds {config['_target_']}; add one to train with it")
    trainer = sorted(o for o in best[1] if o.startswith("trainer."))
    schedule = [o for o in best[1] if not o.startswith("trainer.")]
    return " ".join(schedule + trainer + ([f"optimizer.lr={lr:.4g}"] if lr is not None else []) + list(extra))


# --- Transfer. --------------------------------------------------------------------------------------
def transfer_lr(lr, source_shape, target_shape, G=1.0, D=1.0) -> float:
    """The peak LR for target_shape from a tuned peak LR of source_shape (arrays, peak 1, same T)."""
    source_shape, target_shape = np.asarray(source_shape), np.asarray(target_shape)
    if source_shape.shape != target_shape.shape:
        raise ValueError(f"source and target shapes must have the same horizon, got {source_shape.shape} and "
                         f"{target_shape.shape}; build both schedules with the same total_steps")
    return float(lr) * optimal_lr(target_shape, G, D)[0] / optimal_lr(source_shape, G, D)[0]


def transfer_table(lr, source_config, target_configs, G=1.0, D=1.0) -> pd.DataFrame:
    """One row per target schedule: theory gamma*, ratio to the source's, transferred LR, overrides
    (lr None: the source LR is not known, so only the theory's ratios; lr NaN, overrides None)."""
    gamma_src, _ = optimal_lr(shape_of(source_config), G, D)
    rows = []
    for config in [source_config, *target_configs]:
        if config["total_steps"] != source_config["total_steps"]:
            raise ValueError(f"target {schedule_label(config)} has total_steps={config['total_steps']}, the "
                             f"source {source_config['total_steps']}; transfer is at a fixed horizon")
        gamma, omega = optimal_lr(shape_of(config), G, D)
        target = lr * gamma / gamma_src if lr is not None else np.nan
        rows.append({"schedule": schedule_label(config), "theory_gamma": gamma, "bound": omega,
                     "ratio": gamma / gamma_src, "lr": target,
                     "overrides": hydra_overrides(config, target) if lr is not None else None, "config": config})
    return pd.DataFrame(rows)


# --- Sweeps: which runs count, the fitted optimum and its status, the theory's prediction. ----------
# Divergence rule, set on the paper's 193 runs (Schaipp et al.): the only diverged one (cos-zero-124m,
# lr 5e-3) ended at 7.55 nats after a best of 4.87; every other run ends within 0.001 nats of its own
# best validation loss, and within 1.18x of the final loss of the best run of the same schedule and
# horizon (1.12x for runs at a larger LR than that best run).
OWN_MARGIN = 0.1        # nats, and OWN_FRACTION of it: a last validation loss this far above the run's
OWN_FRACTION = 0.03     # own best is a blow-up, not the noise of a short run's few validation batches
SWEEP_FACTOR = 1.25     # a run at a larger LR than the sweep's best, with final loss above 1.25x the best's


def diverged_reason(run) -> str | None:
    """Why the run counts as diverged (a non-finite loss, or its validation loss blew up), else None.
    analysis.runs keeps a logged non-finite loss as +inf (NaN there means "not logged")."""
    m = run.metrics
    for column in ("train/loss", "val/loss", FINAL_KEY):
        if column in m:
            bad = m.loc[np.isinf(m[column].to_numpy(dtype=np.float64)), "step"]
            if len(bad):
                return f"non-finite {column} at step {int(bad.iloc[0])}"
    val = m["val/loss"].dropna()
    if len(val) >= 2 and val.iloc[-1] - val.min() > max(OWN_MARGIN, OWN_FRACTION * val.min()):
        return (f"val loss ended at {val.iloc[-1]:.3f}, {val.iloc[-1] - val.min():.2f} nats above "
                f"its best {val.min():.3f}")
    return None


def schedule_key(config: dict, ignore=()) -> str:
    """JSON of the schedule config without the arguments in `ignore`: one key per exact config."""
    return json.dumps({k: v for k, v in config.items() if k not in ignore}, sort_keys=True)


# Config keys that tell models and data sets apart (the paper's flags; train.py's nested config):
# a glob over several of them holds one sweep per model and data set.
SETUP_KEYS = ("n_layer", "n_embd", "dataset", "model.n_layer", "model.d_model", "data.name")


def _has(config, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return False
        config = config[part]
    return True


def sweep_groups(runs, tolerance=0.01):
    """The LR sweeps among runs (analysis.groups.group_runs): one schedule shape within `tolerance`
    (of the peak LR, at every step), one horizon, and one model and data set (SETUP_KEYS that every
    run records)."""
    by = [key for key in SETUP_KEYS if all(_has(run.config, key) for run in runs)]
    return group_runs(runs, tolerance=tolerance, by=by)


@dataclass
class Sweep:
    """One LR sweep (one schedule at one horizon): the runs counted (sorted by LR), those left out
    and why, the fit of final loss vs LR (None below 3 distinct LRs) and its status."""
    name: str                       # the schedule in words (analysis.groups.describe)
    config: dict
    runs: list                      # all of them
    counted: list                   # the runs whose final losses are fitted, sorted by peak LR
    excluded: list                  # [(run name, reason)] for the others
    ceiling: float                  # the smallest LR above the counted ones whose run diverged (inf if none)
    fit: LRFit | None

    @property
    def lrs(self) -> list:
        return [r.peak_lr for r in self.counted]

    @property
    def losses(self) -> list:
        return [r.final_val_loss for r in self.counted]

    @property
    def status(self) -> str:
        return self.fit.status if self.fit is not None else "undetermined"

    @property
    def optimum(self) -> float:
        """The fitted optimal LR when bracketed or extrapolated, else NaN."""
        return self.fit.optimal_lr if self.status in ("bracketed", "extrapolated") else np.nan

    def next_lrs(self, n: int = 2) -> list[float]:
        """LRs to run next: the fit's open side, or around the runs when there are too few to fit."""
        if self.fit is not None:
            return self.fit.next_lrs(n)
        if not self.lrs:     # nothing counted: below the smallest LR that diverged, if any
            return next_grid_lrs([self.ceiling], "below", n) if np.isfinite(self.ceiling) else []
        if len(set(self.lrs)) == 1:     # one LR: one step of a factor-2 grid on each side
            return next_grid_lrs(self.lrs, "below", 1) + next_grid_lrs(self.lrs, "above", 1, self.ceiling)
        side = "above" if self.losses[-1] <= self.losses[0] else "below"
        return next_grid_lrs(self.lrs, side, n, self.ceiling if side == "above" else None)

    def why(self) -> str:
        """What is wrong with the data when the optimum is undetermined ('' otherwise)."""
        if self.status != "undetermined":
            return ""
        n = len(set(self.lrs))
        if self.fit is None:
            return f"final losses at {n} distinct peak LR{'s' * (n != 1)} (a fit needs >= 3)"
        fit, best = self.fit, self.lrs[int(np.argmin(self.losses))]
        edge = (f"the loss is lowest at the {'largest' if best == max(self.lrs) else 'smallest'} swept LR "
                f"({best:g}); " if best in (min(self.lrs), max(self.lrs)) else "")
        if not (fit.A > 0 and fit.B > 0):
            return edge + f"the fit has no minimum (A = {fit.A:.3g}, B = {fit.B:.3g})"
        if fit.optimal_lr >= self.ceiling:
            return edge + (f"the fitted optimum {fit.optimal_lr:.3g} is at or above an LR that diverged "
                           f"({self.ceiling:g})")
        return edge + (f"the fitted optimum {fit.optimal_lr:.3g} lies {fit.factor_outside:.3g}x outside the swept "
                       f"LRs (more than --max-extrapolation {fit.max_extrapolation:g})")


def make_sweep(runs, max_loss=None, max_extrapolation=2.0, name=None) -> Sweep:
    """The Sweep of runs of one schedule and horizon. Left out, with the reason: runs without a peak
    LR or a final loss, diverged runs (diverged_reason; or at a larger LR than the best run with a final
    loss above SWEEP_FACTOR x its), and final losses above max_loss."""
    excluded, diverged, kept = [], [], []
    for run in runs:
        reason = diverged_reason(run)
        if reason is not None:
            reason = "diverged: " + reason
            diverged.append(run)
        elif run.peak_lr is None or not run.peak_lr > 0:
            reason = "no positive peak LR recorded"
        elif not np.isfinite(run.final_val_loss):
            reason = "no final validation loss (unfinished?)"
        elif max_loss is not None and run.final_val_loss > max_loss:
            reason = f"final loss {run.final_val_loss:.3f} > --max-loss {max_loss:g}"
            diverged.append(run)
        if reason is None:
            kept.append(run)
        else:
            excluded.append((run.name, reason))
    if kept:
        best = min(kept, key=lambda r: r.final_val_loss)
        limit = SWEEP_FACTOR * best.final_val_loss
        for run in [r for r in kept if r.peak_lr > best.peak_lr and r.final_val_loss > limit]:
            kept.remove(run)
            diverged.append(run)
            excluded.append((run.name, f"diverged: final loss {run.final_val_loss:.3f} > {SWEEP_FACTOR:g}x that of "
                                       f"the best run ({best.final_val_loss:.3f} at lr {best.peak_lr:g})"))
    kept.sort(key=lambda r: r.peak_lr)
    lrs, losses = [r.peak_lr for r in kept], [r.final_val_loss for r in kept]
    top = max(lrs, default=0.0)
    ceiling = min([r.peak_lr for r in diverged if r.peak_lr is not None and r.peak_lr > top], default=np.inf)
    fit = fit_lr_sweep(lrs, losses, max_extrapolation, ceiling) if len(set(lrs)) >= 3 else None
    config = runs[0].schedule_config
    return Sweep(name=name or describe(config), config=config, runs=list(runs), counted=kept,
                 excluded=excluded, ceiling=ceiling, fit=fit)


def sweeps_of(runs, max_loss=None, tolerance=0.01, max_extrapolation=2.0) -> list[Sweep]:
    """One Sweep per sweep_groups group (schedule shape, horizon, model and data), ordered by horizon."""
    return [make_sweep(g.runs, max_loss, max_extrapolation, name=g.name) for g in sweep_groups(runs, tolerance)]


def sweep_table(runs, reference=None, max_loss=None, tolerance=0.01, G=1.0, D=1.0,
                max_extrapolation=2.0) -> pd.DataFrame:
    """One row per schedule and horizon: runs, status, empirical optimal LR (NaN if undetermined),
    theory gamma*, predicted LR, the Sweep (for plots and next LRs).

    The prediction is gamma*_i times one constant per horizon: the reference schedule's empirical
    optimum over its gamma* (reference = a schedule name as in the schedule column), else the geometric mean of
    empirical/theory over the bracketed optima of that horizon (extrapolated ones if none is
    bracketed); NaN at a horizon without any determined optimum."""
    rows = []
    for sweep in sweeps_of(runs, max_loss, tolerance, max_extrapolation):
        gamma, _ = optimal_lr(shape_of(sweep.config), G, D)
        rows.append({"schedule": sweep.name, "T": int(sweep.config["total_steps"]),
                     "runs": len(sweep.runs), "lrs": sorted({r.peak_lr for r in sweep.runs if r.peak_lr}),
                     "status": sweep.status, "empirical_lr": sweep.optimum, "theory_gamma": gamma,
                     "config": sweep.config, "sweep": sweep})
    table = pd.DataFrame(rows)
    table["predicted_lr"] = np.nan
    label = reference
    if label is not None and label not in set(table["schedule"]):
        raise ValueError(f"reference {label!r} is not one of the schedules {sorted(set(table['schedule']))}")
    for T, rows_T in table.groupby("T"):
        if label is not None:
            anchors = rows_T[(rows_T["schedule"] == label) & np.isfinite(rows_T["empirical_lr"])]
        else:
            anchors = rows_T[rows_T["status"] == "bracketed"]
            anchors = anchors if len(anchors) else rows_T[rows_T["status"] == "extrapolated"]
        if len(anchors):
            scale = float(np.exp(np.mean(np.log(anchors["empirical_lr"] / anchors["theory_gamma"]))))
            table.loc[rows_T.index, "predicted_lr"] = scale * rows_T["theory_gamma"]
    table["predicted/empirical"] = table["predicted_lr"] / table["empirical_lr"]
    return table
