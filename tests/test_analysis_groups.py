"""Tests of analysis/groups.py: sweeps grouped by schedule shape, schedules named in words.

    python -m pytest -q tests/test_analysis_groups.py -p no:cacheprovider

References: the paper's own sweeps (tests/data/paper_logs/, whose file names carry the cooldown
fraction and kind independently of the recorded flags), closed forms of the max difference of two
cooldowns one step apart, and a hand-written phrase for every class in schedules/.
"""
import dataclasses
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

import schedules
from analysis import groups as groups_module
from analysis.bound import optimal_lr
from analysis.groups import RunGroup, describe, group_runs, same_shape
from analysis.runs import Run, load_many

LOGS = Path(__file__).parent / "data" / "paper_logs"


def fake_run(name, config, lr=1e-3):
    return Run(name=name, source=f"memory:{name}", config={}, metrics=pd.DataFrame({"step": []}),
               schedule_config=config, peak_lr=lr)


def wsd(T=1000, c=0.2, kind="linear", **kw):
    return {"_target_": "schedules.WSD", "total_steps": T, "cooldown_fraction": c, "cooldown_kind": kind, **kw}


# ---------------------------------------------------------------------------------------------------
# The paper's sweeps.
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paper_runs():
    """The 124M sweeps at 50k steps (the folder holds other runs too, which these tests leave out)."""
    prefixes = ("ann124-", "cos-zero-124m", "stable-124m")
    return load_many([str(LOGS / f"{prefix}*iter50000*.json") for prefix in prefixes])


def pick(runs, prefix, *parts):
    chosen = [r for r in runs if Path(r.source).name.startswith(prefix) and all(p in r.source for p in parts)]
    assert chosen, (prefix, parts)
    return chosen


def test_cooldown_grid_is_one_group_per_fraction(paper_runs):
    runs = pick(paper_runs, "ann124-", "iter50000", "decay_linear")
    result = group_runs(runs)
    # The file names carry the fraction: ann124-<c>_..._decay_linear_<c>_...
    expected = {float(re.match(r"ann124-([\d.]+)_", Path(r.source).name).group(1)) for r in runs}
    assert expected == {0.1, 0.2, 0.4, 0.6, 0.8, 0.9}
    assert len(result) == len(expected)
    for group in result:
        fractions = {float(re.match(r"ann124-([\d.]+)_", Path(r.source).name).group(1)) for r in group.runs}
        assert len(fractions) == 1
        assert sorted(r.peak_lr for r in group.runs) == [1e-4, 5e-4, 1e-3, 2e-3]
        assert group.name == f"WSD, {round(100 * fractions.pop())}% linear cooldown"
        assert group.total_steps == 50000


def test_sqrt_cooldown_is_its_own_group(paper_runs):
    runs = pick(paper_runs, "ann124-0.2", "iter50000")
    names = {g.name: len(g.runs) for g in group_runs(runs)}
    assert names == {"WSD, 20% linear cooldown": 4, "WSD, 20% 1-sqrt cooldown": 4}


def test_cosine_to_an_absolute_lr_is_one_group(paper_runs):
    runs = pick(paper_runs, "cos-zero-124m")
    finals = {r.schedule_config["final_fraction"] for r in runs}
    assert len(finals) == len(runs) == 5 and max(finals) < 0.01  # a key-by-key grouping would give 5 groups
    (group,) = group_runs(runs)
    assert group.name == "cosine to 0" and len(group.runs) == 5
    assert group.config == runs[0].schedule_config


def test_what_the_default_merges_the_bound_cannot_tell_apart(paper_runs):
    (group,) = group_runs(pick(paper_runs, "cos-zero-124m"))
    gammas = [optimal_lr(run.schedule().multipliers())[0] for run in group.runs]
    assert max(gammas) / min(gammas) - 1 < 1e-3


def test_constant_runs_ignore_the_cooldown_kind(paper_runs):
    runs = pick(paper_runs, "stable-124m")
    assert {r.schedule_config["cooldown_kind"] for r in runs} == {"linear", "1-sqrt"}
    (group,) = group_runs(runs)
    assert group.name == "constant LR" and len(group.runs) == 4


