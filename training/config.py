"""The configs' OmegaConf resolvers and `compose`, without torch: what the trainer, the analysis and
`python -m schedules plot` need to read configs/ as `python train.py` does.

    from training.config import compose
    cfg = compose(["schedule=wsd", "trainer.max_steps=1000"])

Importing this module registers the resolvers configs/ uses: `${warmup:...}` (the default warmup of
trainer.warmup_steps), `${branch_step:...}` and `${checkpoint:...}` (the paper's cooldown branches).
training/setup.py imports it, so everything that composes configs/ through either has them.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from schedules.base import fraction_to_steps
from training.rundir import checkpoint_dir


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


def group_options(group: str) -> list[str]:
    """The options of a config group (`data` -> embedded, fineweb_edu, ...): its YAML files' names."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
