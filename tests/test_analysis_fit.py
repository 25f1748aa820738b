"""analysis.fit on synthetic data with known parameters, and on the paper's WSD-0.2 sweep."""
from pathlib import Path

import numpy as np
import pytest

from analysis.bound import bound_curve
from analysis.fit import Curve, default_min_step, fit_bound, fit_lr_sweep, next_grid_lrs, optimal_lr_from_sweep
from analysis.runs import load_many
from schedules import WSD, Cosine

PAPER = Path(__file__).parent / "data" / "paper_logs"
T = 1500
STEPS = np.arange(0, T + 1, 25)


def synthetic_curves(g2, C, M, noise, seed=0):
    """Loss = C + M * Omega_t (D = 1, G_t^2 = g2) at STEPS for three runs of one sweep."""
    rng = np.random.default_rng(seed)
    runs = [(WSD(total_steps=T, warmup_steps=30, cooldown_fraction=0.2), 0.01),
            (WSD(total_steps=T, warmup_steps=30, cooldown_fraction=0.2), 0.03),
            (Cosine(total_steps=T, warmup_steps=30), 0.02)]
    curves = []
    for schedule, peak in runs:
        lr = peak * schedule.multipliers()
        omega = bound_curve(lr, G=np.sqrt(g2), D=1.0, horizons=np.maximum(STEPS, 1))
        loss = C + M * omega + rng.normal(0.0, noise, STEPS.size)
        loss[STEPS == 0] = np.nan                     # no bound at step 0
        curves.append(Curve(STEPS, loss, lr, label=f"{peak}"))
    return curves


def test_constant_g_recovered_exactly():
    curves = synthetic_curves(np.full(T, 2.0), C=2.5, M=0.3, noise=0.0)
    fit = fit_bound(curves, g_model="constant", min_step=50)
    assert fit.C == pytest.approx(2.5, rel=1e-6)
    assert fit.M == pytest.approx(0.3, rel=1e-6)
    assert fit.g2(np.arange(1, 10)) == pytest.approx(np.full(9, 2.0), rel=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-10) and fit.rmse < 1e-8
    np.testing.assert_allclose(fit.predict(curves[2].lr, curves[2].steps), curves[2].loss, rtol=1e-8)


def test_exp_power_g_recovered():
    t = np.arange(1, T + 1)
    g2 = 0.5 + 3.0 * np.exp(-t / 120.0) + 4.0 * t ** -0.5
    curves = synthetic_curves(g2, C=2.0, M=0.4, noise=1e-4)
    fit = fit_bound(curves, g_model="exp_power", min_step=25)
    assert fit.C == pytest.approx(2.0, abs=2e-3)
    assert fit.M == pytest.approx(0.4, rel=2e-2)
    np.testing.assert_allclose(fit.g2(t[100:]), g2[100:], rtol=0.05)
    assert fit.r2 > 0.9999 and fit.rmse < 2e-4
    # The constant model cannot follow the decaying G_t as well.
    assert fit_bound(curves, g_model="constant", min_step=25).rmse > 5 * fit.rmse


