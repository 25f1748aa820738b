"""The run-directory contract: the name of everything a run directory holds, and its plain readers.

A run directory (Hydra's output dir; one per run, one per job of a multirun) holds

    config.yaml        the resolved config the run trained with (CONFIG_FILE)
    metrics.jsonl      one JSON object per log event (METRICS_FILE, keys below)
    lineage.json       only for a branch: the checkpoint it started from (LINEAGE_FILE)
    loss.png           train/val loss vs step, written at the end (PLOT_FILE)
    checkpoints/       step_0000200/, step_0000400/, ... (CHECKPOINTS_DIR; training/checkpoint.py writes them)
    wandb_id.txt       the wandb run mirroring this directory, when logger=wandb (WANDB_ID_FILE)

and a sweep directory (a Hydra multirun) holds one run directory per job, Hydra's multirun.yaml and
jobs.jsonl (JOBS_FILE: each job's outcome, training/callbacks.py).

metrics.jsonl events: `step` (optimizer updates completed), `tokens` (tokens seen), `time` (unix
seconds when logged), and any of `train/loss` (the MEAN training loss over the updates since the
previous train event, not one update's value), `val/loss` (the fixed validation batches),
`final/val_loss` (the whole validation split, at the last step), `lr` (the LR used by update
`step`), `grad_norm` (pre-clip global L2 norm of the last update), `tok_per_s`, `mfu`,
`skipped_updates`. A non-finite value is written as null.

This module imports no torch, matplotlib or hydra, so that the analysis reads runs without them:
    python -X importtime -c "import training.rundir"      # stdlib, plus numpy through data.shards
Tested by tests/test_rundir.py.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from data.shards import atomic_path  # the project's one write-then-rename helper (torch-free)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LINEAGE_FILE = "lineage.json"
PLOT_FILE = "loss.png"
CHECKPOINTS_DIR = "checkpoints"
WANDB_ID_FILE = "wandb_id.txt"
GRAD_NORMS_FILE = "grad_norms.bin"  # every update's gradient norms (trainer.log_grad_norms), see below
JOBS_FILE = "jobs.jsonl"          # in a sweep directory, beside Hydra's own files below
SWEEP_CONFIG_FILE = "multirun.yaml"  # written by Hydra into a sweep directory
HYDRA_DIR = ".hydra"              # written by Hydra into every run directory (overrides, hydra.yaml)

_CHECKPOINT_NAME = re.compile(r"^step_(\d+)$")


# --- checkpoint paths ------------------------------------------------------------------------------
def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """<run_dir>/checkpoints/step_NNNNNNN: zero-padded so that names sort like steps up to 10^7."""
    return Path(run_dir) / CHECKPOINTS_DIR / f"step_{int(step):07d}"


def checkpoint_step(path: str | Path) -> int | None:
    """The step in a checkpoint directory's name (`step_0000200` -> 200); None for any other name
    (temporary `.tmp-step_*` directories of a save in progress included)."""
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """The run's `step_N` checkpoint directories, lowest step first. Names only: nothing is opened or
    verified (training/checkpoint.py does that before it loads one)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


# --- metrics ---------------------------------------------------------------------------------------
def read_metrics(run_dir: str | Path) -> list[dict]:
    """The events of a run. A crash can leave a half-written last line: such lines are skipped
    with a warning, so that resuming and the analysis both still work."""
    path = Path(run_dir) / METRICS_FILE
    events = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{number}: not JSON (a write cut short by a crash?), skipped")
    return events


