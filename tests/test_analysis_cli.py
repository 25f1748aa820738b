"""`python -m analysis advise transfer|sweep` on the inputs people have: the paper's grid (bracketed
optima), a monotone 3-LR sweep, sweeps with diverged runs, sparse curves, failed launches, mixed
horizons and a single run. Synthetic run directories are written here (config.yaml with a `schedule`
node and `optimizer.lr`, metrics.jsonl as train.py writes it); final losses follow A/lr + B lr + C
with known A, B, C, so the optimum sqrt(A/B) is known in closed form.

    python -m pytest tests/test_analysis_cli.py
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from analysis import advise
from analysis.cli import main

PAPER = Path(__file__).parent / "data" / "paper_logs"
COS_ZERO = str(PAPER / "cos-zero-124m_*.json")
# A single-value override (`optimizer.lr=0.001` at the end of a line or before a space); the LRs to
# run next are a comma-separated Hydra sweep (`-m ... optimizer.lr=0.032,0.1`) and do not match.
OVERRIDE = re.compile(r"optimizer\.lr=[^,\s]+(\s|$)")


def wsd(total_steps):
    return {"_target_": "schedules.WSD", "total_steps": total_steps, "warmup_steps": 10, "warmup_start": 0.0,
            "cooldown_fraction": 0.2, "cooldown_kind": "linear", "final_fraction": 0.0}


def write_run(path: Path, lr, final, total_steps=200, val_every=20, curve=True, events=()):
    """A finished run: validation loss every `val_every` steps falling to `final` (curve=False: only
    the final value), then final/val_loss; `events` are extra metrics rows appended at the end."""
    path.mkdir(parents=True)
    config = {"schedule": wsd(total_steps), "optimizer": {"_target_": "torch.optim.AdamW", "lr": lr},
              "model": {"n_layer": 2, "d_model": 64}, "data": {"name": "embedded"}}
    OmegaConf.save(OmegaConf.create(config), path / "config.yaml")
    rows = []
    if curve:
        rows += [{"step": s, "tokens": 64 * s, "train/loss": final + 3.0 / np.sqrt(s) + 0.01,
                  "val/loss": final + 3.0 / np.sqrt(s)} for s in range(val_every, total_steps, val_every)]
    rows += [{"step": total_steps, "tokens": 64 * total_steps, "val/loss": final},
             {"step": total_steps, "tokens": 64 * total_steps, "final/val_loss": final}, *events]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def parabola(lr, A=2e-3, B=2.0, C=3.0):
    """Final loss A/lr + B lr + C: optimum sqrt(A/B) = 0.0316."""
    return A / lr + B * lr + C


def run(argv, capsys):
    """main(argv) -> (exit code, stdout): 0 when it returns, the SystemExit's code (non-zero) otherwise."""
    try:
        main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().out


def assert_fits_120_columns(out):
    # Ready-to-paste commands stay on one line; everything else (tables, notes) fits in 120 columns.
    commands = ("schedule=", "python train.py")
    assert all(len(line) <= 120 for line in out.splitlines() if not line.strip().startswith(commands))


def test_paper_grid_bracketed_optima_and_plots(tmp_path, capsys):
    code, out = run(["advise", "sweep", "--runs", str(PAPER / "ann124-*_decay_linear_*iter50000_*.json"),
                     "--out", str(tmp_path)], capsys)
    assert code == 0
    assert out.count("bracketed") >= 4 and "extrap. x1.18" in out         # 0.8: 1.18x beyond 2e-3
    assert_fits_120_columns(out)
    for suffix in (".png", ".pdf"):
        assert (tmp_path / f"lr_sweep{suffix}").stat().st_size > 0


def test_paper_cosine_sweep_with_its_diverged_run_is_not_advised(capsys):
    """The issue's case: cos-zero-124m at 50k, lr 1e-4..2e-3 falling monotonically, 5e-3 diverged."""
    code, out = run(["advise", "transfer", "--runs", COS_ZERO, "--target", "linear", "--no-plot"], capsys)
    assert code != 0 and "undetermined" in code
    assert "left out diverged" in out and "4 of 5 runs counted" in out
    assert not any(OVERRIDE.search(line) for line in out.splitlines())
    # The next LRs split (2e-3, 5e-3) evenly in log: the diverged LR caps the grid's next points.
    assert "optimizer.lr=0.0027,0.0037" in out
    assert_fits_120_columns(out)


