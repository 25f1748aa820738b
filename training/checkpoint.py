"""Checkpoints: atomic, complete, and resumable under a different schedule or horizon.

A checkpoint is a directory `<run dir>/checkpoints/step_<NNNNNNN>/` holding
  state.pt     model, optimizer, step, tokens, data-loader position, RNG states (one torch.save dict)
  config.yaml  the resolved config of the run that wrote it
It is written to a temporary sibling directory first and renamed into place, so a crash or a full
disk mid-write never leaves a half checkpoint under a real name, and older checkpoints are pruned
only after the new one is complete: a good checkpoint is never lost.

Each part carries its own state through `state_dict()` / `load_state_dict()`; this module only
collects and stores them.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
_NAME = re.compile(r"^step_(\d+)$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary directories are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: str | Path, state: dict, config: DictConfig, keep: int | None = None) -> Path:
    """Write `state` (a dict whose values are state dicts / plain values; must contain "step")
    atomically under run_dir/checkpoints/, then prune to the `keep` newest. Returns the path."""
    final = checkpoint_dir(run_dir, state["step"])
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        torch.save(state, tmp / STATE_FILE)
        (tmp / CONFIG_FILE).write_text(OmegaConf.to_yaml(config, resolve=True))
        if final.exists():  # re-saving the same step (e.g. final save right after a periodic one)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        raise RuntimeError(
            f"Could not write checkpoint {final} ({err}). The previous checkpoint "
            f"{previous or '(none)'} is intact. Free disk space (or point hydra.run.dir at a larger "
            f"disk) and resume with the same hydra.run.dir."
        ) from err
    if keep:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: str | Path) -> dict:
    """Load a checkpoint directory (or its state.pt). Clear errors for missing or corrupt files."""
    path = Path(path)
    state_file = path / STATE_FILE if path.is_dir() else path
    if not state_file.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {path}: expected a directory like <run dir>/checkpoints/step_0001000 "
            f"containing {STATE_FILE}. Check trainer.init_from (ls <run dir>/checkpoints)."
        )
    try:
        # weights_only=False: the state holds RNG states (numpy arrays, tuples) written by us.
        state = torch.load(state_file, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for truncated / garbage files
        raise ValueError(
            f"Checkpoint file {state_file} is corrupt or truncated ({type(err).__name__}: {err}). "
            f"Delete that checkpoint directory and resume from an earlier one."
        ) from err
    missing = {"model", "optimizer", "step", "tokens", "loader", "rng"} - set(state)
    if missing:
        raise ValueError(f"Checkpoint {state_file} lacks {sorted(missing)}: not written by this trainer.")
    return state

