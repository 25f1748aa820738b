"""Tests for analysis/random_features.py (THEORY.md section 6): recursion vs direct SGD, closed forms,
control vs autograd optimum, optimum vs baselines, input errors.

Run: python -m pytest -q tests/test_random_features.py -p no:cacheprovider
"""
import numpy as np
import pytest

from analysis.random_features import (PowerLawModel, best_constant, best_power_law, bias_variance,
                                      excess_loss, optimal_schedule, simulate_sgd)


def test_recursion_matches_direct_sgd():
    # moderate eta and batch: at eta 0.8, m = 2 the loss is so heavy-tailed that the standard error
    # of a few thousand seeds is itself unreliable (measured z of -5 at one seed, +0.5 at another)
    model = PowerLawModel(N=30, a=2.5, b=1.5, batch=5, sigma=0.3, eta_max=1.0)
    etas = 0.5 * (1 - np.arange(120) / 120) ** 0.5  # a non-constant schedule exercises the t-dependence
    mean, se = simulate_sgd(model, etas, seeds=2000, rng=2)
    exact = excess_loss(model, etas)
    assert mean.shape == exact.shape == (121,)
    for t in (1, 5, 20, 60, 119):
        assert abs(mean[t] - exact[t]) < 3.5 * se[t], (t, mean[t], exact[t], se[t])
    # and it resolves the variance (noise + L-feedback): the bias alone is many standard errors off
    bias, _ = bias_variance(model, etas)
    assert abs(mean[-1] - bias[-1]) > 10 * se[-1]


def test_deterministic_gd_limit():
    # sigma = 0 and batch -> infinity: ell_k(t) = (1 - eta lambda_k)^(2t) ell_k(0)
    model = PowerLawModel(N=50, a=3.0, b=2.0, batch=10**12)
    eta, T = 0.7, 40
    k = np.arange(1, 51.0)
    closed = ((1 - eta * k**-2.0)[None] ** (2 * np.arange(T + 1)[:, None]) * k**-3.0).sum(axis=1)
    np.testing.assert_allclose(excess_loss(model, np.full(T, eta)), closed, rtol=1e-9)


def test_batched_schedules_and_bias_variance():
    model = PowerLawModel(N=20, a=2.0, b=3.0, sigma=0.5)
    s = np.stack([np.full(30, 0.3), np.linspace(0.9, 0.1, 30)])
    L = excess_loss(model, s)
    np.testing.assert_allclose(L[1], excess_loss(model, s[1]))
    bias, var = bias_variance(model, s[1])
    np.testing.assert_allclose(bias + var, L[1])
    assert np.all(var >= -1e-15) and var[0] == 0
    # with sigma = 0 and batch huge, the variance vanishes
    b2, v2 = bias_variance(PowerLawModel(N=20, a=2.0, b=3.0, batch=10**12), s[1])
    assert np.max(np.abs(v2)) < 1e-10


def test_control_agrees_with_autograd():
    model = PowerLawModel(N=60, a=3.5, b=5.0)
    e1, l1 = optimal_schedule(model, 300, method="control")
    e2, l2 = optimal_schedule(model, 300, method="autograd", max_iter=500)
    assert abs(l1 - l2) / l1 < 1e-5
    assert np.all((e1 >= 0) & (e1 <= 1))


@pytest.mark.parametrize("a,b", [(3.5, 5.0), (3.5, 2.0), (2.0, 1.5)])
def test_optimum_beats_baselines(a, b):
    model = PowerLawModel(N=40, a=a, b=b)
    T = 200
    _, lopt = optimal_schedule(model, T)
    _, lc = best_constant(model, T)
    _, _, lp = best_power_law(model, T)
    assert lopt <= lc * (1 + 1e-9) and lopt <= lp * (1 + 1e-9)
    assert lopt < lc  # a schedule that decays strictly helps


@pytest.mark.parametrize("kw,field", [(dict(a=1.0), "a="), (dict(b=0.5), "b="), (dict(N=0), "N="),
                                      (dict(batch=0), "batch="), (dict(sigma=-1), "sigma="),
                                      (dict(eta_max=0), "eta_max=")])
def test_bad_model_input(kw, field):
    args = dict(N=10, a=2.0, b=2.0) | kw
    with pytest.raises(ValueError, match=field):
        PowerLawModel(**args)


def test_bad_call_input():
    model = PowerLawModel(N=10, a=2.0, b=2.0)
    with pytest.raises(ValueError, match="etas"):
        excess_loss(model, np.full(5, -0.1))
    with pytest.raises(ValueError, match="method"):
        optimal_schedule(model, 10, method="adam")
    with pytest.raises(ValueError, match="T="):
        best_constant(model, 0)
