"""Tests of the schedule benchmark (scripts/schedule_benchmark): the bound's worst-case ordering, the
harness (determinism, reactive schedules driven by observe), the LR tuning against a brute-force
argmin, and both studies' --smoke runs end to end (tables, ranks, refined schedules, claims).

    python -m pytest -q tests/test_schedule_benchmark.py -p no:cacheprovider
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from scripts.schedule_benchmark import chen, defazio
from scripts.schedule_benchmark.__main__ import main, parse_args
from scripts.schedule_benchmark.harness import Job, ScheduleSpec, rank, run_one, schedule_config, tune
from training.setup import compose

LINEAR = ScheduleSpec("linear", ("schedule=linear",))
PLATEAU = ScheduleSpec("plateau", ("schedule=plateau",))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bound_ordering_matches_theory_section_5():
    """THEORY.md section 5: at T = 100, D = G = 1, tuned gamma: linear 0.2036 < REX 0.2061 < cosine 0.2091
    < constant 0.2485; and linear decay has the smallest Omega* of the six usual schedules."""
    table = defazio.bound_table(100).set_index("schedule")["omega_star"]
    for name, published in {"linear": 0.2036, "rex": 0.2061, "cosine": 0.2091, "constant": 0.2485}.items():
        assert table[name] == pytest.approx(published, abs=1e-3), name
    assert set(table.index) == {"linear", "rex", "cosine", "constant", "step", "wsd"}
    assert table.idxmin() == "linear" and table.is_monotonic_increasing


def test_schedule_config_is_the_trainers():
    """Setting the horizon on the composed config equals composing with trainer.max_steps=T."""
    for overrides in [("schedule=step", "schedule.milestones=[0.5,0.75]"), ("schedule=onecycle",)]:
        direct = compose([*overrides, "trainer.max_steps=37", "trainer.warmup_steps=0"]).schedule
        assert np.array_equal(instantiate(schedule_config(overrides, 37)).multipliers(),
                              instantiate(direct).multipliers())


def test_runs_are_deterministic_per_seed():
    a, b = (run_one(Job("logreg_cancer", LINEAR, "adamw", 0.03, seed=3, steps=30, record_norms=True))
            for _ in range(2))
    other = run_one(Job("logreg_cancer", LINEAR, "adamw", 0.03, seed=4, steps=30))
    assert a.row == b.row and a.curve == b.curve and np.array_equal(a.norms, b.norms)
    assert other.row["final_train"] != a.row["final_train"]
    # lr = peak x schedule(s) at update s (0-based), as the trainer does
    assert np.allclose(a.lrs, 0.03 * (1 - np.arange(30) / 30))
    # l1 >= l2 for any vector, both finite and positive
    assert np.all(a.norms[:, 1] >= a.norms[:, 0]) and np.all(a.norms > 0)


def test_a_diverging_run_is_marked_and_tunes_to_inf():
    res = run_one(Job("lsq_diabetes", LINEAR, "sgd", 50.0, seed=0, steps=40))
    assert res.row["diverged"] and math.isnan(res.row["metric"])


def test_reactive_schedule_is_driven_by_observe():
    """The harness tells the plateau schedule every periodic validation loss at the completed-update
    count: replaying the recorded (step, val loss) pairs into a fresh schedule gives the same LRs."""
    job = Job("logreg_cancer", PLATEAU, "sgd", 1.0, seed=0, steps=200)
    res = run_one(job)
    replay = instantiate(schedule_config(PLATEAU.overrides, 200))
    expected = []
    evals = {step: val for step, _, val in res.curve[1:]}
    for s in range(200):
        expected.append(job.lr * replay(s))
        if s + 1 in evals:
            replay.observe(s + 1, evals[s + 1])
    assert np.allclose(res.lrs, expected)
    assert res.lrs.min() < job.lr  # this noisy, high-LR run plateaus: the schedule did cut


def test_tune_is_the_grid_argmin_of_the_seed_mean():
    rng = np.random.default_rng(0)
    rows = [dict(problem="p", optimizer=o, budget=1.0, schedule=s, lr=lr, seed=seed,
                 metric=float(rng.uniform()) if (s, lr) != ("b", 0.1) else float("nan"))
            for o in ("sgd", "adamw") for s in ("a", "b", "c") for lr in (0.01, 0.1, 1.0) for seed in range(3)]
    table = pd.DataFrame(rows)
    tuned = tune(table)
    for (o, s), grp in table.groupby(["optimizer", "schedule"]):
        means = {lr: np.mean(g["metric"].fillna(np.inf)) for lr, g in grp.groupby("lr")}
        best = min(means, key=means.get)
        got = tuned[(tuned.optimizer == o) & (tuned.schedule == s)].iloc[0]
        assert got["lr"] == best and got["mean"] == pytest.approx(means[best])
        assert got["at_edge"] == (best in (0.01, 1.0)) and got["n_seeds"] == 3
    ranks = rank(tuned)
    for _, grp in ranks.groupby(["optimizer"]):
        assert sorted(grp["rank"]) == [1, 2, 3]
        assert list(grp.sort_values("rank")["mean"]) == sorted(grp["mean"])


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="unknown problem"):
        parse_args(["chen", "--problems", "mnist"])
    with pytest.raises(ValueError, match="unknown optimizer"):
        parse_args(["chen", "--optimizers", "lion"])
    with pytest.raises(ValueError, match="--lrs"):
        parse_args(["defazio", "--lrs", "0.1", "-1"])
    with pytest.raises(ValueError, match="--seeds"):
        parse_args(["defazio", "--seeds", "0"])
    with pytest.raises(ValueError, match="finite number > 0"):
        run_one(Job("logreg_cancer", LINEAR, "sgd", 0.0, seed=0, steps=5))


@pytest.fixture(scope="module")
def chen_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("chen")
    main(["chen", "--smoke", "--optimizers", "sgd", "--out", str(out), "--quiet"])
    return out, parse_args(["chen", "--smoke", "--optimizers", "sgd"])


def test_chen_smoke_tables(chen_smoke):
    out, args = chen_smoke
    runs = pd.read_csv(out / "runs.csv")
    specs, _ = chen.available()
    grid = args.lr_table[("logreg_cancer", "sgd")]
    assert len(runs) == len(specs) * len(chen.BUDGETS) * len(grid) * args.seeds
    assert len(runs.drop_duplicates(["schedule", "budget", "lr", "seed"])) == len(runs)  # one row per run
    assert sorted(runs["steps"].unique()) == sorted(chen.budget_steps(args.steps, b) for b in chen.BUDGETS)
    ranked = pd.read_csv(out / "ranked.csv")
    assert set(ranked["lr"]) <= set(grid)
    for _, grp in ranked.groupby(["problem", "optimizer", "budget"]):
        assert sorted(grp["rank"]) == list(range(1, len(specs) + 1))
    mean_ranks = pd.read_csv(out / "mean_ranks.csv").set_index("schedule")
    assert list(mean_ranks.columns) == ["sgd low", "sgd high", "all"]
    assert mean_ranks["all"].sum() == pytest.approx(len(specs) * (len(specs) + 1) / 2)
    assert json.loads((out / "runs.json").read_text())[0].keys() >= {"schedule", "budget", "lr", "seed", "metric"}
    report = (out / "report.md").read_text()
    assert "REX best on average" in report and (out / "ranks.png").exists()
    plateau = runs[runs.schedule == "plateau"]
    assert (plateau["final_lr"] <= plateau["lr"] + 1e-12).all()


def test_defazio_smoke_refines_from_linear_runs(tmp_path):
    main(["defazio", "--smoke", "--problems", "logreg_cancer", "--optimizers", "adamw", "--out", str(tmp_path),
          "--quiet"])
    args = parse_args(["defazio", "--smoke", "--problems", "logreg_cancer", "--optimizers", "adamw"])
    runs = pd.read_csv(tmp_path / "runs.csv")
    n_grid = len(args.lr_table[("logreg_cancer", "adamw")])
    assert len(runs) == (len(defazio.BASELINES) + 1) * n_grid * args.seeds
    shape = np.load(tmp_path / "refined" / "logreg_cancer_adamw.npy")
    assert shape.shape == (args.steps,) and shape.max() == pytest.approx(1.0) and shape[-1] == pytest.approx(0.0)
    vs = pd.read_csv(tmp_path / "refined_vs_linear.csv")
    assert len(vs) == 1 and vs["verdict"].iloc[0] in ("refined better", "linear better", "within seed spread")
    ranked = pd.read_csv(tmp_path / "ranked.csv")
    assert sorted(ranked["rank"]) == list(range(1, len(defazio.BASELINES) + 2))
    assert (tmp_path / "curves.png").exists() and (tmp_path / "refined_shapes.png").exists()


@pytest.mark.slow
def test_llm_case_refines_from_the_trainers_grad_norms(tmp_path):
    """Through the real trainer: the linear run's grad_norms.bin (one record per update) feeds the
    refinement, and the refined run trains on exactly the saved multipliers."""
    from scripts.schedule_benchmark.llm import run_llm
    from training.rundir import read_metrics

    small = ["trainer.eval_batches=1", "trainer.eval_batch_size=4", "trainer.log_interval=1"]
    table, shape = run_llm(tmp_path, steps=12, lrs=(3e-3,), extra=small)
    assert list(table["schedule"]) == ["linear", "refined"] and table["final_val_loss"].notna().all()
    assert shape.shape == (12,) and shape.max() == pytest.approx(1.0) and shape[-1] == pytest.approx(0.0)
    assert np.array_equal(np.load(tmp_path / "llm" / "refined.npy"), shape)
    logged = {e["step"]: e["lr"] for e in read_metrics(table["run_dir"].iloc[1]) if "lr" in e}
    steps = np.array(sorted(logged))
    assert len(steps) >= 10
    # metrics.jsonl's step counts completed updates: the event of step s logs the LR of update s - 1
    assert np.allclose([logged[s] for s in steps], 3e-3 * shape[steps - 1], rtol=1e-5)
