"""What users give the schedules: bad values (errors that name the value and the fix), every
configs/schedule/*.yaml composed and instantiated as train.py does, and `python -m schedules plot`.

    python -m pytest tests/test_schedule_configs.py -q
"""
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import schedules
from schedules.plot import main as plot_main, split_curves

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
T, W = 200, 10


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("build, message", [
    (lambda: schedules.WSD(100, cooldown_fraction=1.5), r"cooldown_fraction=1.5 is outside \[0, 1\]"),
    (lambda: schedules.WSD(100, cooldown_fraction=-0.1), r"cooldown_fraction=-0.1 is outside \[0, 1\]"),
    (lambda: schedules.WSD(100, 20, cooldown_fraction=0.9), r"inside the warmup.*cooldown_fraction <= 0.8"),
    (lambda: schedules.WSD(100, cooldown_kind="sqrt"), r"cooldown_kind='sqrt' is unknown; use one of linear, 1-sqrt"),
    (lambda: schedules.WSD(100, cooldown_steps=20), r"exactly one of cooldown_fraction=0.2 .* and cooldown_steps=20"),
    (lambda: schedules.TwoStageWSD(100, drop_step=5, cooldown_fraction=None), r"exactly one of cooldown_fraction=None"),
    (lambda: schedules.InverseSqrt(100, cooldown_steps=5), r"exactly one of cooldown_fraction=0.0"),
    (lambda: schedules.WSD(100, cooldown_fraction=None, cooldown_steps=101), r"cooldown_steps=101 exceeds total_steps"),
    (lambda: schedules.WSD(100, 20, cooldown_fraction=None, cooldown_steps=90),
     r"cooldown_steps=90 starts the cooldown at step 10, inside the warmup.*cooldown_steps <= 80"),
    (lambda: schedules.WSD(100, cooldown_fraction=None, cooldown_steps=2.5), r"cooldown_steps=2.5 is not an integer"),
    (lambda: schedules.Constant(10, 20), r"warmup_steps=20 exceeds total_steps=10"),
    (lambda: schedules.Constant(10, -1), r"warmup_steps=-1 is not an integer >= 0"),
    (lambda: schedules.Constant(0), r"total_steps=0 is not an integer >= 1"),
    (lambda: schedules.Constant(10.5), r"total_steps=10.5 is not an integer"),
    (lambda: schedules.Constant(10, warmup_start=2.0), r"warmup_start=2.0 is outside \[0, 1\]"),
    (lambda: schedules.Cosine(10, final_fraction=-1), r"final_fraction=-1 is outside \[0, 1\]"),
    (lambda: schedules.StepDecay(100, milestones=[0.6, 0.3]), r"strictly increasing fractions in \(0, 1\)"),
    (lambda: schedules.StepDecay(100, milestones=[0.3, 1.2]), r"strictly increasing fractions"),
    (lambda: schedules.StepDecay(100, factor=0.0), r"factor=0.0 is outside \(0, 1\]"),
    (lambda: schedules.StepDecay(100, 50, milestones=[0.3]), r"inside the warmup"),
    (lambda: schedules.Exponential(100, final_fraction=0.0), r"final_fraction=0.0 cannot be reached"),
    (lambda: schedules.Polynomial(100, power=0), r"power=0 must be > 0"),
    (lambda: schedules.REX(100, beta=1.0), r"beta=1.0 must be < 1"),
    (lambda: schedules.REX(100, update_every=0), r"update_every=0 is not an integer >= 1"),
    (lambda: schedules.CyclicCosine(100, cycle_factor=0), r"cycle_factor=0 must be > 0"),
    (lambda: schedules.TwoStageWSD(100, drop_step=10, drop_fraction=0.1), r"exactly one of drop_step=10"),
    (lambda: schedules.TwoStageWSD(100, drop_step=70, transition_steps=20), r"ends after the cooldown starts"),
    (lambda: schedules.TwoStageWSD(100, 20, drop_step=10), r"inside the warmup"),
    (lambda: schedules.TwoStageWSD(100, drop_fraction=0.4, rho=-1), r"rho=-1 must be > 0"),
    (lambda: schedules.InverseSqrt(100, 50, cooldown_fraction=0.6), r"inside the warmup"),
    (lambda: schedules.OneCycle(100, anneal_strategy="cosine"), r"anneal_strategy='cosine' is unknown"),
    (lambda: schedules.OneCycle(100, pct_start=1.5), r"pct_start=1.5 is outside \[0, 1\]"),
    (lambda: schedules.PiecewiseLinear(100, points=[[0.5, 1.0], [0.2, 0.0]]), r"must be strictly increasing"),
    (lambda: schedules.PiecewiseLinear(100, points=[[0, 1.0], [2.0, 0.0]]), r"must lie in \[0, 1\]"),
    (lambda: schedules.PiecewiseLinear(100, points=[1.0, 0.0]), r"list of \[x, value\] pairs"),
    (lambda: schedules.PiecewiseLinear(100, x_units="percent"), r"x_units='percent' is unknown"),
    (lambda: schedules.FromArray(100, source="/nonexistent/m.npy"), r"source='/nonexistent/m.npy' is not a file"),
    (lambda: schedules.FromArray(100, source=[1.0, -0.5]), r"non-finite or negative multipliers"),
    (lambda: schedules.FromArray(100, source=[]), r"non-empty 1-D array"),
    (lambda: schedules.FromArray(100, source=["a"]), r"source=\['a'\] is not a list of numbers"),
], ids=lambda x: "" if callable(x) else x[:40])
def test_validation_errors_name_the_value_and_the_fix(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_from_array_bad_files(tmp_path):
    (tmp_path / "m.txt").write_text("1\n0\n")
    with pytest.raises(ValueError, match=r"extension '.txt'; use a .npy or .csv file"):
        schedules.FromArray(10, source=str(tmp_path / "m.txt"))
    np.save(tmp_path / "m2.npy", np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"1-D array of multipliers, got shape \(3, 3\)"):
        schedules.FromArray(10, source=str(tmp_path / "m2.npy"))
    (tmp_path / "bad.csv").write_text("multiplier\n1.0\nabc\n")
    with pytest.raises(ValueError, match=r"could not be read as numbers"):
        schedules.FromArray(10, source=str(tmp_path / "bad.csv"))


SCHEDULE_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "schedule").glob("*.yaml"))


