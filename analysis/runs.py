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
    run.lr()               # peak LR x schedule multipliers, the step sizes of all T updates

Branched runs (a cooldown started from a parent's checkpoint) are stitched: the parent's rows up to
the branch step, then the child's (the child wins where both logged the same step).
Duplicate steps after a resume keep the newest value. A recorded schedule config is untrusted input:
build_schedule, the analysis' only builder, builds a schedules.Schedule class from plain arguments
and refuses anything else (another `_target_`, nested Hydra keys) before it imports or calls a thing;
a run directory or wandb run with such a config is refused at load (load_many skips it with a note).
"""
from __future__ import annotations

import glob as globlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from analysis.safe_schedule import build_schedule, check_schedule_config
from analysis.wandb_log import wandb_key, wandb_records
from training.rundir import (CONFIG_FILE, HYDRA_DIR, JOBS_FILE, METRICS_FILE, SWEEP_CONFIG_FILE, read_lineage,
                             read_metrics)

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

    def lr(self) -> np.ndarray:
        """Step sizes of all T updates: peak LR x schedule.multipliers() (float64, length T)."""
        return self.peak_lr * self.schedule().multipliers()


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


# (c) The paper's JSON logs (Schaipp et al.; format in tests/data/paper_logs/README.md): their trainer's
# flags translated into this project's schedule configs (the object is still built by instantiate).
_PAPER_COOLDOWN_KIND = {"linear": "linear", "sqrt": "1-sqrt", None: "linear"}
_PAPER_COLUMNS = {"iter": "step", "train_loss": "train/loss", "train_lr": "lr", "grad_norm": "grad_norm",
                  "val_loss": "val/loss", "val_acc": "val/acc", "final_val_loss": FINAL_KEY}


def paper_schedule_config(flags: dict) -> dict:
    """The schedule config (``_target_`` + arguments) equivalent to a paper run's training flags.

    wsd: their wsd_schedule (linear warmup from lr/100, cooldown over int(fract * T) steps ending at
    step T) is schedules.WSD with warmup_start 0.01. cos: torch OneCycleLR with pct_start = W/T and
    div_factor 100 is schedules.CosinePaper; the final LR is cos_final_lr (absolute) if > 0, else lr/10.
    """
    common = {"total_steps": int(flags["iterations"]), "warmup_steps": int(flags.get("warmup_steps") or 0),
              "warmup_start": 0.01}
    scheduler = flags.get("scheduler")
    if scheduler == "wsd":
        return {"_target_": "schedules.WSD", **common,
                "cooldown_fraction": float(flags.get("wsd_fract_decay") or 0.0),
                "cooldown_kind": _PAPER_COOLDOWN_KIND[flags.get("decay_type")],
                "final_fraction": float(flags.get("wsd_final_lr_scale") or 0.0)}
    if scheduler == "cos":
        final_lr = flags.get("cos_final_lr")
        final = final_lr / flags["lr"] if final_lr is not None and final_lr > 0 else 0.1
        return {"_target_": "schedules.CosinePaper", **common, "final_fraction": float(final)}
    raise ValueError(f"paper run with scheduler={scheduler!r}: only 'wsd' and 'cos' are known")


@lru_cache(maxsize=64)
def _read_paper_json(path: str) -> tuple[str, dict, pd.DataFrame]:
    data = json.loads(Path(path).read_text())
    flags, summary, history = data["config"], data.get("summary", {}), data.get("history", {})
    frames = []
    for part in ("train", "val", "final-val"):
        part = history.get(part, {})
        n = len(part.get("iter", []))   # a column of another length (some val_acc lists) is not aligned
        columns = {k: v for k, v in part.items() if k in _PAPER_COLUMNS and n and len(v) == n}
        if len(columns) > 1:
            frame = pd.DataFrame(columns).rename(columns=_PAPER_COLUMNS)
            losses = [c for c in frame.columns if c in LOSS_KEYS]   # logged non-finite -> inf, as above
            frame[losses] = frame[losses].astype(np.float64).fillna(np.inf)
            frames.append(frame)
    events = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"step": []})
    # A resumed wandb run exports its history segments newest first, so the first occurrence of a
    # step is the newest value (the resumed run that went on to the end).
    metrics = tidy(events, keep="first")
    if (FINAL_KEY not in metrics or metrics[FINAL_KEY].isna().all()) and "final-val/loss" in summary and len(metrics):
        metrics.loc[metrics.index[-1], FINAL_KEY] = summary["final-val/loss"]
    tokens_per_step = math.prod(int(flags.get(k) or 1) for k in ("batch_size", "acc_steps", "world_size",
                                                                 "sequence_length"))
    metrics.insert(1, "tokens", metrics["step"] * tokens_per_step)
    return data.get("name", Path(path).stem), flags, metrics


def _find_paper_log(directory: Path, name: str) -> Path:
    """The log of run `name` in `directory`: <name>.json, else <anything>_<name>.json (the paper's folder
    files the 210M constant run as stable-210m_<name>.json), else the sibling whose recorded name is
    `name` (a few files are named after a relabelled run, e.g. decay_linear for decay_sqrt)."""
    exact = directory / f"{name}.json"
    if exact.exists():
        return exact
    prefixed = sorted(directory.glob(f"*_{name}.json"))    # the paper's folder prefixes some names
    if prefixed:
        return prefixed[0]
    prefix = name.split("_")[0]
    for candidate in sorted(directory.glob(f"{prefix}_*.json")):
        if _read_paper_json(str(candidate.resolve()))[0] == name:
            return candidate
    return exact   # missing: the caller warns


def _load_paper_log(path: Path) -> Run:
    name, flags, metrics = _read_paper_json(str(path.resolve()))
    run = Run(name=name, source=str(path), config=dict(flags), metrics=metrics.copy(),
              schedule_config=paper_schedule_config(flags), peak_lr=float(flags["lr"]))
    resume_from = flags.get("resume_from")
    if resume_from:  # ".../<parent run name>/ckpts/<step>": the parent's log lies beside this one
        parts = Path(resume_from).parts
        if "ckpts" in parts and parts[-1].isdigit():
            parent_name = parts[parts.index("ckpts") - 1]
            run = _with_parent(run, _find_paper_log(path.parent, parent_name), int(parts[-1]))
    return run
