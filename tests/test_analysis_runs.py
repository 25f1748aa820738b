"""analysis.runs: run directories (written here by hand), wandb runs (offline folder made with wandb
itself, online API faked), and the paper's JSON logs shipped in tests/data/paper_logs; gradient norms
(Run.grad_norms) and the LRs of reactive schedules (Run.multipliers).

    python -m pytest -q tests/test_analysis_runs.py -p no:cacheprovider
"""
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

import schedules
from analysis.runs import load, load_many
from schedules import WSD, Constant, CosinePaper
from training.rundir import GRAD_NORM_DTYPE, GRAD_NORMS_FILE

PAPER = Path(__file__).parent / "data" / "paper_logs"
PEAK = 3e-3
SCHEDULE = {"_target_": "schedules.WSD", "total_steps": 100, "warmup_steps": 10, "warmup_start": 0.0,
            "cooldown_fraction": 0.2, "cooldown_kind": "linear", "final_fraction": 0.0}


def write_run(path: Path, schedule: dict, lines: list, lineage: dict | None = None) -> Path:
    path.mkdir(parents=True)
    config = {"schedule": schedule, "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": PEAK},
              "trainer": {"max_steps": schedule["total_steps"], "warmup_steps": schedule["warmup_steps"]}}
    OmegaConf.save(OmegaConf.create(config), path / "config.yaml")
    (path / "metrics.jsonl").write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                                                for line in lines))
    if lineage is not None:
        (path / "lineage.json").write_text(json.dumps(lineage))
    return path


def train_event(step, loss, schedule):
    return {"step": step, "tokens": 64 * step, "train/loss": loss, "lr": PEAK * schedule(step - 1),
            "grad_norm": 1.0 / step, "tok_per_s": 1e4}


def test_run_directory(tmp_path):
    sched = WSD(total_steps=100, warmup_steps=10, cooldown_fraction=0.2)
    lines = [{"step": 0, "tokens": 0, "val/loss": 9.0}]
    lines += [train_event(k, 5.0 - 0.01 * k, sched) for k in range(10, 71, 10)]
    lines += ['{"step": 71, "tok']                                   # half-written line of a crash
    lines += [train_event(k, 4.0 - 0.01 * k, sched) for k in range(60, 101, 10)]   # resumed at 50
    lines += [{"step": 50, "tokens": 3200, "val/loss": 4.6}, {"step": 100, "tokens": 6400, "val/loss": 3.2},
              {"step": 100, "tokens": 6400, "final/val_loss": 3.1}]
    with pytest.warns(UserWarning, match="not JSON"):
        run = load(write_run(tmp_path / "run", SCHEDULE, lines))
    m = run.metrics
    assert list(m.columns[:5]) == ["step", "train/loss", "val/loss", "lr", "grad_norm"]
    assert m["step"].tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    row = m.set_index("step")
    assert row.loc[60, "train/loss"] == pytest.approx(3.4)               # the resumed value wins
    assert row.loc[50, "train/loss"] == pytest.approx(4.5) and row.loc[50, "val/loss"] == pytest.approx(4.6)
    assert np.isnan(row.loc[0, "train/loss"]) and np.isnan(row.loc[10, "val/loss"])
    assert run.final_val_loss == pytest.approx(3.1)
    assert run.peak_lr == PEAK and run.total_steps == 100
    schedule = run.schedule()
    assert isinstance(schedule, WSD) and schedule.cooldown_fraction == 0.2
    np.testing.assert_array_equal(run.lr(), PEAK * sched.multipliers())
    # The logged LR of step k is the LR of update k: peak * schedule(k - 1).
    logged = m.dropna(subset=["lr"])
    np.testing.assert_allclose(logged["lr"], run.lr()[logged["step"] - 1], rtol=1e-15)


