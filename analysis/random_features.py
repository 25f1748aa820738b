"""Bordelon & Mori power-law random-feature model: exact mean SGD dynamics and optimal LR schedules.

Implements THEORY.md section 6 (issue 13 items 1-2): the per-mode mean-loss recursion
    ell_k(t+1) = A_k(eta_t) ell_k(t) + (eta_t^2/m) lambda_k^2 (L(t) + sigma^2),
    A_k(eta) = (1 - eta lambda_k)^2 + eta^2 lambda_k^2 / m,
its bias/variance split, a direct one-pass SGD simulation it is checked against, the optimal
schedule eta*_T (discrete Pontryagin fixed point, or torch autograd + L-BFGS) and the best
constant / power-law baselines.

Usage (library):
    from analysis.random_features import PowerLawModel, excess_loss, optimal_schedule
    m = PowerLawModel(N=1000, a=3.5, b=5.0)
    etas, loss_T = optimal_schedule(m, T=1000)
Tests: python -m pytest -q tests/test_random_features.py -p no:cacheprovider

Timing of the control method (defaults: damping 0.5, tol 1e-9) for N = 1000, T = 10^4, a = 3.5,
b = 5, m = 5 on this 2-core machine (shared, nice 10): 247 s, L(T) = 2.531e-3. The sweeps are a
Python loop over t; warm starts from a smaller T would cut the number of sweeps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar


@dataclass(frozen=True)
class PowerLawModel:
    """Spectrum lambda_k = k^-b and initial excess loss per mode ell_k(0) = k^-a, k = 1..N."""

    N: int
    a: float
    b: float
    batch: int = 5
    sigma: float = 0.0
    eta_max: float = 1.0

    def __post_init__(self):
        if not isinstance(self.N, (int, np.integer)) or self.N < 1:
            raise ValueError(f"N={self.N!r}: the number of features must be an integer >= 1")
        if not self.a > 1:
            raise ValueError(f"a={self.a!r}: the loss exponent must be > 1 so that sum k^-a converges")
        if not self.b > 1:
            raise ValueError(f"b={self.b!r}: the spectrum exponent must be > 1 (trace-class features)")
        if not isinstance(self.batch, (int, np.integer)) or self.batch < 1:
            raise ValueError(f"batch={self.batch!r}: the batch size must be an integer >= 1")
        if not self.sigma >= 0:
            raise ValueError(f"sigma={self.sigma!r}: the label-noise std must be >= 0")
        if not self.eta_max > 0:
            raise ValueError(f"eta_max={self.eta_max!r}: the LR cap must be > 0")

    @property
    def lambdas(self) -> np.ndarray:
        return np.arange(1, self.N + 1, dtype=float) ** -self.b

    @property
    def ell0(self) -> np.ndarray:
        return np.arange(1, self.N + 1, dtype=float) ** -self.a


def _as_etas(etas) -> np.ndarray:
    etas = np.asarray(etas, dtype=float)
    if etas.ndim not in (1, 2) or etas.shape[-1] < 1:
        raise ValueError(f"etas has shape {etas.shape}: pass a schedule of shape (T,) or (S, T), T >= 1")
    if not np.all(np.isfinite(etas)) or np.any(etas < 0):
        raise ValueError("etas must be finite and >= 0")
    return etas


def _rollout(model: PowerLawModel, etas: np.ndarray, noise: bool, feedback: bool):
    """Per-mode loss for (S, T) schedules; returns ell of shape (S, T + 1, N)."""
    lam, m = model.lambdas, model.batch
    S, T = etas.shape
    ell = np.empty((S, T + 1, model.N))
    ell[:, 0] = model.ell0 if (feedback or not noise) else 0.0
    if noise and not feedback:
        raise AssertionError("unused combination")
    for t in range(T):
        e = etas[:, t : t + 1]
        A = (1 - e * lam) ** 2 + e**2 * lam**2 / m
        cur = ell[:, t]
        drive = cur.sum(axis=1, keepdims=True) if feedback else 0.0
        drive = drive + (model.sigma**2 if noise else 0.0)
        ell[:, t + 1] = A * cur + e**2 / m * lam**2 * drive
    return ell


def excess_loss(model: PowerLawModel, etas) -> np.ndarray:
    """Excess loss L(t), t = 0..T: shape (T + 1,) for etas (T,), (S, T + 1) for etas (S, T)."""
    etas = _as_etas(etas)
    L = _rollout(model, np.atleast_2d(etas), noise=True, feedback=True).sum(axis=2)
    return L[0] if etas.ndim == 1 else L


def bias_variance(model: PowerLawModel, etas):
    """(bias, variance) of L(t): bias = sigma 0 and no L-feedback term; variance = the rest."""
    etas = _as_etas(etas)
    e2 = np.atleast_2d(etas)
    total = _rollout(model, e2, noise=True, feedback=True).sum(axis=2)
    lam, m = model.lambdas, model.batch
    bias = np.empty_like(total)
    ell = np.broadcast_to(model.ell0, (e2.shape[0], model.N)).copy()
    bias[:, 0] = ell.sum(axis=1)
    for t in range(e2.shape[1]):
        e = e2[:, t : t + 1]
        ell = ((1 - e * lam) ** 2 + e**2 * lam**2 / m) * ell
        bias[:, t + 1] = ell.sum(axis=1)
    var = total - bias
    return (bias[0], var[0]) if etas.ndim == 1 else (bias, var)


def simulate_sgd(model: PowerLawModel, etas, seeds: int, rng=None):
    """Direct one-pass SGD on Gaussian features psi ~ N(0, diag lambda); (mean, stderr) of L(t) over seeds."""
    etas = _as_etas(etas)
    if etas.ndim != 1:
        raise ValueError("simulate_sgd takes one schedule of shape (T,)")
    if seeds < 2:
        raise ValueError(f"seeds={seeds}: need >= 2 seeds for a standard error")
    rng = np.random.default_rng(rng)
    lam, m = model.lambdas, model.batch
    sq = np.sqrt(lam)
    # teacher with lambda_k (w*_k)^2 = k^-a, random signs; student starts at 0 (all seeds in parallel)
    wstar = np.sqrt(model.ell0 / lam) * rng.choice([-1.0, 1.0], size=(seeds, model.N))
    w = np.zeros_like(wstar)
    out = np.empty((seeds, etas.size + 1))
    out[:, 0] = (lam * (w - wstar) ** 2).sum(axis=1)
    for t, eta in enumerate(etas):
        psi = rng.standard_normal((seeds, m, model.N)) * sq
        y = np.einsum("smn,sn->sm", psi, wstar) + model.sigma * rng.standard_normal((seeds, m))
        resid = np.einsum("smn,sn->sm", psi, w) - y
        w = w - eta / m * np.einsum("smn,sm->sn", psi, resid)
        out[:, t + 1] = (lam * (w - wstar) ** 2).sum(axis=1)
    return out.mean(axis=0), out.std(axis=0, ddof=1) / np.sqrt(seeds)


def best_constant(model: PowerLawModel, T: int):
    """Best constant LR for horizon T by bounded 1-D search on log eta; returns (eta, L(T))."""
    _check_T(T)
    f = lambda le: excess_loss(model, np.full(T, np.exp(le)))[-1]
    r = minimize_scalar(f, bounds=(np.log(model.eta_max) - 12, np.log(model.eta_max)), method="bounded",
                        options={"xatol": 1e-6})
    return float(np.exp(r.x)), float(r.fun)


def power_law(c: float, chi: float, T: int) -> np.ndarray:
    return c * np.arange(1, T + 1, dtype=float) ** -chi


def best_power_law(model: PowerLawModel, T: int):
    """Best eta_t = c (t+1)^-chi, c in (0, eta_max], chi in [0, 1.5]; returns (c, chi, L(T))."""
    _check_T(T)
    grid_c = model.eta_max * np.logspace(-3, 0, 13)
    grid_chi = np.linspace(0, 1.5, 16)
    scheds = np.array([power_law(c, x, T) for c in grid_c for x in grid_chi])
    losses = excess_loss(model, scheds)[:, -1]
    i = int(np.argmin(losses))
    x0 = [np.log(grid_c[i // grid_chi.size] / model.eta_max), grid_chi[i % grid_chi.size]]
    f = lambda p: excess_loss(model, power_law(model.eta_max * np.exp(min(p[0], 0.0)), np.clip(p[1], 0, 1.5), T))[-1]
    r = minimize(f, x0, method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-14, "maxiter": 400})
    if r.fun > losses[i]:  # Nelder-Mead never returns worse than its start, but keep the grid point if so
        return float(grid_c[i // grid_chi.size]), float(grid_chi[i % grid_chi.size]), float(losses[i])
    return float(model.eta_max * np.exp(min(r.x[0], 0.0))), float(np.clip(r.x[1], 0, 1.5)), float(r.fun)


def _check_T(T):
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T={T!r}: the horizon must be an integer >= 1")


def _control(model, T, damping, tol, max_iter):
    lam, m, s2 = model.lambdas, model.batch, model.sigma**2
    etas = np.full(T, best_constant(model, T)[0])
    for _ in range(max_iter):
        ell = _rollout(model, etas[None], noise=True, feedback=True)[0]
        L = ell.sum(axis=1)
        p = np.ones(model.N)
        new = np.empty(T)
        for t in range(T - 1, -1, -1):
            num = (p * lam * ell[t]).sum()
            den = (p * lam**2 * ((1 + 1 / m) * ell[t] + (L[t] + s2) / m)).sum()
            e = np.clip(num / den, 0.0, model.eta_max)
            new[t] = (1 - damping) * etas[t] + damping * e
            e = new[t]
            p = ((1 - e * lam) ** 2 + e**2 * lam**2 / m) * p + e**2 / m * (p * lam**2).sum()
        change = np.max(np.abs(new - etas)) / model.eta_max
        etas = new
        if change < tol:
            break
    return etas


def _autograd(model, T, tol, max_iter):
    """Torch autograd gradient of L(T) through the recursion, L-BFGS-B with the box [0, eta_max]."""
    import torch

    lam = torch.tensor(model.lambdas, dtype=torch.float64)
    ell0 = torch.tensor(model.ell0, dtype=torch.float64)
    m, s2 = model.batch, model.sigma**2

    def f(x):
        etas = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ell = ell0
        for t in range(T):
            e = etas[t]
            ell = ((1 - e * lam) ** 2 + e**2 * lam**2 / m) * ell + e**2 / m * lam**2 * (ell.sum() + s2)
        loss = ell.sum()
        loss.backward()
        return loss.item(), etas.grad.numpy().copy()

    x0 = np.full(T, best_constant(model, T)[0])
    r = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, model.eta_max)] * T,
                 options={"maxiter": max_iter, "ftol": tol * 1e-6, "gtol": 1e-14, "maxcor": 50})
    return r.x


def optimal_schedule(model: PowerLawModel, T: int, method: str = "control", damping: float = 0.5,
                     tol: float = 1e-9, max_iter: int = 2000):
    """Schedule minimizing L(T) over eta_t in [0, eta_max]; returns (etas of shape (T,), L(T))."""
    _check_T(T)
    if not 0 < damping <= 1:
        raise ValueError(f"damping={damping!r}: must lie in (0, 1]")
    if method == "control":
        etas = _control(model, T, damping, tol, max_iter)
    elif method == "autograd":
        etas = _autograd(model, T, tol, max_iter)
    else:
        raise ValueError(f"method={method!r}: use 'control' or 'autograd'")
    return etas, float(excess_loss(model, etas)[-1])
