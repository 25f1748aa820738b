"""Tests for analysis/random_features_momentum.py: the heavy-ball mean recursion against SGD (beta = 0) and
against a direct simulation, its adjoint gradient against torch autograd, and the joint (eta, beta) optimum
against SGD's optimum and a brute-force grid.

    python -m pytest -q tests/test_random_features_momentum.py -p no:cacheprovider
"""
import itertools

import numpy as np
import pytest
import torch

from analysis.random_features import PowerLawModel, excess_loss, optimal_schedule
from analysis.random_features_momentum import (_value_and_grad, ema_form, momentum_loss, optimal_momentum_schedule,
                                               second_moments, simulate_momentum)

HARD = PowerLawModel(N=30, a=3.5, b=5.0, sigma=0.5)
EASY = PowerLawModel(N=60, a=3.5, b=2.0, sigma=0.5)


def test_beta_zero_is_sgd():
    rng = np.random.default_rng(0)
    etas = rng.uniform(0, 1, (3, 40))
    np.testing.assert_allclose(momentum_loss(EASY, etas, np.zeros_like(etas)), excess_loss(EASY, etas),
                               rtol=1e-13, atol=0)
    np.testing.assert_allclose(momentum_loss(HARD, etas[0], np.zeros(40)), excess_loss(HARD, etas[0]), rtol=1e-13)


def test_recursion_matches_direct_simulation():
    """All three moment sums within 4.5 standard errors of 3000 seeds at every step; the SGD recursion
    (momentum ignored) is many standard errors off, so the check resolves the momentum terms."""
    model = PowerLawModel(N=20, a=3.5, b=2.0, sigma=0.5)
    T = 40
    etas = np.linspace(0.4, 0.1, T)
    betas = np.full(T, 0.7)
    X, Y, Z = second_moments(model, etas, betas)
    sim = simulate_momentum(model, etas, betas, seeds=3000, rng=1)
    for key, theory in (("L", X.sum(1)), ("EV", Y.sum(1)), ("VV", Z.sum(1))):
        mean, se = sim[key]
        assert np.all(np.abs(mean[1:] - theory[1:]) < 4.5 * se[1:]), key
    mean, se = sim["L"]
    assert np.max(np.abs(mean - excess_loss(model, etas)) / np.maximum(se, 1e-300)) > 20


def test_second_moments_by_hand_two_steps():
    """One mode, sigma = 0, batch m: step 0 is SGD; step 1 carries beta_1 v_1 (expanded by hand)."""
    model = PowerLawModel(N=1, a=2.0, b=2.0, batch=3, sigma=0.0)
    e0, e1, b1 = 0.3, 0.2, 0.6
    X, Y, Z = second_moments(model, [e0, e1], [0.9, b1])   # beta_0 multiplies v_0 = 0: no effect
    g2 = lambda x: x * (1 + 2 / 3)                    # lambda E[g^2] for lambda = 1, N = 1: x + (x + x)/m
    z1 = e0**2 * g2(1.0)
    y1 = -e0 * 1.0 + z1
    x1 = 1.0 - 2 * e0 + z1
    z2 = b1**2 * z1 - 2 * b1 * e1 * y1 + e1**2 * g2(x1)
    x2 = x1 + 2 * (b1 * y1 - e1 * x1) + z2
    np.testing.assert_allclose([X[1, 0], Y[1, 0], Z[1, 0], X[2, 0], Z[2, 0]], [x1, y1, z1, x2, z2], rtol=1e-14)


def _torch_final_loss(model, etas, betas):
    """Independent autograd reference: the recursion of the module docstring, written out in torch."""
    lam = torch.tensor(model.lambdas, dtype=torch.float64)
    X = torch.tensor(model.ell0, dtype=torch.float64)
    Y, Z = torch.zeros_like(X), torch.zeros_like(X)
    for e, b in zip(etas.unbind(), betas.unbind()):
        g2 = lam**2 * X + lam**2 / model.batch * (X + X.sum() + model.sigma**2)
        ev = b * Y - e * lam * X
        Z = b * b * Z - 2 * b * e * lam * Y + e * e * g2
        Y, X = ev + Z, X + 2 * ev + Z
    return X.sum()


def test_adjoint_gradient_matches_torch_autograd():
    rng = np.random.default_rng(3)
    T = 30
    etas, betas = rng.uniform(0, 1, T), rng.uniform(0, 0.95, T)
    p = torch.tensor(np.r_[etas, betas], requires_grad=True)
    loss = _torch_final_loss(EASY, p[:T], p[T:])
    loss.backward()
    value, g_eta, g_beta = _value_and_grad(EASY, etas, betas)
    assert value == pytest.approx(loss.item(), rel=1e-13)
    np.testing.assert_allclose(np.r_[g_eta, g_beta], p.grad.numpy(), rtol=1e-10, atol=1e-16)