def test_branched_run_is_stitched(tmp_path):
    constant = {**SCHEDULE, "_target_": "schedules.Constant"}
    for key in ("cooldown_fraction", "cooldown_kind", "final_fraction"):
        constant.pop(key)
    parent_sched = Constant(total_steps=100, warmup_steps=10)
    parent = write_run(tmp_path / "parent", constant,
                       [train_event(k, 5.0 - 0.01 * k, parent_sched) for k in range(10, 101, 10)]
                       + [{"step": k, "val/loss": 4.0 - 0.001 * k} for k in (50, 80, 100)])
    child_sched = WSD(total_steps=100, warmup_steps=10, cooldown_fraction=0.2)
    child = write_run(tmp_path / "child", SCHEDULE,
                      [{"step": 80, "val/loss": 3.9}] + [train_event(k, 3.0, child_sched) for k in (90, 100)]
                      + [{"step": 100, "final/val_loss": 2.9}],
                      lineage={"parent_run": str(parent), "branch_step": 80, "parent_checkpoint": "x"})
    run = load(child)
    m = run.metrics.set_index("step")
    assert m.index.tolist() == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert m.loc[70, "train/loss"] == pytest.approx(4.3)                # parent
    assert m.loc[80, "val/loss"] == pytest.approx(3.9)                  # the child wins at the branch step
    assert m.loc[80, "train/loss"] == pytest.approx(4.2)                # ... and the parent fills the rest
    assert m.loc[100, "train/loss"] == pytest.approx(3.0)               # child, not the parent's 4.0
    assert run.final_val_loss == pytest.approx(2.9) and run.branch_step == 80
    assert run.parent.schedule_config["_target_"] == "schedules.Constant"


def test_wandb_online_api(monkeypatch):
    class FakeRun:
        name = "wsd-run"
        config = {"schedule": SCHEDULE, "optimizer": {"lr": PEAK}}
        summary = {"final/val_loss": 3.05, "_runtime": 10}

        def scan_history(self):
            return iter([{"_step": 1, "train/loss": 4.0, "lr": 1e-4, "_runtime": 1.0},
                         {"_step": 2, "train/loss": 3.9, "lr": 2e-4, "val/loss": 3.95}])

    class FakeApi:
        def run(self, path):
            assert path == "me/proj/abc123"
            return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=FakeApi))
    run = load("me/proj/abc123")
    assert run.metrics["step"].tolist() == [1, 2]
    assert run.metrics["val/loss"].isna().tolist() == [True, False]
    assert "_runtime" not in run.metrics
    assert run.final_val_loss == pytest.approx(3.05) and run.peak_lr == PEAK
    assert isinstance(run.schedule(), WSD)


