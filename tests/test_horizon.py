"""`advise horizon` (analysis/horizon.py): the best peak LR vs the horizon T, its exponent xi and the phase.

Synthetic families are run directories as train.py writes them (config.yaml with a `schedule` node and
`optimizer.lr`, metrics.jsonl) whose final losses are a parabola in log LR around a known eta*(T), plus
seeded noise; the paper's 124M WSD family (20% linear cooldown) at 15k-50k steps is checked against a
fit done here from the JSON files alone (numpy least squares, scipy curve_fit, closed-form WLS sums).

    python -m pytest tests/test_horizon.py -p no:cacheprovider
"""
import argparse
import glob
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy.optimize import curve_fit
from scipy.stats import t as student_t

from analysis import horizon

DATA = Path(__file__).parent / "data"
PAPER_GLOBS = [str(DATA / "paper_logs_horizons" / "*.json"),
               str(DATA / "paper_logs" / "ann124-0.2_*decay_linear_0.2_*.json")]
HORIZONS = (500, 1000, 2000, 4000, 8000)


def write_run(path: Path, total_steps, lr, final):
    """A finished run of WSD (20% linear cooldown) at `total_steps`: its last validation loss and the final one."""
    path.mkdir(parents=True)
    schedule = {"_target_": "schedules.WSD", "total_steps": total_steps, "warmup_steps": 10, "warmup_start": 0.0,
                "cooldown_fraction": 0.2, "cooldown_kind": "linear", "final_fraction": 0.0}
    config = {"schedule": schedule, "optimizer": {"_target_": "torch.optim.AdamW", "lr": lr},
              "model": {"n_layer": 2, "d_model": 64}, "data": {"name": "embedded"}}
    OmegaConf.save(OmegaConf.create(config), path / "config.yaml")
    rows = [{"step": total_steps, "tokens": 64 * total_steps, "val/loss": final},
            {"step": total_steps, "tokens": 64 * total_steps, "final/val_loss": final}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_family(root: Path, eta_star, horizons=HORIZONS, seed=0, noise=0.002, curvature=0.05):
    """LR sweeps at each horizon: 7 LRs a factor 2 apart around eta_star(T), the grid shifted by up to a
    third of a step (a sweep around the expected optimum, not centred on it); final loss
    3 + curvature * log(lr / eta*)^2 + N(0, noise^2)."""
    rng = np.random.default_rng(seed)
    for T in horizons:
        eta = eta_star(T)
        for lr in eta * 2.0 ** (np.arange(-3, 4) + rng.uniform(-1 / 3, 1 / 3)):
            loss = 3.0 + curvature * np.log(lr / eta) ** 2 + noise * rng.standard_normal()
            write_run(root / f"T{T}_lr{lr:.4g}", T, float(lr), float(loss))
    return str(root / "*")


def advise_horizon(argv):
    """`advise horizon ARGV` through the parser add_parser builds (as analysis/cli.py's advise has it)."""
    parser = argparse.ArgumentParser()
    horizon.add_parser(parser.add_subparsers(dest="mode", required=True))
    args = parser.parse_args(["horizon", *argv])
    return args.func(args)


@pytest.mark.parametrize("xi_true, phase", [(0.4, "easy"), (0.0, "hard"), (-0.4, "neither")])
def test_synthetic_family_recovers_the_exponent_and_the_phase(tmp_path, capsys, xi_true, phase):
    runs = write_family(tmp_path / "runs", lambda T: 0.01 * T ** -xi_true * 1000 ** xi_true)
    table = advise_horizon(["--runs", runs, "--out", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    assert len(table) == 1
    row = table.iloc[0]
    assert row["horizons"] == list(HORIZONS)
    assert row["phase"] == phase, out
    # The fitted exponent is the true one within 2 standard errors, and the se is small enough that
    # this check could fail (the three cases are 0.4 apart).
    assert abs(row["xi"] - xi_true) <= 2 * row["se"], (row["xi"], row["se"])
    assert 0 < row["se"] < 0.05
    assert f"verdict: {phase}" in out
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"horizon.png", "horizon.pdf"}


def test_se_of_the_optimum_matches_the_spread_over_noise_draws():
    """The delta-method se of log eta* against the spread of the fitted optimum over 400 noise draws
    of one sweep whose losses follow the fit's own model (A/lr + B lr + C)."""
    from analysis.fit import fit_lr_sweep

    rng = np.random.default_rng(1)
    lrs, noise = 1e-3 * 2.0 ** np.arange(-3, 4), 0.003
    clean = 2e-6 / lrs + 2.0 * lrs + 3.0            # optimum sqrt(A/B) = 1e-3
    logs, ses = [], []
    for _ in range(400):
        fit = fit_lr_sweep(lrs, clean + noise * rng.standard_normal(lrs.size), max_extrapolation=1.0)
        logs.append(np.log(fit.optimal_lr))
        ses.append(horizon.log_optimum_se(fit, noise ** 2))    # the true residual variance
    assert np.std(logs) == pytest.approx(np.mean(ses), rel=0.1)
    assert np.mean(logs) == pytest.approx(np.log(1e-3), abs=3 * np.std(logs) / np.sqrt(400))


def test_fewer_than_two_determined_horizons_exit_1_naming_what_is_missing(tmp_path, capsys):
    write_family(tmp_path / "runs", lambda T: 1e-3, horizons=(500,))
    for lr in (1e-4, 2e-4, 4e-4):     # T = 1000: the loss falls at every LR, no optimum
        write_run(tmp_path / "runs" / f"T1000_lr{lr:g}", 1000, lr, 3.0 - lr * 100)
    with pytest.raises(SystemExit) as stop:
        advise_horizon(["--runs", str(tmp_path / "runs" / "*"), "--no-plot"])
    message = str(stop.value.code)
    assert "1 horizon(s) with a determined optimum (T=500)" in message and "needs >= 2" in message
    assert "T=1000: the loss is lowest at the largest swept LR" in message and "next LRs" in message


def _independent_fit():
    """xi and its se from the JSON files alone: per horizon A/lr + B lr + C by numpy least squares, the
    residual variance pooled over the sweeps, the se of log sqrt(A/B) from scipy's curve_fit covariance
    (absolute sigma = the pooled residual sd) and a numerical gradient, then WLS by its closed-form sums."""
    sweeps = {}
    for path in sorted(p for g in PAPER_GLOBS for p in glob.glob(g)):
        log = json.loads(Path(path).read_text())
        T, lr = log["config"]["iterations"], log["config"]["lr"]
        sweeps.setdefault(T, []).append((lr, log["history"]["final-val"]["final_val_loss"][-1]))
    model = lambda lr, A, B, C: A / lr + B * lr + C      # noqa: E731
    solved, sse, dof = {}, 0.0, 0
    for T, points in sweeps.items():
        lrs, losses = np.array(points).T
        X = np.stack([1 / lrs, lrs, np.ones_like(lrs)], axis=1)
        coef = np.linalg.lstsq(X, losses, rcond=None)[0]
        solved[T] = (lrs, losses, coef)
        sse, dof = sse + float(((losses - X @ coef) ** 2).sum()), dof + len(lrs) - 3
    sd = np.sqrt(sse / dof)
    Ts, y, w = [], [], []
    for T, (lrs, losses, coef) in sorted(solved.items()):
        params, cov = curve_fit(model, lrs, losses, p0=coef, sigma=np.full(lrs.size, sd), absolute_sigma=True)
        log_opt = lambda p: 0.5 * np.log(p[0] / p[1])   # noqa: E731
        grad = np.array([(log_opt(params + h) - log_opt(params - h)) / (2 * h[i])
                         for i, h in enumerate(np.diag(1e-6 * np.abs(params)))])
        Ts.append(np.log(T)), y.append(log_opt(params)), w.append(1 / (grad @ cov @ grad))
    x, y, w = np.array(Ts), np.array(y), np.array(w)
    xbar, ybar = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    slope = (w * (x - xbar) * (y - ybar)).sum() / (w * (x - xbar) ** 2).sum()
    se = 1 / np.sqrt((w * (x - xbar) ** 2).sum())
    chi2 = (w * (y - ybar - slope * (x - xbar)) ** 2).sum() / (len(x) - 2)
    return -slope, se * np.sqrt(max(chi2, 1.0)), dof


def test_paper_wsd_family_end_to_end_matches_an_independent_fit(tmp_path, capsys):
    table = advise_horizon(["--runs", PAPER_GLOBS[0], "--runs", PAPER_GLOBS[1], "--out", str(tmp_path)])
    out = capsys.readouterr().out
    row = table.iloc[0]
    assert len(table) == 1 and row["horizons"] == [15000, 25000, 35000, 50000]
    xi, se, dof = _independent_fit()
    assert row["xi"] == pytest.approx(xi, abs=1e-4)
    assert row["se"] == pytest.approx(se, rel=1e-3)
    assert row["fit"].se_dof == dof == 2
    assert xi > student_t.ppf(0.975, dof) * se      # significant by the independent numbers too
    assert row["phase"] == "easy" and "verdict: easy phase" in out
    assert "15,000" in out and "50,000" in out and "bracketed?" in out
    assert (tmp_path / "horizon.png").exists() and (tmp_path / "horizon.pdf").exists()
    # The plot's dashed line is the fitted power law from the first to the last horizon.
    fig = horizon.plot_horizon([row["fit"]], None)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    T, lr = line.get_data()
    assert T[[0, -1]] == pytest.approx([15000, 50000])
    assert lr[[0, -1]] == pytest.approx(np.exp(row["fit"].c) * T[[0, -1]] ** -xi, rel=1e-3)


def test_a_fit_inside_the_sweep_with_its_best_run_at_the_edge_is_flagged_and_left_out_by_strict(tmp_path, capsys):
    model = lambda lr, opt: 1e-3 * (opt / lr + lr / opt) + 3.0     # noqa: E731  (A/lr + B lr + C, optimum opt)
    for lr in 1e-3 * 2.0 ** np.arange(-3, 4):
        write_run(tmp_path / "runs" / f"T500_lr{lr:g}", 500, float(lr), float(model(lr, 1e-3)))
    for lr in (1e-3, 2e-3, 4e-3):    # optimum 3.5e-3: inside the sweep, but 4e-3 is the best run
        write_run(tmp_path / "runs" / f"T1000_lr{lr:g}", 1000, lr, model(lr, 3.5e-3))
    runs = str(tmp_path / "runs" / "*")
    table = advise_horizon(["--runs", runs, "--no-plot"])
    out = capsys.readouterr().out
    assert table.iloc[0]["horizons"] == [500, 1000]
    assert table.iloc[0]["xi"] == pytest.approx(-np.log(3.5) / np.log(2), rel=1e-4)   # eta* x3.5 when T doubles
    assert "yes (fit; best run at the largest LR)" in out
    with pytest.raises(SystemExit) as stop:
        advise_horizon(["--runs", runs, "--no-plot", "--strict"])
    assert "T=1000: the best run is at an edge of the swept LRs (--strict)" in str(stop.value.code)


def test_verdict_thresholds_are_the_student_t_quantile():
    """At 2 dof the 97.5% quantile of Student's t is (2p - 1)/sqrt(2p(1 - p)) with p = 0.975, i.e. 4.3027:
    xi = 1 is significant just above that many se, not just below; xi + t se against HARD_BAND for hard."""
    p = 0.975
    t2 = (2 * p - 1) / np.sqrt(2 * p * (1 - p))
    assert horizon.classify(1.0, 1 / t2 * 0.999, n=4, dof=2)[0] == "easy"
    assert horizon.classify(1.0, 1 / t2 * 1.001, n=4, dof=2)[0] == "inconclusive"
    assert horizon.classify(-1.0, 1 / t2 * 0.999, n=4, dof=2)[0] == "neither"
    se = horizon.HARD_BAND / t2
    assert horizon.classify(0.0, se * 0.999, n=4, dof=2)[0] == "hard"
    assert horizon.classify(0.0, se * 1.001, n=4, dof=2)[0] == "inconclusive"
    assert horizon.classify(0.3, np.nan, n=2, dof=0)[0] == "undetermined"