def test_every_schedule_has_a_config():
    expected = {"constant", "linear", "cosine", "cosine_paper", "wsd", "wsd_sqrt", "two_stage_wsd", "inverse_sqrt",
                "polynomial", "step", "exponential", "onecycle", "rex", "cyclic_cosine", "piecewise_linear",
                "from_array"}
    assert expected <= set(SCHEDULE_CONFIGS)


@pytest.mark.parametrize("name", SCHEDULE_CONFIGS)
def test_config_composes_and_instantiates(name):
    """Compose the real configs/config.yaml with schedule=<name>, as train.py does."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"schedule={name}", "trainer.max_steps=1234",
                                                       "trainer.warmup_steps=12"])
    s = instantiate(cfg.schedule)
    assert isinstance(s, schedules.Schedule)
    assert s.total_steps == 1234  # one override sets the horizon of every schedule
    if name not in ("onecycle", "from_array"):  # these two carry their own warmup (see their YAML)
        assert s.warmup_steps == 12
    if getattr(s, "reactive", False):  # its LRs follow the run's val loss: only the run's log has them
        with pytest.raises(ValueError, match="metrics.jsonl"):
            s.multipliers()
        return
    m = s.multipliers()
    assert m.shape == (1234,) and np.all(np.isfinite(m)) and np.all(m >= 0)


def test_wsd_config_keys():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["schedule=wsd", "schedule.cooldown_fraction=0.5",
                                                       "trainer.max_steps=100", "trainer.warmup_steps=0"])
        default = compose(config_name="config", overrides=["schedule=wsd"])
    assert (default.schedule.cooldown_fraction, default.schedule.cooldown_kind,
            default.schedule.final_fraction) == (0.2, "linear", 0.0)
    s = instantiate(cfg.schedule)
    assert type(s) is schedules.WSD and s.cooldown_start == 50 and s(99) == pytest.approx(1 / 50)
    for name in ("wsd", "wsd_sqrt", "two_stage_wsd", "inverse_sqrt"):     # the cooldown in steps instead
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"schedule={name}", "schedule.cooldown_steps=30",
                                                           "trainer.max_steps=100", "trainer.warmup_steps=0"])
        with pytest.raises(Exception, match="exactly one of cooldown_fraction"):   # the fraction not set to null
            instantiate(cfg.schedule)
        cfg.schedule.cooldown_fraction = None
        assert instantiate(cfg.schedule).cooldown_start == 70


def test_split_curves():
    common, curves = split_curves(["schedule.cooldown_fraction=0.1", "trainer.max_steps=50", "schedule=cosine",
                                   "schedule.final_fraction=0.1", "optimizer.lr=2e-3", "schedule=wsd"])
    assert common == ["trainer.max_steps=50", "optimizer.lr=2e-3"]
    assert curves == [["schedule.cooldown_fraction=0.1"], ["schedule=cosine", "schedule.final_fraction=0.1"],
                      ["schedule=wsd"]]


def test_plot_cli_writes_png_and_pdf(tmp_path):
    out = tmp_path / "lr.png"
    plot_main(["plot", "schedule=wsd", "schedule.cooldown_fraction=0.5", "schedule=cosine", "trainer.max_steps=50",
               "trainer.warmup_steps=5", "optimizer.lr=2e-3", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = tmp_path / "lr.pdf"
    plot_main(["plot", "schedule=rex", "trainer.max_steps=20", "trainer.warmup_steps=0", "--out", str(pdf)])
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_plot_uses_the_trainers_objects_and_peak_lr(tmp_path):
    from schedules.plot import plot
    lrs = plot(["schedule=wsd", "schedule.cooldown_fraction=0.5", "schedule=linear", "trainer.max_steps=50",
                "trainer.warmup_steps=5", "optimizer.lr=2e-3"], str(tmp_path / "x.png"))
    np.testing.assert_allclose(lrs[0], 2e-3 * schedules.WSD(50, 5, cooldown_fraction=0.5).multipliers(), rtol=1e-15)
    np.testing.assert_allclose(lrs[1], 2e-3 * schedules.Linear(50, 5).multipliers(), rtol=1e-15)


def test_short_runs_get_a_warmup_that_fits_and_a_message_that_names_the_warmup(tmp_path):
    """The default warmup is 10% of the horizon (configs/trainer/default.yaml), also for the plot CLI;
    a warmup given by hand that swallows the cooldown is named as the thing to change."""
    from schedules.plot import plot
    (lrs,) = plot(["schedule=wsd", "trainer.max_steps=20", "optimizer.lr=1.0"], str(tmp_path / "short.png"))
    np.testing.assert_allclose(lrs, schedules.WSD(20, warmup_steps=2).multipliers(), rtol=1e-15)
    with pytest.raises(Exception, match=r"trainer.warmup_steps=36"):
        plot(["schedule=wsd", "trainer.max_steps=45", "trainer.warmup_steps=40"], str(tmp_path / "bad.png"))
