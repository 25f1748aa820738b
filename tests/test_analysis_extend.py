"""analysis.extend and `advise extend`: continuing a finished run to a longer horizon (THEORY.md
section 2 (i)). Each schedule family is checked in the bound (gamma* of the continuation equals the
LR in use, the kept steps are identical, keeping the LR is worse) and through the trainer's own
config composition; the command runs on paper logs, on tiny real CPU runs with and without the
checkpoints it needs, on a branched run and on a run with two validation points.

    python -m pytest tests/test_analysis_extend.py -p no:cacheprovider
"""
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import train as train_module
from analysis import advise
from analysis.bound import optimal_lr
from analysis.cli import main
from analysis.extend import checkpoint_interval, extension_options, tuned_lr_of
from analysis.runs import load
from tests.conftest import ROOT, TINY, compose_config

PAPER = Path(__file__).parent / "data" / "paper_logs"
LR = 1e-3
START = {"warmup_steps": 0, "warmup_start": 0.0}
COOL = {"cooldown_kind": "linear", "final_fraction": 0.0}
FAMILIES = {   # config at T1, T2, the first step the continuation must keep identical to the run
    "wsd": ({"_target_": "schedules.WSD", "total_steps": 4000, **START, "cooldown_fraction": 0.2, **COOL}, 8000, 3200),
    "constant": ({"_target_": "schedules.Constant", "total_steps": 1000, **START}, 4000, 1000),
    "inverse_sqrt": ({"_target_": "schedules.InverseSqrt", "total_steps": 4000, **START, "timescale": 100,
                      "cooldown_fraction": 0.2, **COOL}, 8000, 3200),
    "two_stage_wsd": ({"_target_": "schedules.TwoStageWSD", "total_steps": 4000, **START, "drop_step": None,
                       "drop_fraction": 0.4, "transition_steps": 0, "rho": 0.5, "cooldown_fraction": 0.2, **COOL},
                      8000, 3200),
}


def advise_extend(*argv):
    """`python -m analysis advise extend ARGV`."""
    return main(["advise", "extend", *map(str, argv)])


def printed(capsys) -> str:
    """What was printed, with the advisor's wrapping of long lines at spaces undone."""
    return " ".join(capsys.readouterr().out.split(" \n"))


def composed(overrides: str, tmp_path):
    """The schedule and peak LR that train.py builds from the printed overrides."""
    cfg = compose_config(overrides.split() + [f"hydra.run.dir={tmp_path}"])
    return instantiate(cfg.schedule).multipliers(), cfg.optimizer.lr


@pytest.mark.parametrize("family", list(FAMILIES))
def test_continuations_keep_gamma_star_and_the_kept_steps(family, tmp_path):
    config, T2, keep = FAMILIES[family]
    old = advise.shape_of(config)
    table = extension_options(config, LR, T2, array_dir=tmp_path).set_index("option")
    target = optimal_lr(old)[0]                   # theory units: the tuned LR (= LR) is gamma*(T1)
    baseline = table.iloc[0]
    assert baseline.name == "same LR (baseline)" and baseline["keeps"] == keep
    same_lr = advise.shape_of(baseline["config"])     # the run's schedule at T2, without a drop
    continuations = table[(table["kind"] == "continuation") & (table.index != baseline.name)]
    assert len(continuations) == 2 and continuations["config"].notna().all()
    for option, row in continuations.iterrows():
        new = advise.shape_of(row["config"])
        assert new.size == T2 and row["lr"] == LR
        assert optimal_lr(new)[0] == pytest.approx(target, rel=0.01), option
        # Identical to the run before the first step that differs, and that step is where it should be.
        k = int(row["keeps"])
        np.testing.assert_array_equal(new[:k], old[:k])
        if "rho" in option:
            assert k == keep and new[keep] == pytest.approx(row["value"] * same_lr[keep], rel=1e-12)
        else:       # the new cooldown starts at T2 - floor(c T2), still at the old level there
            start = T2 - math.floor(row["value"] * T2 + 1e-9)
            assert k == min(start + 1, keep)
        # Keeping the LR is worse; clearly so for WSD (the paper's case). 1/sqrt decays on its own after
        # T1, so its same-LR continuation is already close to tuned (gamma* 0.95x the LR): 0.1-2% there.
        assert row["bound"] < (0.97 if family == "wsd" else 1.0) * baseline["bound"], option
        # The printed overrides build the same multipliers and peak LR in the trainer's config.
        multipliers, peak = composed(row["overrides"], tmp_path)
        np.testing.assert_array_equal(multipliers, new)
        assert peak == LR
    multipliers, _ = composed(baseline["overrides"], tmp_path)
    np.testing.assert_array_equal(multipliers[:keep], old[:keep])
    # Restarts: the tuned LR transferred, gamma*(T2)/gamma*(T1) (gamma*(T) ~ T^-1/2 for WSD).
    rescaled = table.loc["same schedule, LR rescaled (restart)"]
    expected = LR * optimal_lr(advise.shape_of({**config, "total_steps": T2}))[0] / target
    assert rescaled["kind"] == "restart" and rescaled["lr"] == pytest.approx(expected, rel=1e-12)
    if family == "wsd":
        assert rescaled["lr"] / LR == pytest.approx((T2 / config["total_steps"]) ** -0.5, rel=0.15)


