"""The paper's GPU runs as configs (configs/experiment/schaipp2025/) and their job listing
(scripts/paper_runs.py): every listed job composes and builds its schedule, the sweeps are the
paper's grid (the LRs and cooldown fractions of its 124M sweep), branches start where the schedules
say and continue their parents exactly, the advised rho keeps the bound's optimal LR, and the
GPU-hours arithmetic is right.

    python -m pytest -q tests/test_experiments.py
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate

from analysis.bound import optimal_lr
from scripts import paper_runs
from tests.conftest import compose_config

TOKENS_PER_STEP = 200 * 512   # the paper's global batch (200 sequences of 512), 102,400 tokens per step
PAPER_LRS = [1e-4, 5e-4, 1e-3, 2e-3, 3e-3]
FRACTIONS = [0.1, 0.2, 0.4, 0.6, 0.8, 0.9]


@pytest.fixture(scope="module")
def jobs():
    """Every job of every overlay, composed once (46 compositions, the slow part of this file)."""
    return paper_runs.list_jobs(throughput={"*": 4.0e5, "llama210m": 2.5e5}, gpus_per_job=2)


def rows(jobs, experiment):
    return jobs[jobs["experiment"] == f"schaipp2025/{experiment}"]


def test_jobs_are_hydras_own_sweep():
    """The listing expands an overlay's sweeper params exactly as Hydra's basic sweeper does, and a
    command-line value of a swept key replaces that sweep (as `python train.py -m` does)."""
    parser = OverridesParser.create()
    params = ["schedule.cooldown_fraction=0.1,0.2,0.4,0.6,0.8,0.9", "optimizer.lr=1e-4,5e-4,1e-3,2e-3,3e-3"]
    (hydra_jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(params), None)
    ours = paper_runs.expand("schaipp2025/124m_cooldown")
    assert [job[1:] for job in ours] == hydra_jobs and len(ours) == 30
    narrowed = paper_runs.expand("schaipp2025/124m_cooldown", ["optimizer.lr=1e-3", "trainer.max_steps=25000"])
    assert [job[1:] for job in narrowed] == [[f"schedule.cooldown_fraction={c}", "optimizer.lr=1e-3",
                                              "trainer.max_steps=25000"] for c in FRACTIONS]


def test_every_job_composes_and_follows_the_paper_setup(jobs):
    assert len(jobs) == 5 + 30 + 1 + 3 + 3 + 2 + 1 + 1
    for _, job in jobs.iterrows():   # each row: composed as train.py would, its schedule built
        s = job["schedule"]
        assert (s.warmup_steps, s.warmup_start) == (300, 0.01)   # the paper's warmup, whatever the horizon
        assert s.total_steps == job["max_steps"] and job["steps"] == job["max_steps"] - job["start_step"]
        assert job["tokens"] == job["steps"] * TOKENS_PER_STEP   # 200 x 512 tokens per step
        assert job["model"] == ("llama210m" if "210m" in job["experiment"] else "llama124m")


def test_cooldown_grid_branches_at_the_cooldown_start_and_continues_its_parent_exactly(jobs):
    parents = rows(jobs, "124m_constant")
    assert sorted(float(o.split("=")[1]) for o in parents["overrides"]) == PAPER_LRS
    assert set(parents["max_steps"]) == {50000} and set(parents["stage"]) == {1}
    grid = rows(jobs, "124m_cooldown")
    seen = set()
    for _, job in grid.iterrows():
        c = job["schedule"].cooldown_fraction
        lr = float(job["overrides"].split("optimizer.lr=")[1])
        seen.add((c, lr))
        assert job["start_step"] == round(50000 * (1 - c)) and job["stage"] == 2   # T(1 - c): every one a checkpoint
        parent = parents[parents["run_dir"] == job["init_from"].split("/checkpoints/")[0]].iloc[0]
        assert math.isclose(float(parent["overrides"].split("=")[1]), lr)
        assert job["start_step"] % 5000 == 0        # the parents checkpoint every 5000 steps
        # The branch is exact: before the branch step WSD and the parent's constant schedule agree.
        before = np.arange(job["start_step"] + 1)
        np.testing.assert_array_equal(job["schedule"](before), parent["schedule"](before))
    assert seen == {(c, lr) for c in FRACTIONS for lr in PAPER_LRS}


def test_210m_horizons_branch_from_the_latest_checkpoint_before_the_cooldown(jobs):
    wsd, cosine = rows(jobs, "210m_wsd"), rows(jobs, "210m_cosine")
    horizons = [22222, 33333, 44444]
    assert sorted(wsd["max_steps"]) == sorted(cosine["max_steps"]) == horizons
    for _, job in wsd.iterrows():
        s = job["schedule"]
        assert (type(s).__name__, s.cooldown_fraction) == ("WSD", 0.2)
        # the paper's runs of these horizons start at 15k / 25k / 35k (paper-logs: ann210-0.2_*)
        assert job["start_step"] == 5000 * (s.cooldown_start // 5000) and job["start_step"] in (15000, 25000, 35000)
    for _, job in cosine.iterrows():
        lrs = 1e-3 * job["schedule"].multipliers()
        assert lrs.max() == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)   # 1e-3 to 1e-4
        assert pd_isna(job["init_from"])
    assert set(wsd["stage"]) == {2} and set(rows(jobs, "210m_constant")["max_steps"]) == {40000}


def pd_isna(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@pytest.mark.parametrize("name, horizon", [("124m_continue_rho_100k", 100000), ("124m_continue_rho_200k", 200000)])
def test_continued_training_rho_keeps_the_optimal_lr(jobs, name, horizon):
    """docs/theory.md section 3: rho makes gamma* of the whole two-stage schedule equal gamma* of the
    WSD-0.2 run at 50k (within 1%), which the same-LR continuation does not do."""
    (job,) = [j for _, j in rows(jobs, name).iterrows()]
    base = instantiate(compose_config(["experiment=paper_124m", "trainer.max_steps=50000"]).schedule)
    gamma_base = optimal_lr(base.multipliers())[0]
    s = job["schedule"]
    assert (s.total_steps, s.drop_start, job["start_step"]) == (horizon, base.cooldown_start, base.cooldown_start)
    assert optimal_lr(s.multipliers())[0] == pytest.approx(gamma_base, rel=0.01)
    same = rows(jobs, "124m_continue_same_lr")
    (same_lr,) = [j["schedule"] for _, j in same.iterrows() if j["max_steps"] == horizon]
    assert optimal_lr(same_lr.multipliers())[0] < 0.9 * gamma_base   # keeping the LR overshoots gamma*
    assert job["init_from"] == same[same["max_steps"] == horizon]["init_from"].iloc[0]


def test_gpu_hours_arithmetic(jobs):
    for _, job in jobs.iterrows():
        assert job["tokens"] == job["steps"] * TOKENS_PER_STEP
        rate = 2.5e5 if job["model"] == "llama210m" else 4.0e5
        assert job["gpu_hours"] == pytest.approx(job["steps"] * TOKENS_PER_STEP / rate / 3600 * 2, rel=1e-12)
    # one 124M constant run: 50k steps x 102,400 tokens at 4e5 tokens/s on 2 GPUs = 7.11 GPU-hours
    assert rows(jobs, "124m_constant")["gpu_hours"].iloc[0] == pytest.approx(50000 * 102400 / 4e5 / 3600 * 2)
    assert paper_runs.gpu_hours(3.6e9, 1e6, 4) == pytest.approx(4.0)


def test_throughput_arguments():
    assert paper_runs.parse_throughput(["4e5", "llama210m=2.5e5"]) == {"*": 4e5, "llama210m": 2.5e5}
    with pytest.raises(ValueError, match="MODEL=NUMBER"):
        paper_runs.parse_throughput(["fast"])
    with pytest.raises(ValueError, match="must be > 0"):
        paper_runs.parse_throughput(["-1"])
    with pytest.raises(ValueError, match=r"no --tokens-per-s for model \['llama210m'\]"):
        paper_runs.list_jobs("schaipp2025/210m_constant", throughput={"llama124m": 4e5})
    with pytest.raises(ValueError, match="no experiment matches"):
        paper_runs.experiment_names("schaipp2025/nothing_*")


def test_dry_run_without_throughput_says_how_to_get_one(capsys):
    jobs = paper_runs.main(["--dry-run", "--experiment", "schaipp2025/210m_constant"])
    out = capsys.readouterr().out
    assert "gpu_hours" not in jobs and "give --tokens-per-s" in out and "not measured" in out
    assert "stage 1: python train.py -m experiment=schaipp2025/210m_constant" in out