def rewind(run_dir: str | Path, step: int | None, drop_final: bool = False) -> None:
    """Keep only the events up to `step` (None: none), atomically, so that a restarted run (from
    scratch: None; from a checkpoint at `step`) logs each event once. `drop_final`: also drop the final
    evaluation logged at `step`, which a run continued to a longer horizon replaces with its own."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    kept = [] if step is None else [
        e for e in read_metrics(run_dir)
        if e["step"] < step or (e["step"] == step and not (drop_final and "final/val_loss" in e))]
    with atomic_path(path) as tmp, open(tmp, "w") as f:  # written and synced beside it, then renamed over it
        f.write("".join(json.dumps(e) + "\n" for e in kept))
        f.flush()
        os.fsync(f.fileno())
    rewind_grad_norms(run_dir, step)


# --- per-update gradient norms: what a schedule refinement (analysis/refine.py) needs ----------------
# Raw little-endian records, one per optimizer update, appended at each log event: `step` = updates
# completed (the metrics.jsonl convention: record k is update k-1, 0-based), `l2` = the pre-clip
# global l2 norm of that update's gradient, `l1` = its l1 norm (sum of |g|). 16 bytes per update.
GRAD_NORM_DTYPE = np.dtype([("step", "<i8"), ("l2", "<f4"), ("l1", "<f4")])


def append_grad_norms(run_dir: str | Path, records: np.ndarray) -> None:
    """Append GRAD_NORM_DTYPE records (rank 0, at log events); flushed to the OS at once."""
    with open(Path(run_dir) / GRAD_NORMS_FILE, "ab") as f:
        f.write(np.ascontiguousarray(records, dtype=GRAD_NORM_DTYPE).tobytes())


def read_grad_norms(run_dir: str | Path) -> np.ndarray:
    """The run's per-update gradient norms (GRAD_NORM_DTYPE, sorted by step, each step once: the last
    record of a step wins); empty if the run did not log them. A record cut short by a kill is ignored."""
    path = Path(run_dir) / GRAD_NORMS_FILE
    if not path.is_file():
        return np.empty(0, dtype=GRAD_NORM_DTYPE)
    raw = path.read_bytes()
    records = np.frombuffer(raw[:len(raw) - len(raw) % GRAD_NORM_DTYPE.itemsize], dtype=GRAD_NORM_DTYPE)
    _, last = np.unique(records["step"][::-1], return_index=True)  # index of each step's last record
    return records[::-1][last].copy()


def rewind_grad_norms(run_dir: str | Path, step: int | None) -> None:
    """Keep the records of steps <= `step` (None: none), as `rewind` does for the metrics."""
    path = Path(run_dir) / GRAD_NORMS_FILE
    if not path.is_file():
        return
    kept = read_grad_norms(run_dir)
    kept = kept[kept["step"] <= step] if step is not None else kept[:0]
    with atomic_path(path) as tmp:
        tmp.write_bytes(kept.tobytes())


# --- lineage: a branch records where it started ------------------------------------------------------
def write_lineage(run_dir: str | Path, parent_checkpoint: str | Path, branch_step: int) -> Path:
    """Record that the run in `run_dir` starts from `parent_checkpoint` (a `<parent run>/checkpoints/
    step_N` directory) after `branch_step` updates. The analysis stitches the parent's curve up to
    `branch_step` before the branch's own. Paths are stored absolute. (A checkpoint kept outside a
    run directory gives a `parent_run` without metrics: the analysis then warns and uses the branch alone.)"""
    parent = Path(parent_checkpoint).resolve()
    lineage = {"parent_run": str(parent.parent.parent), "branch_step": int(branch_step),
               "parent_checkpoint": str(parent)}
    path = Path(run_dir) / LINEAGE_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(lineage, indent=2) + "\n")
    return path


def read_lineage(run_dir: str | Path) -> dict | None:
    """{"parent_run": str, "branch_step": int, "parent_checkpoint": str (absent in older files)} of a
    branch, None for a run that is nobody's branch. `parent_run` is as recorded (absolute since
    write_lineage; a relative one is the reader's to resolve)."""
    path = Path(run_dir) / LINEAGE_FILE
    if not path.is_file():
        return None
    try:
        lineage = json.loads(path.read_text())
        return {**lineage, "parent_run": str(lineage["parent_run"]), "branch_step": int(lineage["branch_step"])}
    except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not a lineage record ({type(error).__name__}: {error}); it needs "
                         "'parent_run' and 'branch_step'. Delete it if the run is not a branch.") from None


def clear_lineage(run_dir: str | Path) -> None:
    """A run started from scratch or resumed from its own checkpoint is nobody's branch."""
    (Path(run_dir) / LINEAGE_FILE).unlink(missing_ok=True)


# --- wandb: one wandb run per run directory ---------------------------------------------------------
def read_wandb_id(run_dir: str | Path) -> str | None:
    """The id of the wandb run that mirrors this run directory, None before its first wandb init."""
    path = Path(run_dir) / WANDB_ID_FILE
    text = path.read_text().strip() if path.is_file() else ""
    return text or None


def write_wandb_id(run_dir: str | Path, run_id: str) -> None:
    with atomic_path(Path(run_dir) / WANDB_ID_FILE) as tmp:
        tmp.write_text(f"{run_id}\n")
