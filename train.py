"""Pretrain a Llama model with a pluggable learning-rate schedule.

    python train.py                                   # small CPU job on the embedded default data
    python train.py model=llama124m data=slimpajama_6b trainer.device=cuda
    python train.py schedule=cosine optimizer.lr=3e-3 trainer.max_steps=2000
    python train.py -m optimizer.lr=1e-3,3e-3 schedule=constant,wsd     # a sweep, one dir per job
    python train.py trainer.init_from=<run>/checkpoints/step_0000200 schedule=wsd trainer.max_steps=800
    torchrun --standalone --nproc_per_node=4 train.py experiment=paper_124m trainer.parallel=fsdp  # 200 = 50 x 4

Reads top to bottom: compose the config (Hydra) -> check it -> build the parts -> prepare the model
for the device and the process group (training/parallelize.py) -> resume or branch from a checkpoint
-> the loop (training.loop.fit) -> final evaluation. Under torchrun / accelerate launch every process
runs this file; rank 0 alone writes the run directory (training/distributed.py). The run directory
(Hydra's output dir) receives config.yaml, metrics.jsonl, loss.png and checkpoints/. Rerunning the
same command there resumes (or, finished, just reports); a second trainer there at the same time, or
a resume with a changed model/data/optimizer/seed/schedule, fails before anything is written
(training/resume.py); a restart drops the metrics it will redo, so metrics.jsonl holds each event once.

A user error (a ValueError: a mistyped or misspelled setting, a missing data directory, a resume with a
changed config) prints one short message and exits with status 1; HYDRA_FULL_ERROR=1 prints the traceback.
Overrides are checked (training/schema.py) before Hydra creates a run directory.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from training import checkpoint
from training.distributed import World, barrier, broadcast_object, process_group, shared_run_dir
from training.loop import fit
from training.metrics import plot_loss_curve
from training.rundir import CONFIG_FILE, PLOT_FILE, clear_lineage, read_metrics, rewind, write_lineage
from training.optim import param_groups
from training.parallelize import parallelize, resolve_device
from training.resume import check_resume, run_dir_lock, with_new_hyperparameters
from training.schema import check_command_line
from training.setup import build, check_config

log = logging.getLogger("train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Silent:
    """The metrics logger of ranks other than 0: rank 0 alone writes the run's files."""

    def log(self, event: dict) -> None:
        pass

    def close(self) -> None:
        pass


def train(cfg: DictConfig, run_dir: str | Path, sweep_dir: str | None = None) -> dict:
    """Train as `cfg` says, writing everything into `run_dir`. Returns fit()'s summary. Under torchrun /
    accelerate launch every process calls it; they join one process group for the run."""
    world = World.from_env()
    if not world.main:  # one rank speaks: the others log warnings and errors only
        logging.getLogger().setLevel(logging.WARNING)
    # 1. Everything a user can get wrong is checked before any model is built.
    check_config(cfg, world)
    schedule = build(cfg.schedule, "schedule")
    data = build(cfg.data, "data")
    if cfg.model.vocab_size < data.vocab_size:  # larger is fine: padded rows are never targets
        raise ValueError(f"model.vocab_size={cfg.model.vocab_size} is below the data's vocab_size="
                         f"{data.vocab_size}: set model.vocab_size=${{data.vocab_size}}.")
    data.check_vocab(cfg.model.vocab_size, "model.vocab_size")  # each shard's largest id vs the embedding rows
    device = resolve_device(cfg.trainer.device, world)  # LOCAL_RANK picks the GPU

    with process_group(world, device):
        run_dir = shared_run_dir(run_dir, world)  # ranks may have resolved ${now:} a second apart
        # One trainer per run directory (rank 0 holds the lock; it dies with its process, even by SIGKILL).
        with run_dir_lock(run_dir):
            return _start_and_fit(cfg, run_dir, schedule, data, device, world, sweep_dir)


def recorded_config(latest: Path, run_dir: Path) -> DictConfig:
    """The config that wrote checkpoint `latest` (its own copy; the run's config.yaml otherwise)."""
    for path in (latest / checkpoint.CONFIG_FILE, run_dir / "config.yaml"):
        if path.is_file():
            return OmegaConf.load(path)
    raise ValueError(f"{latest} has no {checkpoint.CONFIG_FILE} and {run_dir} no config.yaml: cannot check that "
                     f"resuming it keeps its config. Restore the file, or start afresh: trainer.resume=never.")


