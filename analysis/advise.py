"""The LR advisor: the bound's closed-form optimal LR applied to real runs (THEORY.md section 2).

    from analysis.advise import transfer_lr, transfer_table, sweep_table
    transfer_lr(1e-3, wsd.multipliers(), linear.multipliers())   # tuned LR of A -> LR for B
    transfer_table(1e-3, run.schedule_config, [cfg_b, cfg_c])    # the same for several schedules
    sweep_table(load_many("outputs/multiruns/*/*"))              # empirical vs predicted optimum per schedule
CLI: python -m analysis advise --help

- transfer: at a fixed horizon, gamma_B = gamma_A * gamma*_B / gamma*_A (gamma* of the peak-1 shapes,
  D = G = 1 unless given): the bound's prediction up to the unknown problem constants, which cancel
  in the ratio.
- extension to a longer horizon: analysis/extend.py.
- sweep: per schedule, the empirical optimum of final loss vs peak LR (analysis.fit) next to the
  theory's prediction, anchored by one constant (a reference schedule, or the geometric mean).
Schedules are configs (`_target_` + arguments), built by hydra.utils.instantiate, as the trainer does.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bound import optimal_lr
from analysis.fit import fit_lr_sweep

SCHEDULE_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "schedule"
# Horizon and warmup arguments: a target schedule inherits them from the source (same horizon, same warmup).
HORIZON_KEYS = ("total_steps", "warmup_steps", "warmup_start")


# ---------------------------------------------------------------------------------------------------
# Schedules as configs.
# ---------------------------------------------------------------------------------------------------
def build(config: dict):
    from hydra.utils import instantiate

    return instantiate(dict(config))


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


def hydra_overrides(config: dict, lr: float, extra=()) -> str:
    """`schedule=<group> schedule.k=v ... trainer.max_steps=T optimizer.lr=lr`, ready for train.py.

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
    return " ".join(schedule + trainer + [f"optimizer.lr={lr:.4g}", *extra])


# ---------------------------------------------------------------------------------------------------
# Transfer.
# ---------------------------------------------------------------------------------------------------
def transfer_lr(lr, source_shape, target_shape, G=1.0, D=1.0) -> float:
    """The peak LR for target_shape from a tuned peak LR of source_shape (arrays, peak 1, same T)."""
    source_shape, target_shape = np.asarray(source_shape), np.asarray(target_shape)
    if source_shape.shape != target_shape.shape:
        raise ValueError(f"source and target shapes must have the same horizon, got {source_shape.shape} and "
                         f"{target_shape.shape}; build both schedules with the same total_steps")
    return float(lr) * optimal_lr(target_shape, G, D)[0] / optimal_lr(source_shape, G, D)[0]


def transfer_table(lr, source_config, target_configs, G=1.0, D=1.0) -> pd.DataFrame:
    """One row per target schedule: theory gamma*, ratio to the source's, transferred LR, overrides."""
    gamma_src, _ = optimal_lr(shape_of(source_config), G, D)
    rows = []
    for config in [source_config, *target_configs]:
        if config["total_steps"] != source_config["total_steps"]:
            raise ValueError(f"target {schedule_label(config)} has total_steps={config['total_steps']}, the "
                             f"source {source_config['total_steps']}; transfer is at a fixed horizon")
        gamma, omega = optimal_lr(shape_of(config), G, D)
        rows.append({"schedule": schedule_label(config), "theory_gamma": gamma, "bound": omega,
                     "ratio": gamma / gamma_src, "lr": lr * gamma / gamma_src,
                     "overrides": hydra_overrides(config, lr * gamma / gamma_src), "config": config})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# Sweeps: empirical optimum per schedule vs the theory.
# ---------------------------------------------------------------------------------------------------
def schedule_key(config: dict, ignore=()) -> str:
    """JSON of the schedule config without the arguments in `ignore`: the grouping key of a sweep."""
    return json.dumps({k: v for k, v in config.items() if k not in ignore}, sort_keys=True)


def group_by_schedule(runs, ignore=()) -> dict:
    """{schedule_key: [runs]} (the peak LR is not part of the schedule config, so a group is an LR sweep).
    ignore: arguments that may differ within a group, e.g. final_fraction of cosines ending at an
    absolute LR; the group's theory uses its first run's config."""
    groups = {}
    for run in runs:
        if run.schedule_config is None:
            raise ValueError(f"run {run.name} has no schedule config")
        groups.setdefault(schedule_key(run.schedule_config, ignore), []).append(run)
    return groups


def final_losses(runs, max_loss=None):
    """(peak LRs, final losses) sorted by LR, leaving out NaN and losses above max_loss (diverged)."""
    pairs = sorted((r.peak_lr, r.final_val_loss) for r in runs
                   if np.isfinite(r.final_val_loss) and (max_loss is None or r.final_val_loss <= max_loss))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def sweep_fit(lrs, losses):
    """The LRFit of final loss vs peak LR, or None with fewer than 3 distinct LRs (too few to fit)."""
    return fit_lr_sweep(lrs, losses) if len(set(lrs)) >= 3 else None


def sweep_table(runs, reference=None, max_loss=None, ignore=(), G=1.0, D=1.0) -> pd.DataFrame:
    """Per schedule: runs, empirical optimal LR (fit; NaN if not within 2x of the swept LRs), theory
    gamma*, predicted LR; also the points fitted (final_lrs, final_losses) and the LRFit (None with
    fewer than 3 distinct LRs), for plots.

    The prediction is gamma*_i times one constant: the reference schedule's empirical optimum over its
    gamma* (reference = a schedule label or a schedule config), else the geometric mean of
    empirical/theory over the schedules whose optimum lies inside their swept range."""
    rows = []
    for members in group_by_schedule(runs, ignore).values():
        config = members[0].schedule_config
        gamma, _ = optimal_lr(shape_of(config), G, D)
        lrs, losses = final_losses(members, max_loss)
        fit = sweep_fit(lrs, losses)
        rows.append({"schedule": schedule_label(config), "runs": len(members),
                     "lrs": sorted({r.peak_lr for r in members}),
                     "empirical_lr": fit.optimal_lr if fit and fit.optimum_determined else np.nan,
                     "inside_range": fit.optimum_inside if fit else False, "fit_r2": fit.r2 if fit else np.nan,
                     "theory_gamma": gamma, "config": config, "final_lrs": lrs, "final_losses": losses, "fit": fit})
    table = pd.DataFrame(rows)
    if reference is not None:
        label = reference if isinstance(reference, str) else schedule_label(reference)
        match = table[table["schedule"] == label]
        if match.empty or not np.isfinite(match["empirical_lr"].iloc[0]):
            raise ValueError(f"reference {label!r} is not a schedule with a fitted optimum; "
                             f"have {list(table['schedule'])}")
        scale = match["empirical_lr"].iloc[0] / match["theory_gamma"].iloc[0]
    else:
        ok = table[np.isfinite(table["empirical_lr"]) & table["inside_range"]]
        if ok.empty:
            ok = table[np.isfinite(table["empirical_lr"])]
        if ok.empty:
            raise ValueError("no schedule has final losses at >= 3 distinct peak LRs; cannot fit an optimum")
        scale = float(np.exp(np.mean(np.log(ok["empirical_lr"] / ok["theory_gamma"]))))
    table["predicted_lr"] = scale * table["theory_gamma"]
    table["predicted/empirical"] = table["predicted_lr"] / table["empirical_lr"]
    return table
