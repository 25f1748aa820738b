"""Pretrain a Llama model with a pluggable learning-rate schedule.

    python train.py                                   # small CPU job on the embedded default data
    python train.py model=llama124m data=slimpajama_6b trainer.device=cuda
    python train.py schedule=cosine optimizer.lr=3e-3 trainer.max_steps=2000
    python train.py -m optimizer.lr=1e-3,3e-3 schedule=constant,wsd     # a sweep, one dir per job
    python train.py trainer.init_from=<run>/checkpoints/step_0000200 schedule=wsd trainer.max_steps=800

Reads top to bottom: compose the config (Hydra) -> check it -> instantiate the parts -> resume or
branch from a checkpoint -> the loop (training.loop.fit) -> final evaluation. The run directory
(Hydra's output dir) receives config.yaml, metrics.jsonl, loss.png and checkpoints/. Rerunning the
same command there resumes (or, finished, just reports); a second trainer there at the same time, or
a resume with a changed model/data/optimizer/seed/schedule, fails before anything is written
(training/resume.py); a restart drops the metrics it will redo, so metrics.jsonl holds each event once.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from training import checkpoint
from training.loop import fit
from training.metrics import plot_loss_curve, read_metrics, rewind
from training.optim import param_groups
from training.resume import check_resume, run_dir_lock, with_new_hyperparameters
from training.setup import build, check_config, enable_tf32, resolve_device

log = logging.getLogger("train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as `cfg` says, writing everything into `run_dir`. Returns fit()'s summary."""
    run_dir = Path(run_dir)
    # 1. Everything a user can get wrong is checked before any model is built.
    check_config(cfg)
    schedule = build(cfg.schedule, "schedule")
    data = build(cfg.data, "data")
    if cfg.model.vocab_size < data.vocab_size:  # larger is fine: padded rows are never targets
        raise ValueError(f"model.vocab_size={cfg.model.vocab_size} is below the data's vocab_size="
                         f"{data.vocab_size}: set model.vocab_size=${{data.vocab_size}}.")
    data.check_vocab(cfg.model.vocab_size, "model.vocab_size")  # each shard's largest id vs the embedding rows

    # One trainer per run directory (the lock dies with its process, even by SIGKILL).
    with run_dir_lock(run_dir):
        return _start_and_fit(cfg, run_dir, schedule, data)


def recorded_config(latest: Path, run_dir: Path) -> DictConfig:
    """The config that wrote checkpoint `latest` (its own copy; the run's config.yaml otherwise)."""
    for path in (latest / checkpoint.CONFIG_FILE, run_dir / "config.yaml"):
        if path.is_file():
            return OmegaConf.load(path)
    raise ValueError(f"{latest} has no {checkpoint.CONFIG_FILE} and {run_dir} no config.yaml: cannot check that "
                     f"resuming it keeps its config. Restore the file, or start afresh: trainer.resume=never.")


def _start_and_fit(cfg: DictConfig, run_dir: Path, schedule, data) -> dict:
    # 2. Where to start: our own latest checkpoint (resume), else a parent's (branch), else scratch.
    #    A resume is checked against the config that wrote its checkpoint before anything is written.
    latest = checkpoint.latest_checkpoint(run_dir) if cfg.trainer.resume == "auto" else None
    start_from = latest or cfg.trainer.init_from
    start = checkpoint.load(start_from) if start_from else None
    if latest is not None:
        check_resume(recorded_config(latest, run_dir), cfg, int(start["step"]))
    # Events after the starting point are redone: drop them (all of them when not resuming), and the
    # final evaluation too when a finished run continues to a longer horizon.
    step = int(start["step"]) if latest is not None else None
    checkpoint.open_run_dir(run_dir, resumed_from=latest)  # leftovers of killed saves; this run's id
    rewind(run_dir, step, drop_final=step is not None and step < cfg.trainer.max_steps)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run_dir / "lineage.json").unlink(missing_ok=True)  # a fresh start is nobody's branch
    if start is not None and latest is None:  # a branch: record the lineage for the analysis
        parent_ckpt = Path(start_from).resolve()
        lineage = {"parent_run": str(parent_ckpt.parent.parent), "branch_step": int(start["step"]),
                   "parent_checkpoint": str(parent_ckpt)}
        (run_dir / "lineage.json").write_text(json.dumps(lineage, indent=2) + "\n")
    log.info("Run directory: %s%s", run_dir, f" (continuing from {start_from})" if start else "")

    # 3. The parts.
    device = resolve_device(cfg.trainer.device)
    if device.type == "cuda":
        enable_tf32()
    seed_everything(cfg.seed)
    model = build(cfg.model, "model").to(device)
    kernels = model.set_kernels(device.type)  # resolve model.kernels=auto now, before any compile
    optimizer = build(cfg.optimizer, "optimizer")(param_groups(model, cfg.optimizer.weight_decay))
    if start is not None and latest is None:  # a branch trains with its own betas, weight decay, ...
        start = {**start, "optimizer": with_new_hyperparameters(start["optimizer"], optimizer)}
    logger = build(cfg.logger, "logger")(run_dir=run_dir, config=OmegaConf.to_container(cfg, resolve=True))
    log.info("Model: %s parameters, %s kernels; %s schedule; on %s",
             f"{model.num_params():,}", kernels, type(schedule).__name__, device)

    # 4. The loop, then the final evaluation on the whole validation split.
    try:
        summary = fit(cfg, run_dir, model, optimizer, schedule, data, logger, device,
                      start=start, resumed=latest is not None)
    finally:
        logger.close()
    if "final_val_loss" not in summary:  # a finished run, rerun: report its recorded result
        finals = [e["final/val_loss"] for e in read_metrics(run_dir) if e.get("final/val_loss") is not None]
        summary["final_val_loss"] = finals[-1] if finals else None
    if not (run_dir / "loss.png").is_file():  # e.g. killed after its final save, before the plot
        plot_loss_curve(run_dir)
    return summary


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    summary = train(cfg, HydraConfig.get().runtime.output_dir)
    return summary.get("final_val_loss")  # the value a Hydra sweeper would optimize


if __name__ == "__main__":
    main()
