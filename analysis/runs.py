"""Run readers: one loader for this project's run directories, wandb runs and the paper's JSON logs.

    from analysis.runs import load, load_many
    run = load("outputs/runs/2025-01-01_12-00-00")      # a run directory (config.yaml + metrics.jsonl)
    run = load("wandb/offline-run-20250101_120000-abc")  # an offline wandb run folder
    run = load("entity/project/abc123")                  # an online wandb run (wandb.Api, needs login)
    run = load("tests/data/paper_logs/ann124-0.2_....json")   # a log of Schaipp et al.
    runs = load_many("outputs/multiruns/*/*")            # a sweep
    run.metrics            # tidy DataFrame, one row per step: step, train/loss, val/loss, lr, grad_norm, ...
    run.final_val_loss     # full validation split at the last step (NaN if the run did not finish)
    run.schedule()         # the schedule object, re-instantiated from the recorded config by build_schedule
    run.lr()               # peak LR x run.multipliers(), the step sizes of all T updates
    run.grad_norms         # per-update gradient norms: step, l2, l1 (analysis/refine.py refines schedules from them)

Branched runs (a cooldown started from a parent's checkpoint) are stitched: the parent's rows up to
the branch step, then the child's (the child wins where both logged the same step).
Duplicate steps after a resume keep the newest value. A recorded schedule config is untrusted input:
build_schedule, the analysis' only builder, builds a schedules.Schedule class from plain arguments
and refuses anything else (another `_target_`, nested Hydra keys) before it imports or calls a thing;
a run directory or wandb run with such a config is refused at load (load_many skips it with a note).
A reactive schedule (its class has `reactive = True`, e.g. step decay on plateau) sets its LRs from the
validation losses, so the config cannot tell them: run.multipliers() reads them from the logged `lr`.
"""
from __future__ import annotations

import glob as globlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from analysis.safe_schedule import build_schedule, check_schedule_config, schedule_class
from analysis.wandb_log import wandb_key, wandb_records
from training.rundir import (CONFIG_FILE, HYDRA_DIR, JOBS_FILE, METRICS_FILE, SWEEP_CONFIG_FILE, read_grad_norms,
                             read_lineage, read_metrics)

CORE_COLUMNS = ("step", "train/loss", "val/loss", "lr", "grad_norm")
FINAL_KEY = "final/val_loss"
LOSS_KEYS = ("train/loss", "val/loss", FINAL_KEY)


