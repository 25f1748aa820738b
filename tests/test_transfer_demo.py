"""End-to-end test of `python -m scripts.transfer_demo --smoke` (the whole loop on a laptop, shrunk to a
micro model and a few steps): the grid trains, the WSD cooldowns branch exactly from the constant runs,
and every number the demo reports follows from its own run directories.

    python -m pytest -q tests/test_transfer_demo.py
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import train as train_module
from analysis.advise import transfer_lr
from analysis.fit import fit_lr_sweep
from scripts import transfer_demo
from scripts.transfer_demo_report import fit_schedules, leave_one_out
from training.rundir import read_metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer_demo")
    result = transfer_demo.main(["--smoke", "--out", str(out)])
    return out, result


def run_config(out, name):
    return OmegaConf.load(out / "runs" / name / "config.yaml")


def test_outputs_are_written(smoke):
    out, result = smoke
    for suffix in (".png", ".pdf"):
        assert (out / f"transfer_demo{suffix}").stat().st_size > 10_000
    assert json.loads((out / "transfer_demo.json").read_text()) == result
    schedules = {(row["schedule"], row["lr"]) for row in result["runs"]}
    assert schedules == {(s, lr) for s in ("constant", "wsd", "linear") for lr in transfer_demo.SMOKE_LRS}


def test_reported_final_losses_are_those_the_runs_logged(smoke):
    out, result = smoke
    for row in result["runs"]:
        cfg = run_config(out, row["run"])
        assert cfg.optimizer.lr == row["lr"]
        assert cfg.schedule._target_ == {"constant": "schedules.Constant", "wsd": "schedules.WSD",
                                         "linear": "schedules.Linear"}[row["schedule"]]
        logged = [e["final/val_loss"] for e in read_metrics(out / "runs" / row["run"]) if "final/val_loss" in e]
        assert logged == [row["final_val_loss"]]


def test_cooldowns_branch_exactly_from_the_constant_runs(smoke):
    out, result = smoke
    for lr in transfer_demo.SMOKE_LRS:
        wsd_name, constant_name = f"wsd_lr{lr:.3g}", f"constant_lr{lr:.3g}"
        wsd = instantiate(run_config(out, wsd_name).schedule)
        constant = instantiate(run_config(out, constant_name).schedule)
        lineage = json.loads((out / "runs" / wsd_name / "lineage.json").read_text())
        assert lineage["branch_step"] == wsd.cooldown_start == result["settings"]["total_steps"] - math.floor(
            transfer_demo.COOLDOWN * result["settings"]["total_steps"])
        assert lineage["parent_run"] == str((out / "runs" / constant_name).resolve())
        # Exact: up to the branch the WSD schedule is the constant one (same warmup, same peak).
        steps = np.arange(wsd.cooldown_start)
        np.testing.assert_array_equal(wsd(steps), constant(steps))
        assert wsd(np.array([wsd.total_steps - 1]))[0] < 1.0


def test_fits_and_transfer_follow_from_the_runs(smoke):
    out, result = smoke
    by_schedule = {}
    for row in result["runs"]:
        by_schedule.setdefault(row["schedule"], []).append((row["lr"], row["final_val_loss"]))
    shapes = {s: instantiate(run_config(out, f"{s}_lr{transfer_demo.SMOKE_LRS[0]:.3g}").schedule).multipliers()
              for s in by_schedule}
    fits = {s: fit_lr_sweep(*zip(*points)) for s, points in by_schedule.items()}
    for schedule, fit in fits.items():
        assert result["fits"][schedule]["optimal_lr"] == pytest.approx(fit.optimal_lr, rel=1e-9)
    for target in ("linear", "constant"):
        t = result["transfer"][target]
        assert t["theory_factor"] == pytest.approx(transfer_lr(1.0, shapes["wsd"], shapes[target]), rel=1e-12)
        if result["fits"]["wsd"]["status"] == "undetermined":
            assert t["predicted_lr"] is None        # never a number from an undetermined optimum
        else:
            expected = transfer_lr(fits["wsd"].optimal_lr, shapes["wsd"], shapes[target])
            assert t["predicted_lr"] == pytest.approx(expected, rel=1e-9)
        if t["predicted_lr"] is not None and t["measured_lr"] is not None:
            assert t["predicted/measured"] == pytest.approx(t["predicted_lr"] / fits[target].optimal_lr, rel=1e-9)
            assert t["measured_factor"] == pytest.approx(fits[target].optimal_lr / fits["wsd"].optimal_lr, rel=1e-9)
    # The linear-decay optimum of the bound is above WSD-0.2's (THEORY.md section 2: ln ratio > 0).
    assert result["transfer"]["linear"]["theory_factor"] > 1.0


def test_rerun_reuses_finished_runs(smoke, monkeypatch, capsys):
    out, result = smoke
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = transfer_demo.main(["--smoke", "--out", str(out)])
    varying = ("wall_s", "reused_runs")
    assert {k: v for k, v in again.items() if k not in varying} == {k: v for k, v in result.items() if k not in varying}
    assert (result["reused_runs"], again["reused_runs"]) == (0, len(result["runs"]))
    assert capsys.readouterr().out.count("finished earlier, reused") == len(result["runs"])
    with pytest.raises(ValueError, match="trained with other settings"):   # never mixes two grids
        transfer_demo.main(["--smoke", "--out", str(out), "trainer.max_steps=14"])


def test_a_diverged_run_is_left_out_and_caps_its_fit(tmp_path, monkeypatch):
    """The cooldown of a diverged constant run is not trained (it has no parent state to start from),
    and a diverged LR is the ceiling of its schedule's fit: no optimum at or above it."""
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("trained a branch of a diverged run"))
    jobs = transfer_demo.plan(transfer_demo.SMOKE_LRS, list(transfer_demo.SMOKE), tmp_path)
    parent, branch = jobs[-3], jobs[-2]
    assert (parent.schedule, branch.schedule, branch.parent) == ("constant", "wsd", parent.name)
    (tmp_path / parent.name).mkdir()
    (tmp_path / parent.name / transfer_demo.DIVERGED).write_text("loss is nan at step 7\n")
    assert transfer_demo.run_jobs([branch], list(transfer_demo.SMOKE), tmp_path) == 0
    assert transfer_demo.finished(tmp_path / branch.name)
    table = pd.DataFrame({"schedule": "wsd", "lr": [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2],
                          "final_val_loss": [4.2, 4.0, 3.9, 4.0, np.nan]})
    fit = fit_schedules(table)["wsd"]
    assert fit.ceiling == 1.6e-2 and list(fit.lrs) == [1e-3, 2e-3, 4e-3, 8e-3]