def test_wandb_offline_folder(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed")
    for key, value in {"WANDB_SILENT": "true", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path),
                       "WANDB_CONFIG_DIR": str(tmp_path), "WANDB_CACHE_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    sched = WSD(total_steps=100, warmup_steps=10, cooldown_fraction=0.2)
    config = {"schedule": SCHEDULE, "optimizer": {"lr": PEAK}, "trainer": {"max_steps": 100}}
    run = wandb.init(mode="offline", dir=str(tmp_path), project="analysis-test", config=config)
    for k in range(10, 101, 10):   # as training.metrics mirrors metrics.jsonl: the step goes to step=
        run.log({"train/loss": 5.0 - 0.01 * k, "lr": PEAK * sched(k - 1)}, step=k)
        if k % 50 == 0:
            run.log({"val/loss": 4.9 - 0.01 * k}, step=k)
    run.log({"final/val_loss": 3.8}, step=100)
    run.finish()
    wandb.teardown()     # waits for wandb's service to finish writing the run's log
    folder = next((tmp_path / "wandb").glob("offline-run-*"))
    loaded = load(folder)
    m = loaded.metrics.set_index("step")
    assert m.index.tolist() == list(range(10, 101, 10))
    assert m.loc[50, "val/loss"] == pytest.approx(4.4) and m.loc[40, "train/loss"] == pytest.approx(4.6)
    assert loaded.final_val_loss == pytest.approx(3.8)
    np.testing.assert_allclose(m["lr"].to_numpy(), loaded.lr()[m.index - 1], rtol=1e-15)
    assert loaded.config["trainer"]["max_steps"] == 100


def paper_file(pattern):
    (path,) = PAPER.glob(pattern)
    return path


def test_paper_cooldown_run_is_stitched_to_its_stable_parent():
    # The resume path names the parent "..._decay_sqrt_0.0_..."; its log is filed as decay_linear
    # (a relabelled run) and is found by its recorded name.
    path = paper_file("ann124-0.2_*_lr0.001_*decay_linear_0.2_iter50000_*.json")
    run = load(path)
    raw = json.loads(path.read_text())
    assert run.branch_step == 40000 and run.parent is not None and run.parent.name.startswith("stable-124m")
    m = run.metrics.set_index("step")
    assert m.index.min() == 0 and m.index.max() == 50000
    assert m.loc[20000, "val/loss"] == run.parent.metrics.set_index("step").loc[20000, "val/loss"]
    assert run.final_val_loss == raw["summary"]["final-val/loss"]
    # The schedule re-instantiated from the translated flags reproduces the logged LR exactly
    # (their logger records at iteration k the LR set for the next update: schedule(k)).
    sched = run.schedule()
    assert isinstance(sched, WSD) and sched.cooldown_fraction == 0.2 and sched.warmup_start == 0.01
    logged = run.metrics.dropna(subset=["lr"])
    logged = logged[logged["step"] < 50000]
    np.testing.assert_allclose(logged["lr"], run.peak_lr * sched(logged["step"].to_numpy()), rtol=1e-6, atol=1e-12)
    assert set(logged["step"]) >= {200, 39800, 40200, 49800}                  # parent and child both present


def test_paper_cosine_run_and_resumed_history():
    path = paper_file("cos-zero-124m_*_lr0.001_*iter50000_*.json")
    run = load(path)
    sched = run.schedule()
    assert isinstance(sched, CosinePaper) and sched.final_fraction == pytest.approx(1e-7 / 1e-3)
    logged = run.metrics.dropna(subset=["lr"])
    logged = logged[logged["step"] < 50000]      # torch's OneCycleLR past its last step differs by 1e-12
    np.testing.assert_allclose(logged["lr"], run.peak_lr * sched(logged["step"].to_numpy()), rtol=1e-6)
    # A resumed wandb run is exported newest segment first: a repeated step keeps its first value.
    val = json.loads(path.read_text())["history"]["val"]
    first = {}
    for step, loss in zip(val["iter"], val["val_loss"]):
        first.setdefault(step, loss)
    repeated = [s for s in first if val["iter"].count(s) > 1]
    assert repeated
    m = run.metrics.set_index("step")
    assert all(m.loc[s, "val/loss"] == first[s] for s in repeated)


def test_load_many_and_errors(tmp_path):
    runs = load_many(str(PAPER / "stable-124m_*.json"))
    assert [r.peak_lr for r in runs] == sorted(r.peak_lr for r in runs) and len(runs) == 4
    with pytest.raises(ValueError, match="no runs match"):
        load_many(str(tmp_path / "nothing-*"))
    with pytest.raises(ValueError, match="cannot read a run"):
        load(tmp_path)


def test_failed_launches_are_skipped_with_the_reason(tmp_path):
    sched = WSD(total_steps=100, warmup_steps=10, cooldown_fraction=0.2)
    sweep = tmp_path / "multirun"
    write_run(sweep / "0", SCHEDULE, [train_event(10, 4.0, sched), {"step": 100, "final/val_loss": 3.0}])
    write_run(sweep / "1", SCHEDULE, [])                                   # metrics.jsonl left empty
    (sweep / "2" / ".hydra").mkdir(parents=True)                           # died before writing config.yaml
    (sweep / "3").mkdir()
    (sweep / "3" / "config.yaml").write_text("schedule: {}\n")             # config but no metrics.jsonl
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    with pytest.warns(UserWarning) as caught:
        runs = load_many(str(sweep / "*"))
    assert [r.name for r in runs] == ["0"]
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 3 and "multirun.yaml" not in " ".join(messages)
    assert messages[0].endswith("/1: no metrics logged (a failed launch?)")
    assert messages[1].endswith("/2: no metrics.jsonl (a failed launch?)")
    assert messages[2].endswith("/3: no metrics.jsonl (a failed launch?)")
    # The sweep folder itself (Hydra's multirun.yaml in it) stands for its job directories.
    with pytest.warns(UserWarning):
        assert [r.name for r in load_many(str(sweep))] == ["0"]


def test_logged_non_finite_losses_are_kept_as_inf(tmp_path):
    """train.py writes a non-finite loss as null (json reads NaN too): kept as +inf, while NaN stays
    "not logged at this step"."""
    sched = WSD(total_steps=100, warmup_steps=10, cooldown_fraction=0.2)
    lines = [train_event(10, 4.0, sched), '{"step": 20, "train/loss": null, "lr": 0.003}',
             '{"step": 30, "val/loss": NaN}']
    m = load(write_run(tmp_path / "run", SCHEDULE, lines)).metrics.set_index("step")
    assert m.loc[20, "train/loss"] == np.inf and m.loc[30, "val/loss"] == np.inf
    assert np.isnan(m.loc[10, "val/loss"]) and np.isnan(m.loc[30, "train/loss"])


def write_grad_norms(run_dir: Path, steps, l2, l1) -> None:
    """grad_norms.bin in the trainer's format (training.rundir.GRAD_NORM_DTYPE, raw little-endian records)."""
    records = np.zeros(len(steps), dtype=GRAD_NORM_DTYPE)
    records["step"], records["l2"], records["l1"] = steps, l2, l1
    records.tofile(run_dir / GRAD_NORMS_FILE)


def test_grad_norms_of_run_directories(tmp_path):
    """grad_norms.bin: every update's l2 and l1, a branch's stitched onto its parent's at the branch step;
    without it, the logged grad_norm (l2 of the last update of each log event)."""
    constant = {"_target_": "schedules.Constant", "total_steps": 100, "warmup_steps": 10, "warmup_start": 0.0}
    parent_sched = Constant(total_steps=100, warmup_steps=10)
    parent = write_run(tmp_path / "parent", constant, [train_event(k, 4.0, parent_sched) for k in range(10, 101, 10)])
    steps = np.arange(1, 101)
    write_grad_norms(parent, steps, l2=1.0 / steps, l1=10.0 / steps)
    child = write_run(tmp_path / "child", SCHEDULE, [train_event(k, 3.0, WSD(100, 10, cooldown_fraction=0.2))
                                                     for k in (90, 100)],
                      lineage={"parent_run": str(parent), "branch_step": 80})
    write_grad_norms(child, steps[80:], l2=np.full(20, 7.0), l1=np.full(20, 70.0))
    norms = load(child).grad_norms
    assert list(norms.columns) == ["step", "l2", "l1"] and norms["step"].tolist() == list(range(1, 101))
    np.testing.assert_allclose(norms["l2"], np.r_[1.0 / steps[:80], np.full(20, 7.0)], rtol=1e-7)   # float32 on disk
    np.testing.assert_allclose(norms["l1"], np.r_[10.0 / steps[:80], np.full(20, 70.0)], rtol=1e-7)
    assert norms["l2"].dtype == np.float64 and "grad_norms.bin" in norms.attrs["origin"]
    # A parent without grad_norms.bin: the branch's own records only.
    (parent / GRAD_NORMS_FILE).unlink()
    assert load(child).grad_norms["step"].tolist() == list(range(81, 101))
    # No grad_norms.bin at all: the metrics' grad_norm (train_event logs 1/step), l1 unknown.
    fallback = load(parent).grad_norms
    assert fallback["step"].tolist() == list(range(10, 101, 10))
    np.testing.assert_allclose(fallback["l2"], 1.0 / np.arange(10, 101, 10))
    assert fallback["l1"].isna().all() and "metrics" in fallback.attrs["origin"]


def test_paper_log_grad_norms(tmp_path):
    """The published logs have no grad_norm column: no norms. A log with one gives it as l2 by step."""
    assert load(paper_file("stable-124m_*_lr0.001_*.json")).grad_norms.empty
    flags = {"iterations": 1000, "warmup_steps": 100, "scheduler": "wsd", "wsd_fract_decay": 0.2, "lr": 1e-3}
    iters = [600, 800, 1000, 200, 400, 600]     # a resumed export: the newest segment first
    log = {"name": "toy", "config": flags, "history": {"train": {
        "iter": iters, "train_loss": [3.0] * 6, "train_lr": [1e-3] * 6, "grad_norm": [6.0, 8.0, 10.0, 2.0, 4.0, 9.9]}}}
    (tmp_path / "toy.json").write_text(json.dumps(log))
    norms = load(tmp_path / "toy.json").grad_norms
    assert norms["step"].tolist() == [200, 400, 600, 800, 1000]
    assert norms["l2"].tolist() == [2.0, 4.0, 6.0, 8.0, 10.0] and norms["l1"].isna().all()


def test_reactive_schedule_lrs_come_from_the_log(tmp_path, monkeypatch):
    """A schedule with `reactive = True` is never asked for its LRs: update u (0-based) takes the lr
    logged at the first logged step >= u + 1 (the LR changes after the validations at steps 40 and 70)."""
    class Plateau(schedules.Schedule):
        reactive = True

        def _shape(self, steps):
            raise AssertionError("the LRs of a reactive schedule are not computed from its config")

    monkeypatch.setattr(schedules, "Plateau", Plateau, raising=False)
    config = {"_target_": "schedules.Plateau", "total_steps": 100, "warmup_steps": 0, "warmup_start": 0.0}
    expected = np.repeat([1.0, 0.1, 0.01], [40, 30, 30])
    lines = [{"step": k, "train/loss": 3.0, "lr": PEAK * expected[k - 1]} for k in range(10, 101, 10)]
    run = load(write_run(tmp_path / "run", config, lines + [{"step": 40, "val/loss": 3.1}]))
    assert run.reactive and not load(paper_file("stable-124m_*_lr0.001_*.json")).reactive
    np.testing.assert_allclose(run.multipliers(), expected, rtol=1e-15)
    np.testing.assert_allclose(run.lr(), PEAK * expected, rtol=1e-15)
    # The project's own reactive schedule refuses to compute its LRs for an array of steps.
    plateau = {**config, "_target_": "schedules.StepOnPlateau", "factor": 0.1, "patience": 2}
    run = load(write_run(tmp_path / "plateau", plateau, lines))
    with pytest.raises(ValueError, match="is reactive"):
        run.schedule().multipliers()
    assert run.reactive
    np.testing.assert_allclose(run.multipliers(), expected, rtol=1e-15)
    # With its validations in the log, StepOnPlateau replays them: exact, whatever the log interval
    # (patience 1, torch's rule: a cut once more than 1 evaluation in a row failed to improve on the best,
    # 2.9 at step 20 -> bad at 30 and 40 -> the cut applies from update 40; 2.5 at 50 improves, no more cuts).
    vals = [{"step": s, "val/loss": v} for s, v in ((10, 3.0), (20, 2.9), (30, 2.95), (40, 2.95), (50, 2.5))]
    replayed = load(write_run(tmp_path / "replayed", {**plateau, "patience": 1}, lines + vals)).multipliers()
    np.testing.assert_array_equal(replayed, np.repeat([1.0, 0.1], [40, 60]))
    unlogged = load(write_run(tmp_path / "no_lr", config, [{"step": 10, "train/loss": 3.0}]))
    with pytest.raises(ValueError, match="reactive schedule .schedules.Plateau. but logged no lr"):
        unlogged.multipliers()
