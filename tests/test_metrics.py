"""MFU and peak-FLOP/s look-up, the MFU the trainer logs when a peak is configured, the events'
timestamps, and the wandb mirror: one wandb run per run directory (faked wandb.init, then real offline)."""

from __future__ import annotations

import math
import sys
import time
import types

import pytest

from tests.conftest import TINY, compose_config
from training import rundir
from training.metrics import MetricsLogger, mfu, peak_flops, wandb_init_args
from training.rundir import read_metrics


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("some new accelerator", None),
    (None, None),
])
def test_peak_flops_by_device_name(name, expected):
    assert peak_flops(name) == expected


def test_override_wins_and_mfu_is_the_ratio():
    assert peak_flops("NVIDIA H100 80GB HBM3", override=5e14) == 5e14
    # 124M at seq 512 doing 400k tokens/s on a 989 TFLOP/s GPU: (6N + 12 L d T) * 4e5 / 989e12
    flops = 6 * 123_587_328 + 12 * 12 * 768 * 512
    assert mfu(flops, 4e5, 989e12) == pytest.approx(flops * 4e5 / 989e12)
    assert 0.3 < mfu(flops, 4e5, 989e12) < 0.4
    assert mfu(flops, 4e5, None) is None


@pytest.mark.slow
def test_trainer_logs_mfu_against_the_configured_peak(tmp_path):
    from hydra.utils import instantiate

    from train import train

    cfg = compose_config(TINY + ["trainer.max_steps=3", "trainer.warmup_steps=1", "trainer.peak_flops=1e12",
                                 "trainer.checkpoint_interval=0"])
    train(cfg, tmp_path)
    flops_per_token = instantiate(cfg.model).flops_per_token(cfg.trainer.seq_len)
    for event in (e for e in read_metrics(tmp_path) if "mfu" in e):
        assert event["mfu"] == pytest.approx(flops_per_token * event["tok_per_s"] / 1e12)


def test_every_event_carries_its_wall_clock_time(tmp_path):
    ticks = iter([1700000000.12345, 1700000001.5])
    logger = MetricsLogger(tmp_path, clock=lambda: next(ticks))
    logger.log({"step": 1, "tokens": 8, "train/loss": math.nan, "lr": 1e-3})
    logger.log({"step": 2, "tokens": 16, "val/loss": 3.5})
    logger.close()
    assert read_metrics(tmp_path) == [{"step": 1, "tokens": 8, "train/loss": None, "lr": 1e-3, "time": 1700000000.123},
                                      {"step": 2, "tokens": 16, "val/loss": 3.5, "time": 1700000001.5}]
    before = time.time()
    with_real_clock = MetricsLogger(tmp_path)
    with_real_clock.log({"step": 3})
    with_real_clock.close()
    assert before - 0.001 <= read_metrics(tmp_path)[-1]["time"] <= time.time() + 0.001


def test_wandb_names_a_single_run_and_a_sweep_job(tmp_path):
    single = wandb_init_args(tmp_path / "runs" / "2025-01-01_12-00-00", {"project": "p", "name": None})
    assert single == {"dir": str(tmp_path / "runs" / "2025-01-01_12-00-00"), "resume": "allow", "id": None,
                      "name": "2025-01-01_12-00-00", "group": None, "project": "p"}
    sweep = tmp_path / "multiruns" / "lr_sweep"
    job = wandb_init_args(sweep / "3", {"group": None}, sweep_dir=sweep)
    assert (job["name"], job["group"]) == ("lr_sweep/3", "lr_sweep")
    # A run directory outside the sweep directory (hydra.run.dir set by hand) is named as a single run.
    assert wandb_init_args(tmp_path / "mine", {}, sweep_dir=sweep)["group"] is None
    explicit = wandb_init_args(sweep / "3", {"name": "mine", "group": "g", "id": "x1"}, sweep_dir=sweep)
    assert (explicit["name"], explicit["group"], explicit["id"]) == ("mine", "g", "x1")


class FakeWandb:
    """Records wandb.init's arguments; its runs record what they log."""

    def __init__(self):
        self.inits = []

    def init(self, **kwargs):
        self.inits.append(kwargs)
        run = types.SimpleNamespace(id=kwargs.get("id") or f"new{len(self.inits)}", logged=[], finished=False)
        run.log = lambda data, step: run.logged.append((step, data))
        run.finish = lambda: setattr(run, "finished", True)
        self.run = run
        return run


def test_wandb_run_id_is_stored_and_reused_on_resume(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=fake.init))
    sweep, run_dir = tmp_path / "sweep", tmp_path / "sweep" / "0"
    logger = MetricsLogger(run_dir, config={"seed": 1}, wandb={"project": "p", "name": None}, sweep_dir=sweep)
    logger.log({"step": 5, "tokens": 40, "train/loss": 4.0, "mfu": None})
    logger.close()
    first = fake.run
    assert fake.inits[0] == {"config": {"seed": 1}, "dir": str(run_dir), "resume": "allow", "id": None,
                             "name": "sweep/0", "group": "sweep", "project": "p"}
    assert rundir.read_wandb_id(run_dir) == "new1" and first.finished
    assert first.logged == [(5, {"tokens": 40, "train/loss": 4.0})]  # step is wandb's step; no time, no nulls
    # The requeued job: same run directory, a new process -> the same wandb run.
    MetricsLogger(run_dir, config={"seed": 1}, wandb={"project": "p"}, sweep_dir=sweep).close()
    assert fake.inits[1]["id"] == "new1" and fake.inits[1]["resume"] == "allow"
    # A user's explicit id wins, and is what the run directory then records.
    MetricsLogger(run_dir, wandb={"id": "chosen"}).close()
    assert fake.inits[2]["id"] == "chosen" and rundir.read_wandb_id(run_dir) == "chosen"


def test_real_offline_wandb_resumes_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    for step in (1, 2):  # a first start, then a resume in the same run directory
        logger = MetricsLogger(tmp_path / "run", config={"seed": 1}, wandb={"project": "p", "mode": "offline"})
        logger.log({"step": step, "train/loss": 4.0 / step})
        logger.close()
    run_id = rundir.read_wandb_id(tmp_path / "run")
    folders = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.split("-")[3] == run_id for f in folders), folders
    assert [e["step"] for e in read_metrics(tmp_path / "run")] == [1, 2]