def test_monotone_three_lr_sweep(tmp_path, capsys):
    """python train.py -m optimizer.lr=1e-3,3e-3,1e-2 with the loss falling monotonically in the LR."""
    for lr in (1e-3, 3e-3, 1e-2):
        write_run(tmp_path / "sweep" / f"{lr:g}", lr, 3.0 + 2e-3 / lr)
    runs = str(tmp_path / "sweep" / "*")
    code, out = run(["advise", "transfer", "--runs", runs, "--target", "linear", "--no-plot"], capsys)
    assert code != 0 and "loss is lowest at the largest swept LR" in code
    assert not any(OVERRIDE.search(line) for line in out.splitlines())
    assert "optimizer.lr=0.032,0.1" in out           # the next two points of the sweep's own grid (x3.16)
    code, out = run(["advise", "sweep", "--runs", runs, "--no-plot"], capsys)
    assert code != 0 and "undetermined" in out and "3/3" in out      # three LRs counted, none missed
    assert not any(OVERRIDE.search(line) for line in out.splitlines())
    assert "optimizer.lr=0.032,0.1" in out
    assert_fits_120_columns(out)


def test_diverged_runs_left_out_on_their_own(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for lr in (0.01, 0.02, 0.04, 0.08):
        write_run(sweep / f"{lr:g}", lr, parabola(lr))
    # NaN train loss (train.py writes null and stops: no final loss), and a blow-up that finished.
    nan = write_run(sweep / "0.16", 0.16, parabola(0.16), events=[{"step": 201, "train/loss": None}])
    blown = [{"step": 200, "val/loss": 9.0}, {"step": 200, "final/val_loss": 9.0}]
    write_run(sweep / "0.32", 0.32, parabola(0.08), events=blown)
    code, out = run(["advise", "sweep", "--runs", str(sweep / "*"), "--no-plot"], capsys)
    assert code == 0, out
    assert "non-finite train/loss at step 201" in out and "nats above its best" in out
    assert "4/6" in out and "bracketed" in out
    (line,) = [s for s in out.splitlines() if "optimizer.lr=" in s]
    assert float(line.split("optimizer.lr=")[1]) == pytest.approx(np.sqrt(2e-3 / 2.0), rel=1e-3)
    assert nan.exists()


def test_sparse_runs_count_in_the_sweep_without_a_curve_fit(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep / "a", 0.01, parabola(0.01))
    write_run(sweep / "b", 0.03, parabola(0.03), val_every=70)        # two validation points
    write_run(sweep / "c", 0.1, parabola(0.1), curve=False)           # only the final value
    # Failed launches beside them: config but no metrics, an empty metrics file, Hydra's multirun.yaml.
    (sweep / "d").mkdir()
    (sweep / "d" / "config.yaml").write_text(OmegaConf.to_yaml({"schedule": wsd(200)}))
    write_run(sweep / "e", 0.3, 3.0, curve=False)
    (sweep / "e" / "metrics.jsonl").write_text("")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    code, out = run(["advise", "transfer", "--runs", str(sweep / "*"), "--target", "linear",
                     "--out", str(tmp_path / "out")], capsys)
    assert code == 0, out
    flat = " ".join(out.split())     # notes wrap at 120 columns
    assert "no metrics.jsonl (a failed launch?)" in flat and "no metrics logged (a failed launch?)" in flat
    assert "3 of 3 runs counted" in out and "bracketed" in out
    assert out.count("fewer than 4 validation points") == 2
    assert (tmp_path / "out" / "overlay.png").stat().st_size > 0        # the one full curve is fitted
    tuned = np.sqrt(2e-3 / 2.0)
    linear = advise.group_config("linear", like=wsd(200))
    (line,) = [s for s in out.splitlines() if s.strip().startswith("schedule=linear ")]
    assert float(line.split("optimizer.lr=")[1]) == pytest.approx(
        advise.transfer_lr(tuned, advise.shape_of(wsd(200)), advise.shape_of(linear)), rel=1e-3)


def test_mixed_horizons_are_advised_per_horizon(tmp_path, capsys):
    for T, scale in ((200, 1.0), (400, 0.7)):       # the longer horizon's optimum is lower
        for lr in (0.01, 0.03, 0.1):
            write_run(tmp_path / "runs" / f"T{T}_{lr:g}", lr, parabola(lr, B=2.0 / scale ** 2), total_steps=T)
    runs = str(tmp_path / "runs" / "*")
    code, out = run(["advise", "transfer", "--runs", runs, "--target", "linear", "--no-plot"], capsys)
    assert code == 0, out
    assert "== horizon T = 200 steps" in out and "== horizon T = 400 steps" in out
    assert out.count("schedule=linear ") == 2
    assert "trainer.max_steps=200" in out and "trainer.max_steps=400" in out
    table = main(["advise", "sweep", "--runs", runs, "--no-plot"])
    assert sorted(table["T"]) == [200, 400] and (table["status"] == "bracketed").all()
    optimum = table.set_index("T")["empirical_lr"]
    assert optimum[200] == pytest.approx(np.sqrt(2e-3 / 2.0), rel=1e-3)
    assert optimum[400] == pytest.approx(0.7 * np.sqrt(2e-3 / 2.0), rel=1e-3)
    assert_fits_120_columns(capsys.readouterr().out)


def test_a_single_run(tmp_path, capsys):
    path = write_run(tmp_path / "one", 0.02, 3.5)
    code, out = run(["advise", "transfer", "--runs", str(path), "--target", "linear", "--no-plot"], capsys)
    assert code == 0 and "taken as tuned" in out
    (line,) = [s for s in out.splitlines() if s.strip().startswith("schedule=linear ")]
    linear = advise.group_config("linear", like=wsd(200))
    assert float(line.split("optimizer.lr=")[1]) == pytest.approx(
        advise.transfer_lr(0.02, advise.shape_of(wsd(200)), advise.shape_of(linear)), rel=1e-3)
    code, out = run(["advise", "sweep", "--runs", str(path), "--no-plot"], capsys)
    assert code != 0 and "1 distinct peak LR" in code
    assert not any(OVERRIDE.search(line) for line in out.splitlines())
    assert "optimizer.lr=0.01,0.04" in out           # one factor-2 step on each side


def test_no_target_is_an_error(tmp_path, capsys):
    for lr in (0.01, 0.03, 0.1):
        write_run(tmp_path / "sweep" / f"{lr:g}", lr, parabola(lr))
    code, out = run(["advise", "transfer", "--runs", str(tmp_path / "sweep" / "*"), "--no-plot"], capsys)
    assert code != 0 and "no target schedule" in code and "--target" in code


def test_overlay_draws_the_bound_dashed_black_over_solid_measured_lines():
    from analysis.fit import Curve, fit_bound
    from analysis.plots import plot_overlay

    shape = advise.shape_of(wsd(200))
    steps = np.arange(20, 201, 20)
    pairs = []
    for peak in (0.01, 0.03):
        curve = Curve(steps, 3.0 + 3.0 / np.sqrt(steps) + peak, peak * shape, label=f"lr={peak:g}")
        pairs.append((curve, fit_bound(curve, min_step=None)))
    fig = plot_overlay(pairs, None, title="t")
    ax = fig.axes[0]
    measured = [line for line in ax.lines if line.get_linestyle() == "-"]
    bound = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(measured) == 2 and len(bound) == 2
    assert measured[0].get_color() != measured[1].get_color()
    assert all(line.get_color() == "black" and line.get_zorder() > measured[0].get_zorder() for line in bound)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "measured validation loss" in labels and any(t.startswith("fitted bound") for t in labels)
    assert "nats" in ax.get_ylabel() and ax.get_xlabel() == "step"


def test_lr_sweep_marks_each_status_and_draws_a_target_without_runs():
    from analysis.fit import fit_lr_sweep
    from analysis.plots import plot_lr_sweep

    lrs = np.array([1e-3, 2e-3, 4e-3, 8e-3])
    bracketed = fit_lr_sweep(lrs, parabola(lrs, A=2e-5, B=5.0))                    # optimum 2e-3
    extrapolated = fit_lr_sweep(lrs, parabola(lrs, A=2e-5, B=2e-5 / 0.012 ** 2))  # 1.5x above 8e-3
    groups = [{"label": "WSD", "lrs": lrs, "losses": bracketed.losses, "fit": bracketed, "predicted_lr": 2.1e-3},
              {"label": "cosine", "lrs": lrs, "losses": extrapolated.losses, "fit": extrapolated},
              {"label": "linear decay", "lrs": [], "losses": [], "predicted_lr": 3e-3},        # no runs of it
              {"label": "far", "lrs": [], "losses": [], "predicted_lr": 1.0}]                  # beyond the axis
    ax = plot_lr_sweep(groups, None).axes[0]
    markers = [line.get_marker() for line in ax.lines]
    assert markers.count("*") == 1 and markers.count("^") == 1
    vertical = {line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"}
    assert 3e-3 in vertical and 2.1e-3 in vertical
    low, high = ax.get_xlim()
    assert low >= 1e-3 / 2.5 and high <= 8e-3 * 2.5 and high in vertical       # 1.0 is an arrow at the edge
    colors = [line.get_color() for line in ax.lines if line.get_marker() == "o"]
    assert len(set(colors)) == 2                                                    # one colour per schedule


def test_a_sweep_that_diverged_everywhere(tmp_path, capsys):
    for lr in (0.1, 0.3):
        write_run(tmp_path / f"{lr:g}", lr, 3.0, events=[{"step": 201, "train/loss": None}])
    code, out = run(["advise", "transfer", "--runs", str(tmp_path / "*"), "--target", "linear",
                     "--out", str(tmp_path / "out")], capsys)
    assert code != 0 and "0 of 2 runs counted" in out and out.count("non-finite train/loss") == 2
    assert not any(OVERRIDE.search(line) for line in out.splitlines())
    assert "optimizer.lr=0.05,0.025" in out          # below the smallest LR that diverged