@dataclass
class Run:
    name: str
    source: str                       # where it was read from
    config: dict                      # the configuration as recorded (nested dict)
    metrics: pd.DataFrame             # tidy: one row per step, NaN where a key was not logged
    schedule_config: dict | None      # the `schedule` node (`_target_` + arguments)
    peak_lr: float | None             # the optimizer's peak LR (the schedule multiplies it)
    parent: Run | None = field(default=None, repr=False)
    branch_step: int | None = None
    _norms: pd.DataFrame | None = field(default=None, repr=False)   # grad_norms, read on first use

    @property
    def final_val_loss(self) -> float:
        values = self.metrics[FINAL_KEY].dropna() if FINAL_KEY in self.metrics else []
        return float(values.iloc[-1]) if len(values) else math.nan

    @property
    def total_steps(self) -> int:
        return int(self.schedule_config["total_steps"])

    def schedule(self):
        """The run's schedule object, rebuilt from its recorded config by build_schedule."""
        if self.schedule_config is None:
            raise ValueError(f"run {self.name!r} recorded no schedule config; it cannot be re-instantiated")
        return build_schedule(self.schedule_config, f"run {self.name!r} ({self.source}): schedule config")

    @property
    def reactive(self) -> bool:
        """Whether the schedule reacts to the run (class attribute `reactive`): its LRs are in the log only."""
        config = self.schedule_config
        return config is not None and bool(getattr(schedule_class(config.get("_target_")), "reactive", False))

    def multipliers(self) -> np.ndarray:
        """Multipliers of the peak LR of all T updates (float64, length T): schedule.multipliers(), or for a
        reactive schedule its replay of the run's validation losses (StepOnPlateau.replay: exact), else
        (a branch, no val loss) the logged lr / peak LR. The lr logged at step k is update k-1's (0-based), and a
        reactive LR changes only after a validation, which the trainer runs at a log step; so update u takes
        the lr logged at the first logged step >= u + 1 (the last logged one past the end of the log)."""
        if not self.reactive:
            return self.schedule().multipliers()
        schedule = self.schedule()
        vals = self.metrics.dropna(subset=["val/loss"]) if "val/loss" in self.metrics else self.metrics.iloc[:0]
        vals = vals[(vals["step"] > 0) & (vals["step"] < self.total_steps)]
        if hasattr(schedule, "replay") and self.parent is None and not vals.empty:
            # exact: the schedule re-observes the run's own periodic validations (not the first or final one)
            return schedule.replay(list(zip(vals["step"].astype(int), vals["val/loss"].astype(float))))
        logged = self.metrics.dropna(subset=["lr"]) if "lr" in self.metrics else self.metrics.iloc[:0]
        if logged.empty or not self.peak_lr:
            raise ValueError(f"run {self.name!r} has a reactive schedule ({self.schedule_config['_target_']}) but "
                             "logged no lr or peak LR, so its LRs are unknown; the trainer logs lr at every log event")
        at = np.searchsorted(logged["step"].to_numpy(), np.arange(1, self.total_steps + 1))
        return logged["lr"].to_numpy(np.float64)[np.minimum(at, len(logged) - 1)] / self.peak_lr

    def lr(self) -> np.ndarray:
        """Step sizes of all T updates: peak LR x multipliers() (float64, length T)."""
        return self.peak_lr * self.multipliers()

    @property
    def grad_norms(self) -> pd.DataFrame:
        """Gradient norms by update: `step` (updates completed, as in metrics), `l2` (pre-clip global l2 norm),
        `l1` (sum of |g|; NaN where unknown). A run directory's grad_norms.bin has both for every update (a
        branch's parent's up to the branch step first); without it, the metrics' `grad_norm` is the l2 of one
        update per log event (the paper logs' `grad_norm` column likewise, l1 unknown). attrs["origin"] says which."""
        if self._norms is None:
            self._norms = _grad_norms(self)
        return self._norms


_WANDB_ONLINE = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+$")


def _reader(path: Path):
    """The loader for a local path, or None if it is not a run."""
    if path.is_dir() and (path / METRICS_FILE).exists():
        return _load_run_dir
    if path.is_dir() and any(path.glob("run-*.wandb")):
        return _load_wandb_offline
    if path.is_file() and path.suffix == ".json":
        return _load_paper_log
    return None


def load(source) -> Run:
    """A Run from a run directory, a wandb offline folder or online path, or a paper JSON log."""
    path = Path(source)
    reader = _reader(path)
    if reader is not None:
        return reader(path)
    if not path.exists() and _WANDB_ONLINE.match(str(source)):
        return _load_wandb_online(str(source))
    raise ValueError(f"cannot read a run from {source!r}: expected a run directory with {METRICS_FILE}, a "
                     "wandb offline-run-* folder, a paper .json log, or an online wandb path entity/project/run_id")


def load_many(patterns) -> list[Run]:
    """Runs matching one glob pattern or a list of them (sorted by path, duplicates dropped); a sweep
    folder (Hydra's multirun.yaml in it) stands for its jobs. Matches that are not runs or cannot be
    read (failed launches: no metrics.jsonl, or nothing logged) are skipped with a warning saying why."""
    patterns = [patterns] if isinstance(patterns, (str, Path)) else list(patterns)
    paths = {Path(p) for pattern in patterns for p in globlib.glob(str(pattern))}
    paths = {c for p in paths for c in ([c for c in p.iterdir() if c.is_dir() and c.name[0] != "."]
                                         if (p / SWEEP_CONFIG_FILE).is_file() else [p])}
    runs = []
    for path in sorted(paths):
        run, why = _try_load(path)
        if run is not None:
            runs.append(run)
        elif why:
            warnings.warn(f"skipped {path}: {why}")
    if not runs:
        raise ValueError(f"no runs match {patterns}; check the glob (quote it so that the shell does not expand it)")
    return runs


