"""Metrics: `metrics.jsonl` in the run directory (the contract with the analysis), an optional
wandb mirror of the same keys, MFU, and the loss-curve PNG written at the end of a run.

Event keys: `step` (optimizer updates completed), `tokens` (tokens seen), and any of `train/loss`,
`val/loss`, `final/val_loss` (whole validation split), `lr` (the LR used by update `step`),
`grad_norm` (pre-clip global L2 norm), `tok_per_s`, `mfu`. A restarted run rewinds the file (`rewind`)
so that it holds each event once. Tested by tests/test_metrics.py and tests/test_resume_guard.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path

from matplotlib.figure import Figure

from data.shards import atomic_path

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"

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

    wandb: None (off) or a dict of `wandb.init` arguments (project, entity, name, mode=online|offline|
    disabled, tags, ...). The import happens only then, so wandb is never required."""

    def __init__(self, run_dir: str | Path, config: dict | None = None, wandb: dict | None = None):
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        self._wandb = None
        if wandb:
            import wandb as wandb_lib

            args = {"dir": str(run_dir), **dict(wandb)}
            self._wandb = wandb_lib.init(config=config, **args)

    def log(self, event: dict) -> None:
        event = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in event.items()}
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in event.items() if k != "step" and v is not None}, step=event["step"])

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()


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


def plot_loss_curve(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Train and validation loss vs step from metrics.jsonl, as a PNG in the run directory."""
    events = read_metrics(run_dir)
    out = Path(out) if out else Path(run_dir) / "loss.png"
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