def test_constant_run_short_extension_has_no_drop():
    """Extended by 1.5x, a constant run's LR (tuned with the constant's log factor) is below gamma* of
    every two-stage continuation, so no rho <= 1 is advised; the adapted cooldown still is."""
    config = {"_target_": "schedules.Constant", "total_steps": 1000, **START}
    table = extension_options(config, LR, 1500).set_index("option")
    drop = table.loc["drop to rho (two-stage WSD)"]
    assert drop["config"] is None and not isinstance(drop["overrides"], str) and "not advised" in drop["note"]
    target = optimal_lr(advise.shape_of(config))[0]
    for rho in (1.0, 0.05):
        two_stage = {"_target_": "schedules.TwoStageWSD", "total_steps": 1500, **START, "drop_step": 1000,
                     "drop_fraction": None, "transition_steps": 0, "rho": rho, "cooldown_fraction": 0.2, **COOL}
        assert optimal_lr(advise.shape_of(two_stage))[0] > target
    assert isinstance(table.loc["adapted cooldown (WSD)", "overrides"], str)


@pytest.mark.parametrize("name", ["cosine", "linear", "rex"])
def test_decayed_schedules_offer_only_restarts(name, tmp_path, capsys):
    config = advise.group_config(name, total_steps=1000, warmup_steps=0, warmup_start=0.0)
    table = extension_options(config, LR, 2000)
    assert list(table["kind"]) == ["restart"] * 3 and table["keeps"].isna().all()
    assert "no continuation keeps the run's state" in table["note"].iloc[0]
    linear = advise.group_config("linear", total_steps=2000, warmup_steps=0, warmup_start=0.0)
    ratio = optimal_lr(advise.shape_of(linear))[0] / optimal_lr(advise.shape_of(config))[0]
    assert table["lr"].iloc[2] == pytest.approx(LR * ratio, rel=1e-12)
    if name == "cosine":    # the command on a run directory holding only a final loss: a message, restarts
        run = tmp_path / "run"
        run.mkdir()
        OmegaConf.save(OmegaConf.create({"schedule": config, "optimizer": {"lr": LR}}), run / "config.yaml")
        (run / "metrics.jsonl").write_text(json.dumps({"step": 1000, "final/val_loss": 3.5}) + "\n")
        table = advise_extend("--run", run, "--steps", 2000, "--no-plot")
        out = printed(capsys)
        assert "no continuation keeps the run's state" in out and "0 validation points" in out
        assert "schedule=linear trainer.max_steps=2000" in out and "init_from" not in out


def test_paper_log_has_no_checkpoints(tmp_path, capsys):
    run = next(PAPER.glob("ann124-0.2_*_lr0.001_*decay_linear_0.2_iter50000_*.json"))
    table = advise_extend("--run", run, "--steps", 100000, "--g-model", "constant", "--out", tmp_path)
    out = printed(capsys)
    assert "assumed tuned" in out and "paper logs and wandb runs carry no checkpoints to start from" in out
    assert "trainer.init_from" not in out and "schedule=two_stage_wsd" in out
    assert "trainer.checkpoint_interval=10000 trainer.keep_checkpoints=0" in out     # 40,000 = 4 x 10,000
    assert np.isfinite(table["predicted_final_loss"].to_numpy(dtype=float)).all()
    for suffix in (".png", ".pdf"):
        assert (tmp_path / f"extension{suffix}").stat().st_size > 0


