"""Run set-up that happens before any model is built: the configs' resolvers, config checks,
building parts with Hydra (with readable errors). The device side (device, precision, DDP/FSDP,
compile) is training/parallelize.py.

Bad user input fails here with a ValueError that names the offending key, its value and the fix,
so that a wrong override costs seconds, not a model build or a GPU allocation.

Importing this module registers the OmegaConf resolvers that configs/ uses (`${warmup:...}`,
`${branch_step:...}`, `${checkpoint:...}`); everything that composes configs/ imports it first
(train.py, and through `compose` below tests/conftest.py and scripts/paper_runs.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from schedules.base import fraction_to_steps
from training.checkpoint import check_keep
from training.distributed import World
from training.nonfinite import POLICIES
from training.parallelize import accumulation_steps, resolve_parallel
from training.rundir import checkpoint_dir
from training.schema import validate


# ---------------------------------------------------------------------------------------------------
# Resolvers: the little arithmetic that configs need and YAML interpolation cannot do.
# ---------------------------------------------------------------------------------------------------
def default_warmup(max_steps: int, fraction: float, cap: int) -> int:
    """floor(fraction * max_steps), at most cap: a warmup that fits every horizon (a 20-step run
    warms up for 2 steps, the default 400-step run for 40, a long run for `cap`)."""
    return min(fraction_to_steps(int(max_steps), float(fraction)), int(cap))


def branch_step(max_steps: int, cooldown_fraction: float, every: int) -> int:
    """The step a WSD cooldown run of horizon T branches from a constant-LR run: its cooldown start
    T - floor(c T), rounded down to the parent's checkpoint interval `every` (the constant part of WSD
    equals the constant schedule, so any earlier checkpoint continues it exactly)."""
    if int(every) < 1:
        raise ValueError(f"branch_step: every={every} must be a checkpoint interval >= 1 (trainer.checkpoint_interval)")
    start = int(max_steps) - fraction_to_steps(int(max_steps), float(cooldown_fraction))
    return start - start % int(every)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("warmup", default_warmup, replace=True)
    OmegaConf.register_new_resolver("branch_step", branch_step, replace=True)
    OmegaConf.register_new_resolver("checkpoint", lambda run_dir, step: str(checkpoint_dir(run_dir, int(step))),
                                    replace=True)


register_resolvers()

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose(overrides=(), return_hydra_config: bool = False) -> DictConfig:
    """configs/config.yaml composed with `overrides`, as `python train.py <overrides>` would see it
    (resolvers registered); return_hydra_config=True adds the `hydra` node (sweeper params, dirs)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides),
                             return_hydra_config=return_hydra_config)


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
    if t.init_from is not None and str(t.init_from).startswith("hf:"):  # a Hugging Face folder
        from models.hf import check_start, hf_dir

        check_start(hf_dir(str(t.init_from)), cfg.model)  # names a missing folder or the differing fields
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
