"""Metrics: the writer of `metrics.jsonl` (MetricsLogger), an optional wandb mirror of the same keys,
MFU, and the loss-curve PNG written at the end of a run.

The file's name, its event keys and its readers (`read_metrics`, `rewind`) are the run-directory
contract in training/rundir.py, which the analysis imports without this module's matplotlib. The
keys in short: `step`, `tokens`, `time` (added here: unix seconds, 3 decimals), `train/loss` (the MEAN
training loss over the updates since the previous train event, not one update's value), `val/loss`,
`final/val_loss`, `lr`, `grad_norm`, `tok_per_s`, `mfu`.

wandb (logger=wandb): one wandb run per run directory. Its id is stored in the run directory
(rundir.WANDB_ID_FILE) at the first init and reused with resume="allow", so that a preempted and
requeued job goes on logging into the same wandb run. Default name: the run directory's name, or
"<sweep dir name>/<job>" for a job of a Hydra multirun (whose sweep directory the trainer passes as
`sweep_dir`), grouped by the sweep directory's name; logger.wandb.name / group / id set by the
user win. Tested by tests/test_metrics.py (tests/test_rundir.py for the readers).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from matplotlib.figure import Figure

from data.shards import atomic_path
from training.rundir import read_metrics
from training import rundir
from training.rundir import METRICS_FILE, PLOT_FILE

log = logging.getLogger(__name__)

# Dense bf16 tensor-core peak FLOP/s by GPU name substring (vendor datasheets, no sparsity).
# Checked in order, so the more specific names come first. Override with trainer.peak_flops.
PEAK_BF16_FLOPS = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
)


def peak_flops(device_name: str | None, override: float | None = None) -> float | None:
    """Peak FLOP/s for MFU: the override if given, else looked up by GPU name; None if unknown."""
    if override:
        return float(override)
    for key, flops in PEAK_BF16_FLOPS:
        if device_name and key in device_name:
            return flops
    return None


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilization = achieved model FLOP/s / peak FLOP/s.

    flops_per_token counts forward + backward (about 6 x parameters + the attention term, see
    models.llama.Llama.flops_per_token); recomputation, if any, is not counted (MFU, not HFU)."""
    if not peak:
        return None
    return flops_per_token * tokens_per_s / peak


class MetricsLogger:
    """Appends one JSON object per event to <run_dir>/metrics.jsonl; mirrors to wandb if asked.

    wandb: None (off) or a dict of `wandb.init` arguments (project, entity, name, group, id, mode=
    online|offline|disabled, tags, ...); None values are left to the defaults above. The import
    happens only then, so wandb is never required. sweep_dir: the Hydra multirun directory this run
    directory is a job of (None for a single run). clock: the source of the `time` key."""

    def __init__(self, run_dir: str | Path, config: dict | None = None, wandb: dict | None = None,
                 sweep_dir: str | Path | None = None, clock=time.time):
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._file = open(self.path, "a")
        self._wandb = None
        if wandb:
            import wandb as wandb_lib

            self._wandb = wandb_lib.init(config=config, **wandb_init_args(run_dir, dict(wandb), sweep_dir))
            if not getattr(self._wandb, "disabled", False):  # mode=disabled: a stand-in with a random id
                rundir.write_wandb_id(run_dir, self._wandb.id)

    def log(self, event: dict) -> None:
        event = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in event.items()}
        event.setdefault("time", round(self._clock(), 3))
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()
        if self._wandb is not None:  # wandb stamps its own _timestamp: `time` is not a chart
            self._wandb.log({k: v for k, v in event.items() if k not in ("step", "time") and v is not None},
                            step=event["step"])

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()


def wandb_init_args(run_dir: str | Path, user: dict, sweep_dir: str | Path | None = None) -> dict:
    """`wandb.init` keyword arguments for the run in `run_dir`: the user's (logger.wandb.*, None
    meaning unset) over the defaults: dir = the run directory, id = the one stored there by an earlier
    init (resume="allow" continues that wandb run, or starts it when it is new), name = the run
    directory's name, or "<sweep>/<job>" inside `sweep_dir`, group = the sweep directory's name."""
    run_dir = Path(run_dir)
    job = _job_path(run_dir, sweep_dir)
    defaults = {"dir": str(run_dir), "resume": "allow", "id": rundir.read_wandb_id(run_dir),
                "name": f"{Path(sweep_dir).name}/{job}" if job else run_dir.name,
                "group": Path(sweep_dir).name if job else None}
    return {**defaults, **{k: v for k, v in user.items() if v is not None}}


def _job_path(run_dir: Path, sweep_dir: str | Path | None) -> str | None:
    """The run directory relative to the sweep directory ("3" for Hydra's subdir ${hydra.job.num}),
    None when there is no sweep or the run directory is not inside it."""
    if sweep_dir is None:
        return None
    try:
        job = run_dir.resolve().relative_to(Path(sweep_dir).resolve())
    except ValueError:
        return None
    return job.as_posix() if job.parts else None


def plot_loss_curve(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Train and validation loss vs step from metrics.jsonl, as a PNG in the run directory."""
    events = read_metrics(run_dir)
    out = Path(out) if out else Path(run_dir) / PLOT_FILE
    fig = Figure(figsize=(6, 4))  # object API: no pyplot state, no display needed
    ax = fig.add_subplot()
    for key, style in (("train/loss", "-"), ("val/loss", "o-")):
        points = [(e["step"], e[key]) for e in events if e.get(key) is not None]
        if points:
            ax.plot(*zip(*points), style, label=key, markersize=3)
    final = [e for e in events if e.get("final/val_loss") is not None]
    if final:
        ax.axhline(final[-1]["final/val_loss"], color="gray", ls=":", label="final val (full split)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if ax.get_legend_handles_labels()[0]:  # a run stopped before its first event has no curve yet
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:  # renamed into place: a kill mid-write leaves no half image
        fig.savefig(tmp, dpi=120, format="png")
    return out