def paper_sweep(prefix, lrs):
    return [str(next(PAPER.glob(f"{prefix}_*_lr{lr}_*decay_linear_*iter50000*.json"))) for lr in lrs]


def exact_optimum(files):
    """sqrt(A/B) of A/lr + B lr + C through three (LR, final loss) points: a 3 x 3 solve."""
    runs = [load(f) for f in files]
    lrs = np.array([r.peak_lr for r in runs])
    A, B, _ = np.linalg.solve(np.stack([1 / lrs, lrs, np.ones(3)], axis=1), [r.final_val_loss for r in runs])
    return math.sqrt(A / B)


def test_tuned_lr_from_a_sweep_and_its_status():
    run = load(paper_sweep("ann124-0.2", ["0.001"])[0])
    assert tuned_lr_of(run)[:2] == (1e-3, "assumed tuned") and tuned_lr_of(run, lr=5e-4)[:2] == (5e-4, "given")
    lr, status, how = tuned_lr_of(run, sweep=paper_sweep("ann124-0.2", ["0.0001", "0.0005", "0.001", "0.002"]))
    assert status == "bracketed" and 5e-4 < lr < 2e-3 and "4 runs" in how
    three = paper_sweep("ann124-0.4", ["0.0001", "0.0005", "0.001"])
    lr, status, how = tuned_lr_of(load(three[2]), sweep=three)
    assert status == "extrapolated" and lr == pytest.approx(exact_optimum(three), rel=1e-6)
    assert f"{lr / 1e-3:.2f}x outside" in how
    three = paper_sweep("ann124-0.6", ["0.0001", "0.0005", "0.001"])       # optimum 2.6x above: undetermined
    lr, status, how = tuned_lr_of(load(three[2]), sweep=three)
    assert lr is None and status == "undetermined" and exact_optimum(three) > 2 * 1e-3
    assert "run next: optimizer.lr=" in how