def test_zero_tolerance_separates_what_the_default_merges(paper_runs):
    runs = pick(paper_runs, "cos-zero-124m")
    strict = group_runs(runs, tolerance=0.0)
    assert len(strict) == 5
    assert len({g.name for g in strict}) == 5 and all(g.name.startswith("cosine to 0 (") for g in strict)


def test_all_124m_sweeps_group_and_each_shape_is_computed_once(paper_runs, monkeypatch):
    calls = []
    real = groups_module._multipliers
    monkeypatch.setattr(groups_module, "_multipliers", lambda c, *rest: calls.append(c) or real(c, *rest))
    result = group_runs(paper_runs)
    distinct = {json.dumps(r.schedule_config, sort_keys=True) for r in paper_runs}
    assert len(calls) == len(distinct) < len(paper_runs)
    # 6 linear fractions + 1-sqrt + constant + cosine, every run in exactly one group
    assert len(result) == 9
    assert sorted(id(r) for g in result for r in g.runs) == sorted(id(r) for r in paper_runs)
    assert [g.name for g in result] == sorted(g.name for g in result)   # one horizon: ordered by name


def test_mixed_horizons_stay_apart_and_say_their_horizon(paper_runs):
    runs = pick(paper_runs, "cos-zero-124m")
    shorter = [dataclasses.replace(r, name=r.name + "-25k",
                                   schedule_config={**r.schedule_config, "total_steps": 25000}) for r in runs]
    result = group_runs(runs + shorter)
    assert [(g.total_steps, g.name, len(g.runs)) for g in result] == [
        (25000, "cosine to 0, T = 25k steps", 5), (50000, "cosine to 0, T = 50k steps", 5)]


def test_by_splits_one_shape_into_sweeps_per_model(paper_runs):
    runs = pick(paper_runs, "stable-124m")
    # The same constant-LR schedule on a deeper model: one shape, two sweeps.
    deeper = [dataclasses.replace(r, name=r.name + "-24", config={**r.config, "n_layer": 24}) for r in runs[:2]]
    assert len(group_runs(runs + deeper)) == 1
    result = group_runs(runs + deeper, by=("n_layer", "dataset"))
    assert [(g.name, g.by, len(g.runs)) for g in result] == [
        ("constant LR (n_layer=12)", {"n_layer": 12, "dataset": "slimpajama"}, 4),
        ("constant LR (n_layer=24)", {"n_layer": 24, "dataset": "slimpajama"}, 2)]
    nested = [fake_run("a", wsd()), fake_run("b", wsd())]
    nested[0].config, nested[1].config = {"model": {"n_layer": 4}}, {"model": {"n_layer": 8}}
    assert len(group_runs(nested, by="model.n_layer")) == 2
    with pytest.raises(ValueError, match=r"'a' has no config key 'model.depth'.*\['n_layer'\]"):
        group_runs(nested, by="model.depth")


def test_fig1_glob_of_three_horizons_is_six_groups():
    # Schaipp et al. Fig. 1a: 210M, WSD (20% cooldown) and cosine (to lr/10), each at T = 22,222 / 33,333 / 44,444.
    runs = load_many([str(LOGS / "ann210-*.json"), str(LOGS / "cos-210m*.json")])
    horizons = [int(re.search(r"_iter(\d+)_", Path(r.source).name).group(1)) for r in runs]
    assert sorted(set(horizons)) == [22222, 33333, 44444]
    result = group_runs(runs)
    assert [(g.total_steps, g.name, len(g.runs)) for g in result] == [
        (T, f"{name}, T = {T:,} steps", 1) for T in (22222, 33333, 44444)
        for name in ("WSD, 20% linear cooldown", "cosine to 10%")]


# ---------------------------------------------------------------------------------------------------
# Tolerance semantics on synthetic configs.
# ---------------------------------------------------------------------------------------------------
def test_linear_cooldowns_one_step_apart():
    # n = 200 and 201 cooldown steps (T = 1000): the difference is largest at step 800, where the
    # shorter cooldown is still at the peak and the longer one has done 1 of 201 steps: 1/201.
    a, b = wsd(c=0.2), wsd(c=0.201)
    assert same_shape(a, b)                                   # the default (0.01) merges them
    assert same_shape(a, b, tolerance=1 / 201 + 1e-12)
    assert not same_shape(a, b, tolerance=1 / 201 - 1e-6)
    assert not same_shape(a, b, tolerance=0.0)


