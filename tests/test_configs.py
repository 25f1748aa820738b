"""Every option of every config group composes with the real root config and instantiates to the
object its group promises (lightning-hydra-template's "instantiate everything" check)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from models.llama import Llama
from schedules import Schedule
from tests.conftest import CONFIG_DIR, compose_config
from training.metrics import MetricsLogger


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in ("model", "data", "schedule", "optimizer", "trainer", "logger", "experiment", "hydra"):
        assert options(group), group


@pytest.mark.parametrize("name", options("schedule"))
def test_schedule_options(name):
    cfg = compose_config([f"schedule={name}", "trainer.max_steps=1000", "trainer.warmup_steps=10"])
    if name == "from_array":  # needs the user's file; the inline-list form is tested in test_schedules
        cfg.schedule.source = [1.0, 0.5, 0.0]
    schedule = instantiate(cfg.schedule)
    assert isinstance(schedule, Schedule) and schedule.total_steps == 1000
    if getattr(schedule, "reactive", False):  # its LRs follow the run's val loss: only the run's log has them
        with pytest.raises(ValueError, match="metrics.jsonl"):
            schedule.multipliers()
    else:
        assert schedule.multipliers().shape == (1000,)


@pytest.mark.parametrize("name", options("model"))
def test_model_options(name):
    cfg = compose_config([f"model={name}"])
    with torch.device("meta"):  # the 210M model without allocating it
        model = instantiate(cfg.model)
    assert isinstance(model, Llama) and model.config.vocab_size >= 4096


@pytest.mark.parametrize("name", options("data"))
def test_data_options(name, tmp_path):
    cfg = compose_config([f"data={name}", f"paths.data_dir={tmp_path}"])
    if name == "embedded":
        data = instantiate(cfg.data)
        assert data.vocab_size == cfg.data.vocab_size and len(data.train) > len(data.val) > 0
    else:  # real data sets: not prepared here, so the loader must say how to prepare them
        with pytest.raises(Exception, match=f"python -m data.prepare data={name}"):
            instantiate(cfg.data)


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizer_options(name):
    cfg = compose_config([f"optimizer={name}"])
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer, torch.optim.Optimizer) and optimizer.defaults["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("name", options("logger"))
def test_logger_options(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # instantiate only; test_train runs wandb offline
    cfg = compose_config([f"logger={name}"])
    logger = instantiate(cfg.logger)(run_dir=tmp_path, config={})
    assert isinstance(logger, MetricsLogger)
    logger.close()


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_options(name):
    """Top-level overlays (schaipp2025/ has its own tests in test_experiments.py)."""
    cfg = compose_config([f"experiment={name}"])
    schedule = instantiate(cfg.schedule)
    assert schedule.total_steps == cfg.trainer.max_steps and cfg.trainer.seq_len <= cfg.model.max_seq_len
    if name.startswith("paper_"):
        assert cfg.trainer.batch_size * cfg.trainer.seq_len == 200 * 512  # the paper's global batch
        assert cfg.trainer.warmup_steps == 300  # absolute, whatever the horizon


@pytest.mark.parametrize("max_steps", [1, 9, 10, 20, 45, 400, 2999, 3000, 3010, 50000])
def test_default_warmup_is_a_tenth_of_the_horizon_capped_at_300(max_steps):
    cfg = compose_config([f"trainer.max_steps={max_steps}"])
    assert cfg.trainer.warmup_steps == min(max_steps // 10, 300)
    schedule = instantiate(cfg.schedule)  # the default WSD-0.2 fits: its cooldown starts after the warmup
    assert schedule.warmup_steps == cfg.trainer.warmup_steps and schedule.cooldown_start >= schedule.warmup_steps


def test_default_run_keeps_its_warmup_of_40_steps():
    """`python train.py` (400 steps) warms up for 40 steps, as before the warmup scaled with the horizon."""
    cfg = compose_config()
    assert (cfg.trainer.max_steps, cfg.trainer.warmup_steps) == (400, 40)
    assert compose_config(["trainer.warmup_steps=7"]).trainer.warmup_steps == 7  # an integer fixes it


def test_slurm_launcher_composes():
    """The README's SLURM sweep: hydra-submitit-launcher's config group is found and takes overrides."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                                 "hydra.launcher.gpus_per_node=1", "hydra.launcher.timeout_min=1440"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.gpus_per_node) == ("gpu", 1)
