"""Run set-up that happens before any model is built: config checks and building parts with Hydra
(with readable errors). The device side (device, precision, DDP/FSDP, compile) is training/parallelize.py.

Bad user input fails here with a ValueError that names the offending key, its value and the fix,
so that a wrong override costs seconds, not a model build or a GPU allocation.

The configs' resolvers and `compose` live in training/config.py (torch-free, for the analysis and
`python -m schedules plot`); importing this module registers them too, and re-exports CONFIG_DIR and
compose for the trainer's scripts and tests.
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from models.hf import check_start, hf_dir
from training.checkpoint import check_keep
from training.config import CONFIG_DIR, compose  # noqa: F401  (re-exported; registers the resolvers)
from training.distributed import World
from training.nonfinite import POLICIES
from training.parallelize import accumulation_steps, resolve_parallel
from training.schema import validate


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def check_config(cfg: DictConfig, world: World = World()) -> None:
    """Validate the values the trainer itself owns (schedules, data and model validate theirs), for a
    launch of `world.size` processes. Types first (training/schema.py): every check below compares
    values that are what they claim to be."""
    validate(cfg)
    t = cfg.trainer
    lr = cfg.optimizer.lr
    _require(isinstance(lr, (int, float)) and lr > 0,
             f"optimizer.lr={lr} is the peak learning rate and must be > 0 (e.g. optimizer.lr=1e-3).")
    _require(t.max_steps >= 1, f"trainer.max_steps={t.max_steps} must be >= 1.")
    _require(0 <= t.warmup_steps <= t.max_steps,
             f"trainer.warmup_steps={t.warmup_steps} must be in [0, trainer.max_steps={t.max_steps}].")
    _require(t.micro_batch_size >= 1 and t.batch_size >= t.micro_batch_size
             and t.batch_size % t.micro_batch_size == 0,
             f"trainer.batch_size={t.batch_size} must be a positive multiple of trainer.micro_batch_size="
             f"{t.micro_batch_size} (gradient accumulation = batch_size / micro_batch_size).")
    accumulation_steps(t.batch_size, t.micro_batch_size, world.size)  # divides at this world size
    resolve_parallel(t.parallel, world)
    _require(t.on_nonfinite in POLICIES, f"trainer.on_nonfinite={t.on_nonfinite}: use stop or skip.")
    _require(isinstance(t.max_nonfinite_skips, int) and t.max_nonfinite_skips >= 0,
             f"trainer.max_nonfinite_skips={t.max_nonfinite_skips} must be an integer >= 0.")
    max_len = cfg.model.get("max_seq_len")
    _require(t.seq_len >= 1 and (max_len is None or t.seq_len <= max_len),
             f"trainer.seq_len={t.seq_len} is above the model's max_seq_len={max_len}: lower trainer.seq_len "
             f"or raise model.max_seq_len.")
    for key in ("eval_interval", "checkpoint_interval"):
        _require(t[key] >= 0, f"trainer.{key}={t[key]} must be >= 0 (0 turns it off).")
    check_keep(t.keep_checkpoints)  # N >= 1, or 0 / null to keep all
    _require(t.log_interval >= 1, f"trainer.log_interval={t.log_interval} must be >= 1.")
    _require(t.eval_batch_size >= 1, f"trainer.eval_batch_size={t.eval_batch_size} must be >= 1.")
    _require(t.eval_batches >= 1, f"trainer.eval_batches={t.eval_batches} must be >= 1.")
    _require(t.grad_clip is None or t.grad_clip > 0,
             f"trainer.grad_clip={t.grad_clip} must be > 0, or null for no clipping.")
    _require(t.device in ("auto", "cpu", "cuda"), f"trainer.device={t.device}: use auto, cpu or cuda.")
    _require(t.device != "cuda" or torch.cuda.is_available(),
             "trainer.device=cuda but no CUDA device is visible: use trainer.device=auto or cpu.")
    _require(t.precision in ("auto", "fp32", "bf16"), f"trainer.precision={t.precision}: use auto, fp32 or bf16.")
    _require(t.resume in ("auto", "never"), f"trainer.resume={t.resume}: use auto or never.")
    _require(t.compile in ("auto", True, False), f"trainer.compile={t.compile}: use auto, true or false.")
    folder = hf_dir(str(t.init_from)) if t.init_from is not None else None
    if folder is not None:  # trainer.init_from=hf:DIR, a Hugging Face folder
        check_start(folder, cfg.model)  # names a missing folder or the differing fields
    elif t.init_from is not None:
        _require(Path(t.init_from).exists(),
                 f"trainer.init_from={t.init_from} does not exist: give a checkpoint directory such as "
                 f"<run dir>/checkpoints/step_0001000.")


def build(node: DictConfig, key: str, *args, **kwargs):
    """hydra.utils.instantiate, with a user's ValueError / FileNotFoundError re-raised as itself
    (prefixed with the config key) instead of buried inside Hydra's InstantiationException."""
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (ValueError, FileNotFoundError, TypeError)):
            raise type(cause)(f"{key}: {cause}") from err
        raise