def test_lr_sweep_recovers_known_parabola():
    A, B, C = 2e-5, 15.0, 2.8
    lrs = np.array([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    fit = fit_lr_sweep(lrs, A / lrs + B * lrs + C)
    assert (fit.A, fit.B, fit.C) == pytest.approx((A, B, C), rel=1e-9)
    assert fit.optimal_lr == pytest.approx(np.sqrt(A / B), rel=1e-9) and fit.optimum_inside
    noisy = A / lrs + B * lrs + C + np.random.default_rng(0).normal(0, 1e-4, lrs.size)
    assert optimal_lr_from_sweep(lrs, noisy) == pytest.approx(np.sqrt(A / B), rel=0.05)


def test_lr_sweep_input_checks():
    with pytest.raises(ValueError, match=">= 3 distinct"):
        fit_lr_sweep([1e-3, 1e-3, 2e-3], [3.0, 3.0, 2.9])
    with pytest.raises(ValueError, match="> 0"):
        fit_lr_sweep([0.0, 1e-3, 2e-3], [3.0, 3.0, 2.9])


def test_paper_wsd_sweep():
    # Final validation losses of the 124M WSD-0.2 runs at 50k steps: the optimum is inside the grid,
    # between the two best LRs (5e-4: 2.973, 1e-3: 2.966, 2e-3: 2.974).
    runs = load_many(str(PAPER / "ann124-0.2_*decay_linear_0.2_iter50000_*.json"))
    fit = fit_lr_sweep([r.peak_lr for r in runs], [r.final_val_loss for r in runs])
    assert 5e-4 < fit.optimal_lr < 2e-3 and fit.r2 > 0.99
    # One run's validation curve (stitched: stable parent, then the cooldown) is followed closely by
    # C + M * Omega_t with a fitted G_t, the cooldown's drop included.
    run = [r for r in runs if r.peak_lr == 1e-3][0]
    m = run.metrics.dropna(subset=["val/loss"])
    curve = Curve(m["step"].to_numpy()[::2], m["val/loss"].to_numpy()[::2], run.lr())
    bound_fit = fit_bound(curve, g_model="exp_power", min_step=1000)
    assert bound_fit.r2 > 0.999 and bound_fit.rmse < 0.005
    val = m.set_index("step")["val/loss"]
    pred = bound_fit.predict(run.lr(), [40000, 49800])
    assert pred[0] - pred[1] == pytest.approx(val[40000] - val[49800], abs=0.01)    # ~0.19


def test_lr_sweep_status_and_next_lrs():
    """Status of the optimum sqrt(A/B) against the swept LRs, with the closed-form optimum placed by hand."""
    lrs = np.array([1e-3, 2e-3, 4e-3, 8e-3])
    A, B, C = 2e-5, 5.0, 3.0                        # optimum sqrt(A/B) = 2e-3, inside
    inside = fit_lr_sweep(lrs, A / lrs + B * lrs + C)
    assert inside.status == "bracketed" and inside.next_lrs() == []
    # Optimum 1.5x above the largest LR: extrapolated at the default factor 2, not at 1.4.
    B_out = A / (1.5 * 8e-3) ** 2
    losses = A / lrs + B_out * lrs + C
    assert fit_lr_sweep(lrs, losses).status == "extrapolated"
    assert fit_lr_sweep(lrs, losses).factor_outside == pytest.approx(1.5, rel=1e-6)
    narrow = fit_lr_sweep(lrs, losses, max_extrapolation=1.4)
    assert narrow.status == "undetermined" and narrow.open_side == "above"
    assert narrow.next_lrs() == pytest.approx([1.6e-2, 3.2e-2])    # the grid's own factor 2
    # Monotone (B = 0): no minimum at all; below the sweep (A = 0) the grid continues downwards.
    monotone = fit_lr_sweep(lrs, A / lrs + C)
    assert monotone.status == "undetermined" and monotone.next_lrs(3) == pytest.approx([1.6e-2, 3.2e-2, 6.4e-2])
    rising = fit_lr_sweep(lrs, B * lrs + C)
    assert rising.status == "undetermined" and rising.next_lrs() == pytest.approx([5e-4, 2.5e-4])
    # An LR that diverged caps the optimum and the next points, which then split the gap in log.
    capped = fit_lr_sweep(lrs, losses, ceiling=1.0e-2)
    assert capped.status == "undetermined"
    assert capped.next_lrs() == pytest.approx([8e-3 * 1.25 ** (1 / 3), 8e-3 * 1.25 ** (2 / 3)])
    with pytest.raises(ValueError, match="max_extrapolation"):
        fit_lr_sweep(lrs, losses, max_extrapolation=0.5)


def test_next_grid_lrs_follows_the_median_spacing():
    # The paper's grid {1e-4, 5e-4, 1e-3, 2e-3}: log-steps ln 5, ln 2, ln 2 -> median factor 2.
    assert next_grid_lrs([1e-4, 5e-4, 1e-3, 2e-3], "above") == pytest.approx([4e-3, 8e-3])
    assert next_grid_lrs([1e-3, 3e-3, 1e-2], "above") == pytest.approx([10 ** -1.5, 1e-1], rel=0.02)
    assert next_grid_lrs([1e-3], "below", 1) == pytest.approx([5e-4])
    with pytest.raises(ValueError, match="side"):
        next_grid_lrs([1e-3], "left")


def test_default_min_step():
    assert default_min_step(50_000) == 1000 and default_min_step(400) == 40 and default_min_step(5) == 1