def test_sqrt_cooldowns_one_step_apart_are_not_merged_at_short_horizons():
    # 1-sqrt drops by sqrt(1/n) on its first step: sqrt(1/201) = 0.0705 > 0.01.
    a, b = wsd(c=0.2, kind="1-sqrt"), wsd(c=0.201, kind="1-sqrt")
    assert not same_shape(a, b)
    assert same_shape(a, b, tolerance=math.sqrt(1 / 201) + 1e-12)


def test_sqrt_cooldowns_one_step_apart_merge_at_the_papers_horizon():
    # T = 50k, 20%: n = 10,000 vs 10,001 steps, first-step gap sqrt(1/10001) = 0.0099995 <= 0.01.
    a, b = wsd(T=50000, kind="1-sqrt", warmup_steps=300), wsd(T=50000, c=0.20002, kind="1-sqrt", warmup_steps=300)
    assert same_shape(a, b)
    assert not same_shape(a, b, tolerance=math.sqrt(1 / 10001) - 1e-7)


def test_neighbouring_sweep_points_stay_apart():
    # Cooldowns of 200 and 210 steps (T = 1000): at step 790 the longer one is 10/210 below the peak.
    assert not same_shape(wsd(c=0.2), wsd(c=0.21))
    assert same_shape(wsd(c=0.2), wsd(c=0.21), tolerance=10 / 210 + 1e-12)
    assert not same_shape(wsd(c=0.2), wsd(c=0.2, kind="1-sqrt"), tolerance=0.1)


def test_a_cooldown_in_steps_is_the_same_shape_as_its_fraction():
    by_steps = wsd(T=50000, c=None, cooldown_steps=2000, warmup_steps=300)
    assert same_shape(wsd(T=50000, c=0.04, warmup_steps=300), by_steps, tolerance=0.0)
    (group,) = group_runs([fake_run("steps", by_steps), fake_run("fraction", wsd(T=50000, c=0.04, warmup_steps=300))])
    assert group.name == "WSD, 2,000-step linear cooldown" and len(group.runs) == 2


def test_differences_below_the_floor_are_invisible():
    a = {"_target_": "schedules.FromArray", "total_steps": 4, "source": [1.0, 1.0, 0.005, 0.005]}
    b = {**a, "source": [1.0, 1.0, 0.0, 0.0]}
    assert same_shape(a, b, tolerance=0.0)
    assert not same_shape(a, b, tolerance=0.0, ignore_below=0.0)


def test_different_horizons_are_different_shapes():
    assert not same_shape(wsd(T=1000), wsd(T=1001), tolerance=0.5)


def test_groups_compare_with_their_first_run_and_never_chain():
    # Consecutive cooldowns differ by 1/201 and 1/202 (<= 0.006), the ends by 2/202 (> 0.006).
    runs = [fake_run("a", wsd(c=0.200)), fake_run("b", wsd(c=0.201)), fake_run("c", wsd(c=0.202))]
    result = group_runs(runs, tolerance=0.006)
    assert sorted([r.name for r in g.runs] for g in result) == [["a", "b"], ["c"]]
    assert all(isinstance(g, RunGroup) for g in result)
    assert len({g.name for g in result}) == 2


def test_names_disambiguated_by_warmup_only_when_it_differs():
    linear = {"_target_": "schedules.Linear", "total_steps": 1000}
    runs = [fake_run("w", {**linear, "warmup_steps": 100}), fake_run("n", {**linear, "warmup_steps": 0}),
            fake_run("c", {"_target_": "schedules.Cosine", "total_steps": 1000, "warmup_steps": 100})]
    names = [g.name for g in group_runs(runs)]
    assert names == ["cosine to 0", "linear decay to 0 (no warmup)", "linear decay to 0 (warmup 100 steps)"]


def test_order_is_horizon_then_name():
    runs = [fake_run("x", wsd(T=2000)), fake_run("y", {"_target_": "schedules.Constant", "total_steps": 3000}),
            fake_run("z", {"_target_": "schedules.Constant", "total_steps": 2000})]
    assert [(g.total_steps, g.runs[0].name) for g in group_runs(runs)] == [(2000, "x"), (2000, "z"), (3000, "y")]