def test_leave_one_out_range_of_an_exact_sweep_is_its_optimum():
    """Losses exactly A/lr + B lr + C: every refit without one LR recovers sqrt(A/B); with one point off
    the curve the refits that keep it move, and the range opens around the true optimum."""
    A, B, C, lrs = 2e-4, 40.0, 3.7, np.geomspace(1e-3, 8e-3, 5)
    exact = A / lrs + B * lrs + C
    low, high = leave_one_out(fit_lr_sweep(lrs, exact))
    assert low == pytest.approx(math.sqrt(A / B), rel=1e-6) and high == pytest.approx(math.sqrt(A / B), rel=1e-6)
    low, high = leave_one_out(fit_lr_sweep(lrs, exact + np.r_[0, 0, 0, 0, 0.05]))
    assert low < math.sqrt(A / B) * 0.999 and high >= math.sqrt(A / B) * (1 - 1e-6)   # the refit without it is exact
    assert leave_one_out(fit_lr_sweep(lrs[:3], exact[:3])) is None   # 3 LRs: no refit has 3 points


def test_bad_input_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="at least 3 distinct positive peak LRs"):
        transfer_demo.main(["--smoke", "--out", str(tmp_path), "--lrs", "1e-3,2e-3"])
    with pytest.raises(SystemExit):
        transfer_demo.main(["--smoke", "--out", str(tmp_path), "--lrs", "1e-3,fast"])
    with pytest.raises(ValueError, match="agree to 3 significant digits"):
        transfer_demo.main(["--smoke", "--out", str(tmp_path), "--lrs", "1e-3,2e-3,2.0001e-3"])
    with pytest.raises(SystemExit, match="positive number of CPU threads"):
        transfer_demo.main(["--smoke", "--out", str(tmp_path), "--threads", "0"])
