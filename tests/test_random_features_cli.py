"""Tests of `python -m analysis random-features export` (analysis/random_features_cli.py): the exported file
loads through configs/schedule/from_array.yaml and holds the normalized optimum resampled in t/T.

    python -m pytest -q tests/test_random_features_cli.py -p no:cacheprovider
"""
import argparse

import numpy as np
import pytest
from hydra.utils import instantiate

from analysis import random_features_cli
from analysis.random_features import PowerLawModel, optimal_schedule
from analysis.random_features_cli import resample
from training.setup import compose

SMALL = ["--N", "60", "--tol", "1e-6"]      # a small model: the optimum in well under a second


def run(argv):
    """Parse argv as `python -m analysis ...` would (the command's own add_parser) and run it."""
    parser = argparse.ArgumentParser(prog="python -m analysis")
    random_features_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_export_loads_through_from_array_and_is_the_resampled_optimum(tmp_path, capsys):
    out = tmp_path / "rf" / "easy.npy"
    run(["random-features", "export", "--a", "3.5", "--b", "2", *SMALL, "--horizon", "1000",
         "--model-horizon", "150", "--out", str(out)])
    printed = capsys.readouterr().out
    etas, _ = optimal_schedule(PowerLawModel(N=60, a=3.5, b=2.0, batch=5, sigma=0.5), 150, tol=1e-6)
    # update s of 1000 sits at s/1000 of the run; step t of the model's 150 at t/150
    expected = np.interp(np.arange(1000) / 1000, np.arange(150) / 150, etas)
    expected /= expected.max()
    cfg = compose(["schedule=from_array", f"schedule.source={out}", "trainer.max_steps=1000"])
    multipliers = instantiate(cfg.schedule).multipliers()
    np.testing.assert_allclose(multipliers, expected, rtol=0, atol=1e-12)
    assert multipliers.max() == 1.0
    assert out.with_suffix(".png").stat().st_size > 10_000
    overrides = next(line for line in printed.splitlines() if "schedule=from_array" in line).split()
    assert overrides == ["schedule=from_array", f"schedule.source={out.resolve()}", "trainer.max_steps=1000"]
    assert "easy phase: a = 3.5, b = 2" in printed
    half = int(np.flatnonzero(expected < 0.5)[0])              # the easy optimum decays from an early peak
    assert f"half the peak from step {half:,} ({half / 1000:.3f} T)" in " ".join(printed.split())  # unwrapped


def test_phase_hard_at_the_model_horizon_is_the_normalized_optimum(tmp_path, capsys):
    # the default model horizon is min(T, 3000) = T here, so the file is eta* / max eta* itself
    out = tmp_path / "hard.npy"
    shape = run(["random-features", "export", "--phase", "hard", *SMALL, "--horizon", "40", "--out", str(out)])
    etas, _ = optimal_schedule(PowerLawModel(N=60, a=3.5, b=5.0, batch=5, sigma=0.5), 40, tol=1e-6)
    np.testing.assert_allclose(np.load(out), etas / etas.max(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.load(out), shape)
    assert "hard phase: a = 3.5, b = 5" in capsys.readouterr().out


def test_resample_in_the_fraction_of_the_run():
    etas = 2.0 * (1.0 - np.arange(10) / 10)              # linear decay with peak 2, 10 steps
    np.testing.assert_allclose(resample(etas, 40), 1.0 - np.minimum(np.arange(40) / 40, 0.9), atol=1e-15)
    np.testing.assert_allclose(resample(etas, 5), 1.0 - np.arange(5) / 5, atol=1e-15)
    with pytest.raises(ValueError, match="steps=0"):
        resample(etas, 0)


@pytest.mark.parametrize("argv, words", [
    (["--phase", "easy", "--horizon", "0"], "--horizon 0 must be >= 1"),
    (["--phase", "easy", "--horizon", "100", "--model-horizon", "0"], "--model-horizon 0 must be >= 1"),
    (["--a", "1.0", "--b", "2", "--horizon", "100"], "a=1.0"),
    (["--a", "3.5", "--b", "0.5", "--horizon", "100"], "b=0.5"),
    (["--a", "3.5", "--horizon", "100"], "both --a and --b"),
    (["--phase", "hard", "--b", "2", "--horizon", "100"], "not both"),
    (["--phase", "easy", "--horizon", "100", "--N", "0"], "N=0"),
])
def test_bad_input_exits_with_the_problem(tmp_path, argv, words):
    with pytest.raises(SystemExit, match=words):
        run(["random-features", "export", *argv, "--out", str(tmp_path / "x.npy")])
    assert not (tmp_path / "x.npy").exists()


def test_unknown_phase_and_wrong_suffix_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(["random-features", "export", "--phase", "medium", "--horizon", "100", "--out", str(tmp_path / "x.npy")])
    assert exit_.value.code == 2 and "invalid choice: 'medium'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="must end in .npy"):
        run(["random-features", "export", "--phase", "easy", "--horizon", "10", "--out", str(tmp_path / "x.txt")])