# ---------------------------------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------------------------------
def test_run_without_schedule_config_is_named():
    with pytest.raises(ValueError, match=r"'orphan'.*no schedule config"):
        group_runs([fake_run("ok", wsd()), fake_run("orphan", None)])
    with pytest.raises(ValueError, match=r"'half'.*_target_"):
        group_runs([fake_run("half", {"total_steps": 10})])
    with pytest.raises(ValueError, match="total_steps"):
        describe({"_target_": "schedules.Constant"})


def test_unbuildable_or_unresolved_configs():
    with pytest.raises(ValueError, match=r"(?s)'odd'.*cannot be built.*cooldown_fraction=2.0 is outside"):
        group_runs([fake_run("odd", wsd(c=2.0))])
    with pytest.raises(ValueError, match=r"total_steps='\$\{trainer.max_steps\}'.*unresolved"):
        describe({"_target_": "schedules.Cosine", "total_steps": "${trainer.max_steps}"})
    assert describe(OmegaConf.create(wsd())) == "WSD, 20% linear cooldown"   # a DictConfig is a config too


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.01", True])
def test_bad_tolerance(bad):
    with pytest.raises(ValueError, match="tolerance"):
        same_shape(wsd(), wsd(), tolerance=bad)
    with pytest.raises(ValueError, match="ignore_below"):
        group_runs([fake_run("a", wsd())], ignore_below=bad)


# ---------------------------------------------------------------------------------------------------
# describe(): one phrase per schedule class.
# ---------------------------------------------------------------------------------------------------
T = 50000
PHRASES = [
    (wsd(T, 0.2), "WSD, 20% linear cooldown"),
    (wsd(T, 0.2, "1-sqrt"), "WSD, 20% 1-sqrt cooldown"),
    (wsd(T, 0.1, "cosine", final_fraction=0.1), "WSD, 10% cosine cooldown to 10%"),
    (wsd(T, 0.0, "1-sqrt"), "constant LR"),
    (wsd(T, None, cooldown_steps=2000), "WSD, 2,000-step linear cooldown"),
    (wsd(T, None, cooldown_steps=0), "constant LR"),
    ({"_target_": "schedules.Constant", "total_steps": T}, "constant LR"),
    ({"_target_": "schedules.Cosine", "total_steps": T}, "cosine to 0"),
    ({"_target_": "schedules.Cosine", "total_steps": T, "final_fraction": 0.005}, "cosine to 0"),
    ({"_target_": "schedules.Cosine", "total_steps": T, "final_fraction": 0.1}, "cosine to 10%"),
    ({"_target_": "schedules.CosinePaper", "total_steps": T, "warmup_steps": 300, "final_fraction": 2e-5},
     "cosine to 0"),
    ({"_target_": "schedules.Linear", "total_steps": T}, "linear decay to 0"),
    ({"_target_": "schedules.TwoStageWSD", "total_steps": 100000, "drop_step": 40000, "rho": 0.5},
     "two-stage WSD, rho 0.5 from step 40,000, 20% linear cooldown"),
    ({"_target_": "schedules.TwoStageWSD", "total_steps": T, "drop_fraction": 0.4, "transition_steps": 500,
      "rho": 0.25, "cooldown_fraction": 0.0}, "two-stage WSD, rho 0.25 from 40% of the run over 500 steps"),
    ({"_target_": "schedules.InverseSqrt", "total_steps": T, "cooldown_fraction": 0.2},
     "1/sqrt(t), 20% linear cooldown"),
    ({"_target_": "schedules.InverseSqrt", "total_steps": T, "timescale": 1000}, "1/sqrt(t), timescale 1,000 steps"),
    ({"_target_": "schedules.InverseSqrt", "total_steps": T, "cooldown_fraction": None, "cooldown_steps": 500,
      "cooldown_kind": "1-sqrt"}, "1/sqrt(t), 500-step 1-sqrt cooldown"),
    ({"_target_": "schedules.REX", "total_steps": T}, "REX"),
    ({"_target_": "schedules.REX", "total_steps": T, "beta": 0.9, "update_every": 100},
     "REX (beta 0.9, updated every 100 steps)"),
    ({"_target_": "schedules.OneCycle", "total_steps": T}, "OneCycle"),
    ({"_target_": "schedules.OneCycle", "total_steps": T, "pct_start": 0.25, "anneal_strategy": "linear"},
     "OneCycle (25% ramp, linear anneal)"),
    ({"_target_": "schedules.StepDecay", "total_steps": T}, "step decay x0.1 at 30/60/90%"),
    ({"_target_": "schedules.StepOnPlateau", "total_steps": T, "patience": 3}, "step decay x0.1 on plateau (patience 3 evaluations)"),
    ({"_target_": "schedules.Exponential", "total_steps": T}, "exponential to 1%"),
    ({"_target_": "schedules.Exponential", "total_steps": T, "final_fraction": 0.001}, "exponential to 0.1%"),
    ({"_target_": "schedules.CyclicCosine", "total_steps": T}, "cyclic cosine, half-period 1.5x the run, minimum 10%"),
    ({"_target_": "schedules.CyclicCosine", "total_steps": T, "cycle_factor": 1.0, "final_fraction": 0.0},
     "cosine to 0"),
    ({"_target_": "schedules.Polynomial", "total_steps": T}, "polynomial decay (power 2) to 0"),
    ({"_target_": "schedules.Polynomial", "total_steps": T, "power": 1.0}, "linear decay to 0"),
    ({"_target_": "schedules.PiecewiseLinear", "total_steps": T, "points": [[0, 1], [0.8, 1], [1, 0]]},
     "piecewise linear: 1 at 0%, 1 at 80%, 0 at 100%"),
    ({"_target_": "schedules.PiecewiseLinear", "total_steps": T, "points": [[0, 1], [4000, 0.5]], "x_units": "step"},
     "piecewise linear: 1 at step 0, 0.5 at step 4,000"),
    ({"_target_": "schedules.FromArray", "total_steps": T, "source": "outputs/refined.npy"}, "from refined.npy"),
    ({"_target_": "schedules.FromArray", "total_steps": T, "source": [1.0, 0.5, 0.0]},
     "from an array of 3 values"),
]