def _try_load(path: Path):
    """(run, None), or (None, why the path is skipped; None for a sweep's own files)."""
    reader = _reader(path)
    if reader is None:
        if path.name in ("README.md", SWEEP_CONFIG_FILE, JOBS_FILE):
            return None, None
        failed = path.is_dir() and ((path / CONFIG_FILE).exists() or (path / HYDRA_DIR).exists())
        return None, f"no {METRICS_FILE} (a failed launch?)" if failed else "not a run directory or log"
    try:
        run = reader(path)
    except (ValueError, KeyError, OSError) as error:     # a JSONDecodeError is a ValueError
        return None, f"not readable ({error})"
    return (None, "no metrics logged (a failed launch?)") if run.metrics.empty else (run, None)


# Shared helpers.
def tidy(events: pd.DataFrame, keep: str = "last") -> pd.DataFrame:
    """One row per step (events at the same step merged; a repeated key keeps the `keep` value)."""
    if "step" not in events:
        raise ValueError(f"metrics have no 'step' column (columns: {list(events.columns)})")
    events = events.dropna(subset=["step"]).astype({"step": np.int64})
    # groupby().last()/first() take the last/first non-null value of every column per step.
    grouped = events.groupby("step", sort=True)
    table = (grouped.last() if keep == "last" else grouped.first()).reset_index()
    return table.reindex(columns=[*CORE_COLUMNS, *(c for c in table.columns if c not in CORE_COLUMNS)])


def stitch(parent: pd.DataFrame, child: pd.DataFrame, branch_step: int) -> pd.DataFrame:
    """Parent rows with step <= branch_step, then the child's rows; the child wins on a shared step."""
    head = parent[parent["step"] <= branch_step]
    merged = child.set_index("step").combine_first(head.set_index("step")).reset_index()
    columns = list(child.columns) + [c for c in head.columns if c not in child.columns]
    return merged[columns].sort_values("step", ignore_index=True)


# (a) This project's run directories: config.yaml, metrics.jsonl, lineage.json (training/rundir.py).
def _load_run_dir(path: Path) -> Run:
    config_file = path / CONFIG_FILE
    if not config_file.exists():
        raise ValueError(f"{path} has {METRICS_FILE} but no {CONFIG_FILE}; is it a run directory of train.py?")
    raw = OmegaConf.load(config_file)
    try:    # train.py writes the config resolved; resolve anything left when it can be
        config = OmegaConf.to_container(raw, resolve=True)
    except OmegaConfBaseException:
        config = OmegaConf.to_container(raw, resolve=False)
    # A loss logged but not finite (the trainer writes null, json reads NaN) becomes +inf: in the tidy
    # table NaN means "not logged", and the advisor's divergence check looks for the inf.
    rows = [{k: math.inf if k in LOSS_KEYS and (v is None or not math.isfinite(v)) else v for k, v in e.items()}
            for e in read_metrics(path)]    # read_metrics skips a line a crash left half-written
    metrics = tidy(pd.DataFrame(rows if rows else {"step": []}), keep="last")
    run = _from_config(path.name, str(path), config, metrics)
    lineage = read_lineage(path)
    if lineage is not None:
        parent_dir = Path(lineage["parent_run"])
        if not parent_dir.is_absolute() and not parent_dir.exists():
            parent_dir = path.parent / parent_dir
        run = _with_parent(run, parent_dir, lineage["branch_step"])
    return run