def _start_and_fit(cfg: DictConfig, run_dir: Path, schedule, data, device: torch.device, world: World,
                   sweep_dir: str | None = None) -> dict:
    # 2. Where to start: our own latest checkpoint (resume), else a parent's (branch), else scratch.
    #    Rank 0 picks (and verifies) it for every rank. A resume is checked against the config that
    #    wrote its checkpoint before anything is written.
    latest = checkpoint.latest_checkpoint(run_dir) if cfg.trainer.resume == "auto" and world.main else None
    latest = broadcast_object(latest, world)
    start_from = latest or cfg.trainer.init_from
    start = checkpoint.load(start_from) if start_from else None
    if latest is not None:
        check_resume(recorded_config(latest, run_dir), cfg, int(start["step"]))
    if world.main:
        _open_run_dir(cfg, run_dir, latest, start, start_from)
    barrier(world)  # the run directory is ready before any rank reads or writes it
    log.info("Run directory: %s%s", run_dir, f" (continuing from {start_from})" if start else "")

    # 3. The parts: the model is built on every rank from the same seed, then prepared for the device
    #    (kernels, TF32, DDP / FSDP, compile: training/parallelize.py); the optimizer sees its parameters.
    seed_everything(cfg.seed)
    prepared = parallelize(build(cfg.model, "model"), cfg.trainer, device, world)
    optimizer = build(cfg.optimizer, "optimizer")(param_groups(prepared.raw, cfg.optimizer.weight_decay))
    if start is not None and latest is None:  # a branch trains with its own betas, weight decay, ...
        start = {**start, "optimizer": with_new_hyperparameters(start["optimizer"], optimizer)}
    logger = build(cfg.logger, "logger")(run_dir=run_dir, config=OmegaConf.to_container(cfg, resolve=True),
                                        sweep_dir=sweep_dir) \
        if world.main else _Silent()
    log.info("Model: %s parameters, %s kernels; %s schedule; on %s%s", f"{prepared.raw.num_params():,}",
             prepared.kernels, type(schedule).__name__, device,
             f" x {world.size} processes ({prepared.parallel})" if world.size > 1 else "")

    # 4. The loop, then the final evaluation on the whole validation split.
    try:
        summary = fit(cfg, run_dir, prepared, optimizer, schedule, data, logger, device, world,
                      start=start, resumed=latest is not None)
    finally:
        logger.close()
    if world.main and "final_val_loss" not in summary:  # a finished run, rerun: its recorded result
        finals = [e["final/val_loss"] for e in read_metrics(run_dir) if e.get("final/val_loss") is not None]
        summary["final_val_loss"] = finals[-1] if finals else None
    if world.main and not (run_dir / PLOT_FILE).is_file():  # e.g. killed after its final save, before the plot
        plot_loss_curve(run_dir)
    return summary


def _open_run_dir(cfg: DictConfig, run_dir: Path, latest, start, start_from) -> None:
    """Rank 0 prepares the run directory: events after the starting point are redone, so drop them
    (all of them when not resuming; the final evaluation too when a finished run continues to a
    longer horizon); then the config and, for a branch, the lineage."""
    step = int(start["step"]) if latest is not None else None
    checkpoint.open_run_dir(run_dir, resumed_from=latest)  # leftovers of killed saves; this run's id
    rewind(run_dir, step, drop_final=step is not None and step < cfg.trainer.max_steps)
    (run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True))
    clear_lineage(run_dir)  # a fresh start is nobody's branch
    if start is not None and latest is None and "hf_model" not in start:  # a branch: lineage for the analysis
        # (a start from a Hugging Face folder, trainer.init_from=hf:DIR, is weights only: no parent run)
        write_lineage(run_dir, start_from, int(start["step"]))


class UserError(CompactHydraException):
    """A user's ValueError, which Hydra then prints as its message alone, not as a traceback."""


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()  # a multirun job's wandb run is named and grouped after its sweep
    sweep_dir = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else None
    try:
        summary = train(cfg, hydra_cfg.runtime.output_dir, sweep_dir=sweep_dir)
    except ValueError as err:  # bad input (the project's convention); HYDRA_FULL_ERROR=1 shows the chain
        raise UserError(str(err)) from err
    return summary.get("final_val_loss")  # the value a Hydra sweeper would optimize


def check_overrides(argv: list[str]) -> None:
    """Misspelled keys and mistyped values fail here, before Hydra makes a run directory."""
    try:
        check_command_line(argv)
    except ValueError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(f"{err}\n(HYDRA_FULL_ERROR=1 prints the traceback)")


def cli() -> None:
    """`python train.py ...` and the `lrsched-train` console command (pyproject.toml)."""
    check_overrides(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
