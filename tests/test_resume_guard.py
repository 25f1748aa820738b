"""Tests of the run-directory guards (training/resume.py, training/metrics.rewind, train.py): a resume
with a changed config is refused before anything is written, a second trainer is locked out by a lock
that dies with its process, a restart leaves each metrics event once, and a rerun of a finished run
writes a missing loss plot.

    python -m pytest -q tests/test_resume_guard.py -p no:cacheprovider
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from omegaconf import OmegaConf

import train as train_module
from data.loader import BatchLoader
from tests.conftest import ROOT, TINY, compose_config
from training import checkpoint
from training.rundir import read_metrics, rewind
from training.resume import RunDirInUse, check_resume, run_dir_lock, with_new_hyperparameters

# Constant LR after a fixed 4-step warmup: a longer horizon leaves the LRs already used unchanged.
SHORT = TINY + ["schedule=constant", "trainer.max_steps=12"]


# --- check_resume: the config comparison, without training ---------------------------------------

@pytest.mark.parametrize("overrides, keys", [
    (["optimizer.lr=2e-3"], ["optimizer.lr"]),
    (["seed=7"], ["seed"]),
    (["model.n_head=4"], ["model.n_head"]),
    (["schedule=wsd"], ["schedule._target_"]),
    (["trainer.batch_size=16", "optimizer.betas=[0.8,0.99]"], ["trainer.batch_size", "optimizer.betas"]),
])
def test_changed_model_optimizer_seed_or_schedule_is_refused_naming_the_keys(overrides, keys):
    recorded = compose_config(SHORT)
    with pytest.raises(ValueError, match="Cannot resume") as err:
        check_resume(recorded, compose_config(SHORT + overrides), step=10)
    named = [line.split(":")[0].strip() for line in str(err.value).splitlines() if line.startswith("  ")]
    assert set(keys) <= set(named) and all(k in keys or k.startswith("schedule.") for k in named)
    assert "trainer.init_from" in str(err.value)


def test_operational_changes_are_accepted():
    recorded = compose_config(SHORT)
    check_resume(recorded, compose_config(SHORT + [
        "trainer.log_interval=5", "trainer.keep_checkpoints=3", "trainer.progress=true", "trainer.device=auto",
        "trainer.checkpoint_interval=4", "paths.cache_dir=/elsewhere"]), step=10)


def test_longer_horizon_is_accepted_when_the_trained_lrs_stay_the_same():
    check_resume(compose_config(SHORT), compose_config(SHORT + ["trainer.max_steps=40"]), step=12)


def test_longer_horizon_that_rewrites_the_past_names_the_first_changed_update():
    # WSD, T=20: cooldown over the last floor(0.2 * 20) = 4 updates, from update 16 (still the peak) on,
    # so update 17 is the first below the peak; with T=40 it is still at the peak.
    wsd = TINY + ["schedule=wsd"]
    with pytest.raises(ValueError, match=r"changes the LR of update 17\b"):
        check_resume(compose_config(wsd), compose_config(wsd + ["trainer.max_steps=40"]), step=20)
    check_resume(compose_config(wsd), compose_config(wsd + ["trainer.max_steps=40"]), step=16)
    # The default warmup is 10% of the horizon: 2 updates at T=20, 4 at T=40 -> update 1 differs (1/2 vs 1/4).
    default_warmup = [o for o in wsd if not o.startswith("trainer.warmup_steps")]
    with pytest.raises(ValueError, match=r"update 1\b.*trainer.warmup_steps"):
        check_resume(compose_config(default_warmup), compose_config(default_warmup + ["trainer.max_steps=40"]), 5)


CALLED = []


def crafted(*args, **kwargs):
    CALLED.append(args)


def test_a_recorded_config_never_names_the_code_that_runs():
    """A config.yaml on disk that names another class (or nests one) is refused without running it."""
    recorded = OmegaConf.to_container(compose_config(SHORT), resolve=True)
    recorded["schedule"]["_target_"] = f"{__name__}.crafted"
    recorded["schedule"]["warmup_start"] = {"_target_": f"{__name__}.crafted"}
    with pytest.raises(ValueError, match="schedule._target_"):
        check_resume(recorded, compose_config(SHORT + ["trainer.max_steps=40"]), step=10)
    assert CALLED == []


def test_horizon_below_the_checkpoint_is_refused():
    with pytest.raises(ValueError, match="trainer.max_steps=8 is below the checkpoint's step 10"):
        check_resume(compose_config(SHORT), compose_config(SHORT + ["trainer.max_steps=8"]), step=10)


# --- the optimizer hyperparameters of a branch ---------------------------------------------------

def test_branch_keeps_the_parents_moments_but_takes_its_own_hyperparameters():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]
    parent = torch.optim.AdamW([{"params": params[:1], "weight_decay": 0.1}, {"params": params[1:], "weight_decay": 0.0}],
                               lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    sum((p ** 2).sum() for p in params).backward()
    parent.step()
    child = torch.optim.AdamW([{"params": params[:1], "weight_decay": 0.02}, {"params": params[1:], "weight_decay": 0.0}],
                              lr=5e-4, betas=(0.8, 0.99), eps=1e-6)
    child.load_state_dict(with_new_hyperparameters(parent.state_dict(), child))
    assert [g["weight_decay"] for g in child.param_groups] == [0.02, 0.0]
    assert all(g["betas"] == (0.8, 0.99) and g["eps"] == 1e-6 for g in child.param_groups)
    for p in params:
        assert torch.equal(child.state[p]["exp_avg"], parent.state[p]["exp_avg"])
        assert child.state[p]["step"] == 1
    other = torch.optim.AdamW([{"params": params}])
    with pytest.raises(ValueError, match="parameter groups of sizes \\[1, 1\\].*\\[2\\]"):
        with_new_hyperparameters(parent.state_dict(), other)


# --- metrics rewind ------------------------------------------------------------------------------

def write_events(run_dir, events):
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_rewind_keeps_events_up_to_the_checkpoint_step_once(tmp_path):
    events = [{"step": 0, "val/loss": 9.0}] + [{"step": s, "train/loss": 9.0 - s} for s in range(1, 6)]
    events += [{"step": 5, "val/loss": 4.0}, {"step": 5, "final/val_loss": 4.1}]
    write_events(tmp_path, events)
    rewind(tmp_path, 5)
    assert read_metrics(tmp_path) == events
    rewind(tmp_path, 5, drop_final=True)  # a longer horizon replaces the final evaluation
    assert read_metrics(tmp_path) == events[:-1]
    rewind(tmp_path, 3)
    assert read_metrics(tmp_path) == events[:4]
    rewind(tmp_path, None)  # a start from scratch
    assert read_metrics(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temporary file left


# --- the run-directory lock, with real processes -------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from training.resume import run_dir_lock
    with run_dir_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def hold_lock(run_dir):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_lock_refuses_a_second_process_and_dies_with_a_killed_one(tmp_path):
    child = hold_lock(tmp_path)
    try:
        with pytest.raises(RunDirInUse, match=f"pid {child.pid} on .*hydra.run.dir"):
            with run_dir_lock(tmp_path):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with run_dir_lock(tmp_path):  # SIGKILL left no stale lock
        pass


def test_only_rank_zero_of_a_distributed_job_takes_the_lock(tmp_path, monkeypatch):
    child = hold_lock(tmp_path)
    try:
        monkeypatch.setenv("RANK", "1")  # torchrun's other ranks share rank 0's directory
        with run_dir_lock(tmp_path):
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunDirInUse):
            with run_dir_lock(tmp_path):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_trainer_into_a_locked_directory_fails_before_writing(tmp_path):
    child = hold_lock(tmp_path)
    try:
        with pytest.raises(RunDirInUse):
            train_module.train(compose_config(SHORT), tmp_path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


# --- end to end on tiny runs ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished")
    train_module.train(compose_config(SHORT), run_dir)
    return run_dir


def keyed(events):
    """(step, kind) -> value, for the loss-like keys that must appear once each."""
    out = {}
    for e in events:
        for key in ("train/loss", "val/loss", "final/val_loss", "lr"):
            if key in e:
                assert (e["step"], key) not in out, f"duplicated {key} at step {e['step']}"
                out[(e["step"], key)] = e[key]
    return out


@pytest.mark.slow
def test_changed_config_is_refused_and_the_run_directory_untouched(finished, tmp_path):
    run_dir = shutil.copytree(finished, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"optimizer.lr: 0.001 -> 0.003[\s\S]*seed: 1337 -> 3"):
        train_module.train(compose_config(SHORT + ["optimizer.lr=3e-3", "seed=3"]), run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


@pytest.mark.slow
def test_rerun_of_a_finished_run_writes_its_missing_plot_and_reports_its_result(finished, tmp_path):
    run_dir = shutil.copytree(finished, tmp_path / "run")
    (run_dir / "loss.png").unlink()  # as if killed after the final save
    summary = train_module.train(compose_config(SHORT), run_dir)
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = [e["final/val_loss"] for e in read_metrics(finished) if "final/val_loss" in e]
    assert summary["final_val_loss"] == final[0] and read_metrics(run_dir) == read_metrics(finished)


@pytest.mark.slow
def test_kill_before_the_first_checkpoint_leaves_each_event_once(finished, tmp_path, monkeypatch):
    original = BatchLoader.next_batch
    calls = {"n": 0}

    def crashing(self):
        calls["n"] += 1
        if calls["n"] > 2 * 7:  # 2 micro-batches per step: crash in step 8, before the step-10 save
            raise KeyboardInterrupt("simulated kill")
        return original(self)

    monkeypatch.setattr(BatchLoader, "next_batch", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(compose_config(SHORT), tmp_path)
    monkeypatch.setattr(BatchLoader, "next_batch", original)
    assert not (tmp_path / "checkpoints").exists() and len(read_metrics(tmp_path)) > 7
    train_module.train(compose_config(SHORT), tmp_path)  # starts again from scratch
    assert keyed(read_metrics(tmp_path)) == keyed(read_metrics(finished))


@pytest.mark.slow
def test_longer_horizon_continues_and_replaces_the_final_evaluation(finished, tmp_path):
    run_dir = shutil.copytree(finished, tmp_path / "run")
    train_module.train(compose_config(SHORT + ["trainer.max_steps=16"]), run_dir)
    events = keyed(read_metrics(run_dir))  # asserts each event once
    assert [s for s, k in events if k == "final/val_loss"] == [16]
    assert sorted(s for s, k in events if k == "train/loss") == list(range(1, 17))
    old = keyed(read_metrics(finished))
    assert {k: v for k, v in events.items() if k[0] <= 12} == {k: v for k, v in old.items() if k[1] != "final/val_loss"}
    assert [events[(s, "lr")] for s in range(13, 17)] == [1e-3] * 4  # constant after the warmup


@pytest.mark.slow
def test_branch_trains_with_its_own_optimizer_hyperparameters(finished, tmp_path, monkeypatch):
    seen = {}

    def capture_fit(cfg, run_dir, model, optimizer, schedule, data, logger, device, world, start, resumed):
        seen["start"], seen["resumed"] = start, resumed
        return {"step": int(start["step"]), "final_val_loss": None}

    monkeypatch.setattr(train_module, "fit", capture_fit)
    parent = finished / "checkpoints" / "step_0000010"
    train_module.train(compose_config(SHORT + [f"trainer.init_from={parent}", "optimizer.weight_decay=0.02",
                                               "optimizer.betas=[0.8,0.99]"]), tmp_path)
    groups = seen["start"]["optimizer"]["param_groups"]
    assert not seen["resumed"] and [g["weight_decay"] for g in groups] == [0.02, 0.0]
    assert all(tuple(g["betas"]) == (0.8, 0.99) for g in groups)
    saved = checkpoint.load(parent)["optimizer"]  # the parent's settings and moments
    assert [g["weight_decay"] for g in saved["param_groups"]] == [0.1, 0.0]
    assert all(torch.equal(seen["start"]["optimizer"]["state"][i]["exp_avg"], s["exp_avg"])
               for i, s in saved["state"].items())