def test_ema_form_gives_the_same_iterates():
    """Feeding the same gradients to heavy ball and to the EMA form with ema_form's (eta', beta')."""
    rng = np.random.default_rng(4)
    etas, betas, grads = rng.uniform(0, 1, 50), rng.uniform(0, 0.99, 50), rng.standard_normal(50)
    eta_ema, beta_ema = ema_form(etas, betas)
    v = u = w_hb = w_ema = 0.0
    for t in range(50):
        v = betas[t] * v - etas[t] * grads[t]
        u = beta_ema[t] * u + (1 - beta_ema[t]) * grads[t]
        w_hb, w_ema = w_hb + v, w_ema - eta_ema[t] * u
        assert w_ema == pytest.approx(w_hb, rel=1e-12, abs=1e-12)
    assert np.all((beta_ema >= 0) & (beta_ema < 1))


def test_joint_optimum_beats_sgd_in_the_hard_phase():
    T = 60
    sgd_etas, sgd_loss = optimal_schedule(HARD, T, tol=1e-7)
    etas, betas, loss = optimal_momentum_schedule(HARD, T, start=sgd_etas, max_iter=80)
    assert np.all((etas >= 0) & (etas <= HARD.eta_max)) and np.all((betas >= 0) & (betas <= 0.999))
    assert loss == pytest.approx(momentum_loss(HARD, etas, betas)[-1], rel=1e-12)
    assert loss < 0.85 * sgd_loss              # momentum buys a large gain where SGD is bias-limited
    e_etas, e_betas, e_loss = optimal_momentum_schedule(EASY, T, max_iter=80)
    e_sgd = optimal_schedule(EASY, T)[1]
    assert e_loss <= e_sgd * (1 + 1e-12)
    assert 1 - e_loss / e_sgd < 1 - loss / sgd_loss   # and little in the easy phase


def test_joint_optimum_reaches_a_brute_force_grid():
    """T = 3 (beta_0 acts on v_0 = 0): a 5-D grid over (eta_0..2, beta_1, beta_2) bounds the optimum
    from above; L-BFGS-B from the SGD optimum must get at least as low."""
    model = PowerLawModel(N=8, a=3.5, b=5.0, batch=5, sigma=0.5)
    eta_grid, beta_grid = np.linspace(0, 1, 11), np.linspace(0, 0.99, 10)
    pts = np.array(list(itertools.product(eta_grid, eta_grid, eta_grid, beta_grid, beta_grid)))
    etas, betas = pts[:, :3], np.c_[np.zeros(len(pts)), pts[:, 3:]]
    grid_best = min(momentum_loss(model, e, b)[:, -1].min()          # chunks keep the moments ~20 MB
                    for e, b in zip(np.array_split(etas, 8), np.array_split(betas, 8)))
    loss = optimal_momentum_schedule(model, 3)[2]
    assert loss <= grid_best * (1 + 1e-9)
    assert loss < optimal_schedule(model, 3)[1]      # and strictly beats SGD even at T = 3


def test_warm_start_is_interpolated_in_t_over_T():
    """A warm start at the same horizon maps onto itself (one iteration cannot lose it), and so does one
    sampled twice as finely (each step repeated: the same function of t/T up to the interpolation)."""
    T = 40
    etas, betas, loss = optimal_momentum_schedule(HARD, T, max_iter=60)
    assert optimal_momentum_schedule(HARD, T, warm=(etas, betas), max_iter=1)[2] <= loss * (1 + 1e-12)
    fine = optimal_momentum_schedule(HARD, T, warm=(np.repeat(etas, 2), np.repeat(betas, 2)), max_iter=1)[2]
    assert fine <= loss * (1 + 1e-12)
    with pytest.raises(ValueError, match="warm"):
        optimal_momentum_schedule(HARD, T, warm=(np.full((2, 5), 0.1), np.zeros((2, 5))), max_iter=1)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="one momentum per step"):
        momentum_loss(EASY, np.ones(5) * 0.1, np.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        momentum_loss(EASY, np.ones(5) * 0.1, np.ones(5))
    with pytest.raises(ValueError, match="beta_max"):
        optimal_momentum_schedule(EASY, 5, beta_max=1.0)
    with pytest.raises(ValueError, match="start must be"):
        optimal_momentum_schedule(EASY, 5, start=np.full(4, 0.1))
    with pytest.raises(ValueError, match="seeds"):
        simulate_momentum(EASY, np.ones(3) * 0.1, np.zeros(3), seeds=1)