def _grad_norms(run: Run) -> pd.DataFrame:
    """Run.grad_norms: grad_norms.bin (stitched onto the parent's, if it has one too), else the metrics."""
    records = read_grad_norms(run.source) if Path(run.source).is_dir() else []
    if len(records):
        table = pd.DataFrame(records).astype({"l2": np.float64, "l1": np.float64})
        if run.parent is not None and run.parent.grad_norms.attrs["origin"] == GRAD_NORMS_ORIGIN:
            table = stitch(run.parent.grad_norms, table, run.branch_step)
        table.attrs["origin"] = GRAD_NORMS_ORIGIN
        return table
    logged = run.metrics.dropna(subset=["grad_norm"]) if "grad_norm" in run.metrics else run.metrics.iloc[:0]
    table = pd.DataFrame({"step": logged["step"].to_numpy(np.int64), "l2": logged["grad_norm"].to_numpy(np.float64),
                          "l1": np.nan})
    table.attrs["origin"] = "the metrics' grad_norm (l2 of the last update of each log event)"
    return table


GRAD_NORMS_ORIGIN = "grad_norms.bin (every update)"


def _with_parent(run: Run, parent_source, branch_step: int) -> Run:
    try:
        parent = load(parent_source)
    except (ValueError, OSError) as error:
        warnings.warn(f"run {run.name}: parent {parent_source} not readable ({error}); using the child alone")
        return run
    run.metrics = stitch(parent.metrics, run.metrics, branch_step)
    run.parent, run.branch_step = parent, branch_step
    return run


def _from_config(name, source, config: dict, metrics: pd.DataFrame) -> Run:
    """A Run of this project's trainer: the schedule and peak LR come from the recorded config."""
    peak_lr = config["optimizer"].get("lr") if isinstance(config.get("optimizer"), dict) else None
    schedule = config.get("schedule")    # checked now, so that load_many skips a crafted config
    if schedule is not None:
        check_schedule_config(schedule, f"run {name!r} ({source}): schedule config")
    return Run(name=name, source=source, config=config, metrics=metrics, schedule_config=schedule, peak_lr=peak_lr)


# (b) wandb: online through wandb.Api, offline from the run's transaction log (run-<id>.wandb).
# Our trainer mirrors metrics.jsonl's keys with wandb.log(..., step=step), so `_step` is the step.
def _from_wandb(name, source, config, history: pd.DataFrame, summary: dict) -> Run:
    if "step" not in history and "_step" in history:
        history = history.rename(columns={"_step": "step"})
    history = history[[c for c in history.columns if not c.startswith("_")]]
    metrics = tidy(history if len(history) else pd.DataFrame({"step": []}), keep="last")
    if FINAL_KEY in summary and (FINAL_KEY not in metrics or metrics[FINAL_KEY].isna().all()):
        metrics.loc[metrics.index[-1] if len(metrics) else 0, FINAL_KEY] = summary[FINAL_KEY]
    return _from_config(name, source, config, metrics)


def _load_wandb_online(path: str) -> Run:
    import wandb  # optional dependency, imported only here

    api_run = wandb.Api().run(path)
    history = pd.DataFrame(list(api_run.scan_history()))
    return _from_wandb(api_run.name, path, dict(api_run.config), history, dict(api_run.summary))


def _load_wandb_offline(path: Path) -> Run:
    log_file = sorted(path.glob("run-*.wandb"))[0]
    config, summary, rows, name = {}, {}, [], path.name
    for record in wandb_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            name = record.run.display_name or record.run.run_id or name
            config.update({wandb_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            config.update({wandb_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            rows.append({wandb_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({wandb_key(i): json.loads(i.value_json) for i in record.summary.update})
    config.pop("_wandb", None)
    return _from_wandb(name, str(path), config, pd.DataFrame(rows), summary)


# (c) The paper's JSON logs: analysis/paper_logs.py (imported on use: it builds on Run and tidy above).
def _load_paper_log(path: Path) -> Run:
    from analysis.paper_logs import load_paper_log
    return load_paper_log(path)