@pytest.mark.parametrize("config, phrase", PHRASES, ids=[p for _, p in PHRASES])
def test_describe(config, phrase):
    assert describe(config) == phrase


def test_every_schedule_class_has_a_phrase():
    covered = {c["_target_"].rsplit(".", 1)[-1] for c, _ in PHRASES}
    assert covered == set(schedules.__all__) - {"Schedule"}


def test_describe_a_class_outside_schedules_by_its_arguments():
    config = {"_target_": "mylab.schedules.Warmstart", "total_steps": 100, "warmup_steps": 5, "alpha": 2}
    assert describe(config) == "Warmstart(alpha=2)"


def test_describe_horizon_and_warmup():
    config = wsd(T, 0.2, warmup_steps=300)
    assert describe(config, horizon=True) == "WSD, 20% linear cooldown, T = 50k steps"
    assert describe(config, warmup=True) == "WSD, 20% linear cooldown, 300 warmup steps"
    assert describe(wsd(22222), horizon=True) == "WSD, 20% linear cooldown, T = 22,222 steps"
    assert describe(wsd(), warmup=True) == "WSD, 20% linear cooldown, no warmup"
    assert describe({"_target_": "schedules.Cosine", "total_steps": T, "final_fraction": 0.005},
                    ignore_below=0.001) == "cosine to 0.5%"


def test_cli_lists_the_sweeps_of_a_glob(capsys):
    groups_module.main([str(LOGS / "cos-zero-124m*iter50000*.json"), str(LOGS / "stable-124m*iter50000*.json")])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["constant LR  [T = 50,000; 4 runs; peak LRs 0.0001, 0.0005, 0.001, 0.002]",
                     "cosine to 0  [T = 50,000; 5 runs; peak LRs 0.0001, 0.0005, 0.001, 0.002, 0.005]"]


def test_a_reactive_schedule_groups_only_with_identical_configs():
    plateau = {"_target_": "schedules.StepOnPlateau", "total_steps": T, "patience": 2}
    assert same_shape(plateau, dict(plateau))
    assert not same_shape(plateau, {**plateau, "patience": 3})
    assert not same_shape(plateau, {"_target_": "schedules.Constant", "total_steps": T})