def test_undetermined_optimum_and_bad_input_exit_nonzero(tmp_path, capsys):
    three = paper_sweep("ann124-0.6", ["0.0001", "0.0005", "0.001"])
    with pytest.raises(SystemExit) as stop:
        advise_extend("--run", three[2], "--steps", 100000, *[a for f in three for a in ("--sweep", f)], "--no-plot")
    out = printed(capsys)
    assert stop.value.code not in (0, None) and "tuned LR at T1: undetermined" in out and "run next" in out
    assert "Hydra overrides" not in out
    hydra_only, nothing_logged = tmp_path / "hydra_only", tmp_path / "nothing_logged"     # failed launches
    (hydra_only / ".hydra").mkdir(parents=True)
    nothing_logged.mkdir()
    OmegaConf.save(compose_config(FAST + ["schedule=wsd"]), nothing_logged / "config.yaml", resolve=True)
    (nothing_logged / "metrics.jsonl").write_text("")
    for argv, why in ((["--run", three[2], "--steps", 50000], "must exceed the run's horizon 50000"),
                      (["--run", hydra_only, "--steps", 100], "cannot read a run"),
                      (["--run", nothing_logged, "--steps", 100], "a failed launch?")):
        with pytest.raises(SystemExit, match=re.escape(why)):
            advise_extend(*argv, "--no-plot")
    # The exit status of the command itself (a SystemExit with a message exits with status 1).
    done = subprocess.run([sys.executable, "-m", "analysis", "advise", "extend", "--run", str(three[2]), "--steps",
                           "50000", "--no-plot"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "must exceed" in done.stderr


def test_checkpoint_interval():
    assert checkpoint_interval(40000, 50000) == (10000, 0)
    assert checkpoint_interval(18, 24) == (6, 0)
    assert checkpoint_interval(30791, 50000) == (10000, 791)     # 30791 = 41 x 751: too many checkpoints


# ---------------------------------------------------------------------------------------------------
# A tiny real CPU run: constant LR, 24 steps, checkpoints at 8, 16 and 24, validation every 4 steps;
# and a WSD child branched from its step 16 (cooldown from step 18), written as train.py writes a
# branched run (its own training would add a full-validation pass, the slow part of a tiny run).
# ---------------------------------------------------------------------------------------------------
# eval_batch_size stays TINY's 128: the final pass over the whole validation split dominates a tiny run,
# and on a CPU it takes about 4x longer in batches of 32.
FAST = TINY + ["trainer.max_steps=24", "trainer.micro_batch_size=8", "trainer.eval_interval=4",
               "trainer.eval_batches=1", "trainer.checkpoint_interval=8", "trainer.keep_checkpoints=0"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("extend_runs")
    parent, child = root / "parent", root / "child"
    train_module.train(compose_config(FAST + ["schedule=constant"]), parent)
    child.mkdir()
    branch = parent / "checkpoints" / "step_0000016"
    cfg = compose_config(FAST + ["schedule=wsd", "schedule.cooldown_fraction=0.25", f"trainer.init_from={branch}"])
    (child / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    events = [json.loads(line) for line in (parent / "metrics.jsonl").read_text().splitlines()]
    (child / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events if e["step"] >= 16))
    shutil.copytree(parent / "checkpoints" / "step_0000024", child / "checkpoints" / "step_0000024")  # its last
    (child / "lineage.json").write_text(json.dumps({"parent_run": str(parent), "branch_step": 16,
                                                    "parent_checkpoint": str(branch)}))
    return parent, child


def overrides_of(out: str, option: str) -> str:
    """The override line printed under `option`."""
    lines = out.splitlines()
    return lines[lines.index(f"  {option}:") + 1].strip()


@pytest.mark.slow     # trains the tiny run
def test_tiny_runs_start_from_existing_checkpoints(tiny_runs, tmp_path, capsys):
    parent, child = tiny_runs
    # The constant run keeps all 24 steps: its final checkpoint starts the continuation.
    table = advise_extend("--run", parent, "--steps", 48, "--out", tmp_path)
    out = printed(capsys)
    assert "predicted_final_loss" in table and "the constant G_t model" in out    # 6 points after step 2
    drop = overrides_of(out, "drop to rho (two-stage WSD)")
    assert drop.endswith(f"trainer.init_from={parent / 'checkpoints' / 'step_0000024'}")
    # The printed command builds a schedule identical to the run on the kept steps.
    multipliers, peak = composed(drop.rsplit(" ", 1)[0], tmp_path)
    np.testing.assert_array_equal(multipliers[:24] * peak, 1e-3 * advise.shape_of(table["config"].iloc[0])[:24])
    # The branched child keeps steps < 18, before its branch at 16 only the parent's checkpoints hold
    # its history: the parent's step 16 is the latest at or before 18 (its step 24 is on another path).
    advise_extend("--run", child, "--steps", 48, "--no-plot")
    out = printed(capsys)
    assert overrides_of(out, "drop to rho (two-stage WSD)").endswith(
        f"trainer.init_from={parent / 'checkpoints' / 'step_0000016'}")
    assert "repeats steps 16-18" in out and "step_0000024" not in out


@pytest.mark.slow     # trains the tiny run
def test_tiny_run_without_the_checkpoint_and_with_two_validation_points(tiny_runs, tmp_path, capsys):
    parent, child = tiny_runs
    copy = tmp_path / "parent"
    shutil.copytree(parent, copy)
    for step in (8, 16):
        shutil.rmtree(copy / "checkpoints" / f"step_{step:07d}")
    events = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    kept = [e for e in events if "val/loss" not in e or e["step"] in (0, 24)]      # two validation points
    (copy / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    lineage = json.loads((child / "lineage.json").read_text())
    shutil.copytree(child, tmp_path / "child", ignore=shutil.ignore_patterns("lineage.json"))
    (tmp_path / "child" / "lineage.json").write_text(json.dumps({**lineage, "parent_run": str(copy)}))
    table = advise_extend("--run", tmp_path / "child", "--steps", 48, "--no-plot")
    out = printed(capsys)
    assert "trainer.init_from" not in out and "predicted_final_loss" not in table
    assert "no checkpoint at or before step 18 (closest: " in out
    assert "trainer.checkpoint_interval=6 trainer.keep_checkpoints=0" in out      # 18 = 3 x 6
    table = advise_extend("--run", copy, "--steps", 48, "--no-plot")
    out = printed(capsys)
    assert "predicted_final_loss" not in table and "the run has 2 validation points, too few" in out
