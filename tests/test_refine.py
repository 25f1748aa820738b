"""analysis.refine: schedules refined from gradient norms (THEORY.md section 4) against closed forms, and
`python -m analysis refine` end to end on run directories written here and on the paper's logs.

    python -m pytest -q tests/test_refine.py -p no:cacheprovider
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from analysis.cli import main
from analysis.refine import filter_points, refine_schedule, smooth_norms
from training.rundir import GRAD_NORM_DTYPE, GRAD_NORMS_FILE
from training.setup import compose

ROOT = Path(__file__).parents[1]
PAPER_LOG = ROOT / "tests/data/paper_logs" / ("cos-210m_slimpajama_llama_nlayers24_nhead12_lr0.001_sched_cos_warmup300_"
                                             "iter22222_bs50x2_ws2_seed0_data_seed1337.json")
INV_SQRT3 = 1 / math.sqrt(3)


def linear_decay(T):
    return 1 - np.arange(T) / (T - 1)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("T", [2, 7, 1000])
def test_constant_norms_give_linear_decay(optimizer, T):
    """w constant: s_t = w^2 (grid - 1 - t), a straight line to 0 on the grid and after resampling."""
    np.testing.assert_allclose(refine_schedule(np.full(500, 3.7), T, optimizer), linear_decay(T), rtol=0, atol=1e-12)


def noisy_norms(seed=0, L=2000):
    """Norms that fall over the run with multiplicative noise and a few spikes, like a real log."""
    rng = np.random.default_rng(seed)
    norms = (1 + 5 * np.exp(-np.arange(L) / 150)) * rng.lognormal(0, 0.3, L)
    norms[rng.integers(0, L, 20)] *= 50
    return norms


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_scaling_the_norms_leaves_the_shape(optimizer):
    norms = noisy_norms()
    shape = refine_schedule(norms, 800, optimizer)
    for scale in (1e-6, 7.5, 1e5):
        np.testing.assert_allclose(refine_schedule(scale * norms, 800, optimizer), shape, rtol=1e-10, atol=1e-12)
    # A factor that varies over the run does change it (the test above can fail).
    assert np.abs(refine_schedule(norms * np.linspace(1, 3, norms.size), 800, optimizer) - shape).max() > 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_range_peak_one_last_zero(seed):
    for optimizer in ("sgd", "adam"):
        shape = refine_schedule(noisy_norms(seed), 333, optimizer)
        assert shape.shape == (333,) and shape[-1] == 0.0 and shape.max() == 1.0 and shape.min() >= 0.0


def predicted_peak(T, L, trim):
    """Peak index for n_t = t^-1/2, t = 1..L under SGD weights w_t = t: the kept norms are steps a..b
    (a = trim + 1, b = L - trim), s(t) ~ t (b^2 - t^2) peaks at t = b / sqrt(3), and the output maps
    [a, b] linearly onto [0, T - 1]."""
    a, b = trim + 1, L - trim
    return (T - 1) * (b * INV_SQRT3 - a) / (b - a)


def peak_tolerance(T, grid=10_000):
    """argmax of a sampled unimodal curve: within 1 step of its maximiser; the grid quantizes the curve
    by (T-1)/(grid-1) steps, and the Riemann sum sum_{p>t} w_p differs from the integral by half a grid
    cell, another (T-1)/(grid-1) at most."""
    return 1 + 2 * (T - 1) / (grid - 1)


@pytest.mark.parametrize("T", [500, 3000, 20_000])     # the source run has 3000 updates
def test_inverse_sqrt_norms_warm_up_then_peak_near_T_over_sqrt3(T):
    L = 3000
    norms = np.arange(1, L + 1) ** -0.5              # G_t^2 ~ 1/t
    shape = refine_schedule(norms, T, "sgd")
    peak = int(np.argmax(shape))
    assert abs(peak - predicted_peak(T, L, trim=2)) <= peak_tolerance(T)
    assert abs(peak / T - INV_SQRT3) < 0.002                  # trim shifts the peak by < 2 trim / L
    # Warmup then decay: strictly up to the peak, strictly down after it (no warmup was given).
    assert (np.diff(shape[:peak + 1]) > 0).all() and (np.diff(shape[peak:]) < 0).all()
    untrimmed = refine_schedule(norms, T, "sgd", trim=0)
    assert abs(int(np.argmax(untrimmed)) - predicted_peak(T, L, trim=0)) <= peak_tolerance(T)


def test_median_filter_convention():
    assert filter_points(0.1, 10_000) == 1001 and filter_points(0.05, 1000) == 51 and filter_points(0.0, 100) == 1
    # A falling line: a median window of a monotone sequence is its centre, so the start (first value
    # repeated) and the interior are unchanged; the end is reflected: the last window holds x_949..x_998
    # twice and x_999 once, whose median (the 51st smallest of 101) is x_974.
    line = np.linspace(3, 1, 1004)
    kept = line[2:-2]
    smoothed = smooth_norms(line, filter_width=0.1, grid=1000)
    np.testing.assert_array_equal(smoothed[:950], kept[:950])
    assert smoothed[-1] == kept[974]
    # Isolated spikes are removed entirely: constant norms with outliers still give linear decay.
    spiky = np.full(5000, 2.0)
    spiky[::97] = 40.0
    np.testing.assert_allclose(refine_schedule(spiky, 100, "adam"), linear_decay(100), atol=1e-12)
    assert np.abs(refine_schedule(spiky, 100, "adam", filter_width=0) - linear_decay(100)).max() > 0.01


@pytest.mark.parametrize("norms, kwargs, match", [
    (np.full(50, np.nan), {}, "0 finite values of 50"),
    ([1.0, 2.0, np.inf, 3.0, 4.0, 5.0], {}, "after dropping the first and last trim=2"),
    (np.zeros(100), {}, "all 96 norms kept are 0"),
    ([1.0, 2.0, -0.5, 1.0, 1.0, 1.0, 1.0], {}, r"negative values \(the first at index 2\)"),
    (np.ones((10, 2)), {}, "1-D"),
    (np.ones(100), {"optimizer": "adamw"}, "optimizer='adamw' is unknown; use one of sgd, adam"),
    (np.ones(100), {"steps": 1}, "steps=1 must be an integer >= 2"),
    (np.ones(100), {"filter_width": 1.5}, "filter_width=1.5 must be a fraction of the run"),
    (np.ones(100), {"trim": -1}, "trim=-1"),
    (np.r_[np.ones(50), np.zeros(50)], {"filter_width": 0.0}, "smoothed norms are 0 over"),
])
def test_degenerate_input_is_refused(norms, kwargs, match):
    with pytest.raises(ValueError, match=match):
        refine_schedule(norms, **{"steps": 10, **kwargs})


def write_run(path: Path, l1, l2, horizon=300, peak_lr=2e-3, with_bin=True) -> Path:
    """A run directory as train.py writes it: config, metrics (lr every 10 steps), grad_norms.bin."""
    path.mkdir(parents=True)
    schedule = {"_target_": "schedules.Linear", "total_steps": horizon, "warmup_steps": 10, "warmup_start": 0.0}
    OmegaConf.save({"schedule": schedule, "optimizer": {"lr": peak_lr}, "trainer": {"max_steps": horizon}},
                   path / "config.yaml")
    sched = instantiate(schedule)
    (path / "metrics.jsonl").write_text("".join(
        json.dumps({"step": k, "lr": peak_lr * sched(k - 1), "grad_norm": float(l2[k - 1]), "train/loss": 3.0}) + "\n"
        for k in range(10, horizon + 1, 10)))
    (path / ".hydra").mkdir()
    (path / ".hydra/overrides.yaml").write_text(
        "- schedule=linear\n- trainer.max_steps=300\n- model.n_layer=2\n- optimizer.lr=0.002\n- hydra.run.dir=x\n")
    if with_bin:
        records = np.zeros(horizon, dtype=GRAD_NORM_DTYPE)
        records["step"], records["l1"], records["l2"] = np.arange(1, horizon + 1), l1, l2
        records.tofile(path / GRAD_NORMS_FILE)
    return path


def test_cli_on_a_run_directory(tmp_path, capsys):
    t = np.arange(1, 301)
    run = write_run(tmp_path / "src", l1=100 * t ** -0.5, l2=np.full(300, 0.7))
    out = tmp_path / "refined" / "adam.npy"
    main(["refine", str(run), "--steps", "1000", "--out", str(out)])
    printed = capsys.readouterr().out
    shape = np.load(out)
    np.testing.assert_array_equal(shape, refine_schedule((100 * t ** -0.5).astype(np.float32), 1000, "adam"))
    assert out.with_suffix(".png").stat().st_size > 10_000
    overrides = next(line for line in printed.splitlines() if "schedule=from_array" in line).split()
    assert overrides == ["schedule=from_array", f"schedule.source={out.resolve()}", "trainer.max_steps=1000",
                         "optimizer.lr=0.002", "model.n_layer=2"]
    assert f"peak at step {int(np.argmax(shape)):,} of 1,000" in printed
    # sgd refines from the l2 norms, constant here: linear decay; the default horizon is the run's.
    main(["refine", str(run), "--optimizer", "sgd", "--out", str(tmp_path / "sgd.npy")])
    np.testing.assert_allclose(np.load(tmp_path / "sgd.npy"), linear_decay(300), atol=1e-12)
    # Loaded by schedules.FromArray through the trainer's own config: the same multipliers.
    cfg = compose(["schedule=from_array", f"schedule.source={out}", "trainer.max_steps=1000"])
    np.testing.assert_array_equal(instantiate(cfg.schedule).multipliers(), shape)


def test_cli_falls_back_to_the_logged_grad_norm(tmp_path, capsys):
    """No grad_norms.bin: the metrics' grad_norm (l2 every 10 steps) is used, and the output says so;
    unequally spaced norms are first interpolated onto the most common spacing (step 295 falls off it)."""
    t = np.arange(1, 301)
    run = write_run(tmp_path / "src", l1=t, l2=5 * t ** -0.5, with_bin=False)
    with open(run / "metrics.jsonl", "a") as f:       # an event off the 10-step grid (a checkpoint step)
        f.write(json.dumps({"step": 295, "grad_norm": 0.01}) + "\n")
    main(["refine", str(run), "--out", str(tmp_path / "r.npy")])      # adam wants l1
    printed = capsys.readouterr().out
    assert "has no l1 norms; using l2 instead" in printed and "every 10 steps" in printed
    expected = refine_schedule(5 * np.arange(10, 301, 10) ** -0.5, 300, "adam")
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), expected, rtol=1e-12)


def test_cli_on_paper_logs(tmp_path, capsys):
    """None of the paper's 193 published logs has a grad_norm column: the command exits 1 naming the
    problem. A copy with one added (every 200 steps, as the trimmed logs keep) is refined from it."""
    with pytest.raises(SystemExit) as exit_:       # a SystemExit with a message: exit status 1
        main(["refine", str(PAPER_LOG), "--out", str(tmp_path / "x.npy")])
    assert isinstance(exit_.value.code, str) and "has no usable gradient norms" in exit_.value.code
    assert not (tmp_path / "x.npy").exists()
    log = json.loads(PAPER_LOG.read_text())
    iters = np.asarray(log["history"]["train"]["iter"], dtype=np.float64)
    log["history"]["train"]["grad_norm"] = (2 + 10 / np.sqrt(iters)).tolist()
    copy = tmp_path / PAPER_LOG.name
    copy.write_text(json.dumps(log))
    main(["refine", str(copy), "--optimizer", "sgd", "--out", str(tmp_path / "p.npy")])
    assert "schedule.source=" in capsys.readouterr().out
    order = np.argsort(iters, kind="stable")     # the run's steps in order (a resumed log repeats some)
    _, first = np.unique(iters[order], return_index=True)
    expected = refine_schedule((2 + 10 / np.sqrt(iters[order][first])), 22_222, "sgd")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-12)
