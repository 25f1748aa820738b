"""Reader of the paper's JSON logs (Schaipp et al.; format in tests/data/paper_logs/README.md), for analysis.runs.

    from analysis.runs import load
    run = load("tests/data/paper_logs/ann124-0.2_....json")    # load() dispatches a .json file here

A log holds `config` (the training flags), `summary` and `history` ({train, val, final-val}: columns
by name). The columns kept become this project's metric keys (_PAPER_COLUMNS): `train_lr` is `lr`, and
`grad_norm` (in `history.train`, where a run logged it: none of the 193 published logs does) is the
pre-clip l2 norm of the gradient of the logged step, so Run.grad_norms reads it as `l2` (l1 unknown).
A branched run (`config.resume_from`) is stitched onto its parent's log found beside it.
Tested by tests/test_analysis_runs.py.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.runs import FINAL_KEY, LOSS_KEYS, Run, _with_parent, tidy

# Their trainer's flags translated into this project's schedule configs (the object is still built by instantiate).
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


def load_paper_log(path: Path) -> Run:
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
