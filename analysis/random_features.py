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

Speed of the control method (relaxed sweeps, omega = 1.5, backtracking; stops on L(T)): one sweep is a
backward pass (2 dot products + 3 in-place ops per step) and a forward pass with all steps' factors A
built at once. N = 1000, T = 10^4, a = 3.5, m = 5, eta_max = 1, defaults, CPU seconds of one process
(2 cores shared by 5-9 processes; wall clock in brackets), before (529faea: damping 0.5, stop on the
schedule only) -> after, the same L(T) to 1e-13:
    hard b = 5, sigma = 0:   264.9 (646) -> 13.8 (21)    hard b = 5, sigma = 0.5: 317.3 (665) -> 18.7 (28)
    easy b = 2, sigma = 0:    96.1 (109) -> 12.1 (18)    easy b = 2, sigma = 0.5:  60.3 (88) -> 8.3 (13)
ftol = 1e-8 instead of 1e-12: hard sigma = 0.5 in 12.9 s, L(T) within 1e-9. optimal_schedules over
T = 100..10^4 (9 log-spaced, sigma = 0.5): hard 35.1 s (94 s wall), easy 18.2 s (25 s). Warm starts
save few sweeps (hard 45 instead of 55 at T = 3162, easy 24 instead of 25): convergence is linear and
fast, so a start 1% off L(T) still needs most sweeps of one 100% off; Anderson mixing of the last 5
sweeps, tried, saved 20% (42 vs 55 hard, 20 vs 25 easy at T = 3162) and was left out. Cold and warm
optima agree (tests). excess_loss keeps only the current per-mode state: best_power_law(N = 1000,
T = 1000) takes 1.5 s, was 8.2 s and an (S, T + 1, N) array.
To measure one case (nice -n 10 on a shared box):
    python -c "import time; from analysis.random_features import *; m = PowerLawModel(N=1000, a=3.5, b=5.0,
    sigma=0.5); t = time.process_time(); print(optimal_schedule(m, 10**4)[1], time.process_time() - t)"
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


def _coefficients(model: PowerLawModel):
    """lambda, lambda^2 and C of shape (N, 3): A_k(eta) = C_k . (1, eta, eta^2)
    = 1 - 2 eta lambda_k + (1 + 1/m) eta^2 lambda_k^2."""
    lam = model.lambdas
    lam2 = lam * lam
    return lam, lam2, np.stack([np.ones_like(lam), -2 * lam, (1 + 1 / model.batch) * lam2], axis=1)


def _losses(model: PowerLawModel, etas: np.ndarray, noise: bool = True, feedback: bool = True) -> np.ndarray:
    """L(t) for (S, T) schedules, shape (S, T + 1); keeps only the current per-mode state (S, N).

    noise and feedback off: the bias (multiplicative part only); both on: the full excess loss.
    """
    lam, lam2, C = _coefficients(model)
    S, T = etas.shape
    ell = np.broadcast_to(model.ell0, (S, model.N)).copy()
    L = np.empty((S, T + 1))
    A = np.empty_like(ell)
    s2 = model.sigma**2 if noise else 0.0
    for t in range(T):
        L[:, t] = ell.sum(axis=1)
        e = etas[:, t : t + 1]
        np.multiply(e, C[:, 2], out=A)  # A = 1 + e (e c lam^2 - 2 lam), in place
        A += C[:, 1]
        A *= e
        A += 1.0
        ell *= A
        drive = (L[:, t : t + 1] if feedback else 0.0) + s2
        ell += (e * e / model.batch * drive) * lam2
    L[:, T] = ell.sum(axis=1)
    return L


def _trajectory(model: PowerLawModel, etas: np.ndarray, coef):
    """Per-mode ell(t) of shape (T + 1, N) and L(t) for one schedule (the control's forward pass)."""
    lam, lam2, C = coef
    T, m, s2 = etas.size, model.batch, model.sigma**2
    A = np.stack([np.ones(T), etas, etas * etas], axis=1) @ C.T  # (T, N): all steps' factors at once
    g = etas * etas / m
    ell = np.empty((T + 1, model.N))
    ell[0] = model.ell0
    L = np.empty(T + 1)
    for t in range(T):
        Lt = L[t] = ell[t].sum()
        nxt = ell[t + 1]
        np.multiply(A[t], ell[t], out=nxt)
        nxt += (g[t] * (Lt + s2)) * lam2
    L[T] = ell[T].sum()
    return ell, L


def excess_loss(model: PowerLawModel, etas) -> np.ndarray:
    """Excess loss L(t), t = 0..T: shape (T + 1,) for etas (T,), (S, T + 1) for etas (S, T)."""
    etas = _as_etas(etas)
    L = _losses(model, np.atleast_2d(etas))
    return L[0] if etas.ndim == 1 else L


def bias_variance(model: PowerLawModel, etas):
    """(bias, variance) of L(t): bias = sigma 0 and no L-feedback term; variance = the rest."""
    etas = _as_etas(etas)
    e2 = np.atleast_2d(etas)
    total = _losses(model, e2)
    bias = _losses(model, e2, noise=False, feedback=False)
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


def _resample(init, T: int, eta_max: float, align: str = "fraction") -> np.ndarray:
    """A starting schedule of any length mapped to T steps: by linear interpolation in t/T (step
    centres), or end-aligned ("end": step T - j takes init's step n - j, the front padded with init[0])."""
    init = np.asarray(init, dtype=float)
    if init.ndim != 1 or init.size < 1:
        raise ValueError(f"init has shape {init.shape}: pass one starting schedule of shape (n,), n >= 1")
    if not np.all(np.isfinite(init)) or np.any(init < 0) or np.any(init > eta_max):
        raise ValueError(f"init must be finite and lie in [0, eta_max={eta_max}]; clip it first")
    n = init.size
    if align == "end":
        return init[n - T:].copy() if n >= T else np.concatenate([np.full(T - n, init[0]), init])
    return np.interp((np.arange(T) + 0.5) / T, (np.arange(n) + 0.5) / n, init)


def _sweep(model, coef, etas, ell, L, omega):
    """One backward Gauss-Seidel sweep: eta_t <- clip(eta_t + omega (eta*_t - eta_t)), eta*_t the per-step
    minimizer of THEORY section 6 given the costate p(t + 1) of the already-updated later steps."""
    lam, lam2, C = coef
    T, m, s2, emax = etas.size, model.batch, model.sigma**2, model.eta_max
    Z = np.empty((T, 2, model.N))  # rows lambda ell(t) and lambda^2 ell(t): num and den are two dot products
    np.multiply(ell[:-1], lam, out=Z[:, 0])
    np.multiply(ell[:-1], lam2, out=Z[:, 1])
    c, drive = 1 + 1 / m, (L[:-1] + s2) / m
    p, buf, new = np.ones(model.N), np.empty(model.N), np.empty(T)
    for t in range(T - 1, -1, -1):
        num, a = Z[t] @ p
        q = lam2 @ p
        den = c * a + drive[t] * q
        star = min(max(num / den, 0.0), emax) if den > 0 else etas[t]
        e = new[t] = min(max(etas[t] + omega * (star - etas[t]), 0.0), emax)
        np.dot(C, (1.0, e, e * e), out=buf)  # buf = A(e), then the costate p(t) = A(e) p(t + 1) + e^2/m q
        buf *= p
        buf += e * e / m * q
        p, buf = buf, p
    return new


def _control(model, T, damping, tol, ftol, max_iter, init, patience=5):
    """Relaxed sweeps with backtracking: a sweep that raises L(T) is undone and omega halved (it then grows
    back to `damping`); a small enough omega always descends (the sweep then follows -dL/deta scaled by
    1/den > 0), so the iterates only stop at the fixed point eta = clip(eta*), a KKT point of L(T).
    Stops when the schedule moves less than tol * eta_max, or L(T) fell by less than ftol (relative)
    over the last `patience` accepted sweeps."""
    coef = _coefficients(model)
    etas = np.full(T, best_constant(model, T)[0]) if init is None else init
    ell, L = _trajectory(model, etas, coef)
    hist, omega = [L[-1]], damping
    for _ in range(max_iter):
        new = _sweep(model, coef, etas, ell, L, omega)
        ell2, L2 = _trajectory(model, new, coef)
        if L2[-1] > L[-1]:
            omega /= 2
            # a rise at the rounding floor, or no step size descends: stationary to working precision
            if L2[-1] - L[-1] <= 64 * np.finfo(float).eps * L[-1] or omega < tol:
                break
            continue
        change = np.max(np.abs(new - etas)) / model.eta_max
        etas, ell, L = new, ell2, L2
        hist.append(L[-1])
        omega = min(damping, 2 * omega)
        if change < tol or (len(hist) > patience and hist[-1 - patience] - hist[-1] <= ftol * hist[-1]):
            break
    return etas


def _autograd(model, T, tol, max_iter, init):
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

    x0 = np.full(T, best_constant(model, T)[0]) if init is None else init
    r = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, model.eta_max)] * T,
                 options={"maxiter": max_iter, "ftol": tol * 1e-6, "gtol": 1e-14, "maxcor": 50})
    return r.x


def optimal_schedule(model: PowerLawModel, T: int, method: str = "control", damping: float = 1.5,
                     tol: float = 1e-9, max_iter: int = 2000, init=None, ftol: float = 1e-12):
    """Schedule minimizing L(T) over eta_t in [0, eta_max]; returns (etas of shape (T,), L(T)).

    method "control": relaxed Gauss-Seidel sweeps of the Pontryagin fixed point, damping = the relaxation
    factor omega in (0, 2) (1: plain sweeps; 1.5 measured fastest, see the module docstring); tol bounds
    the last change of the schedule, ftol the relative fall of L(T) over 5 sweeps (either one stops).
    method "autograd": torch gradient + L-BFGS-B. init: a starting schedule of any length, resampled to
    T by interpolation in t/T (default: the best constant LR).
    """
    _check_T(T)
    if not 0 < damping < 2:
        raise ValueError(f"damping={damping!r}: the relaxation factor must lie in (0, 2)")
    if not (tol > 0 and ftol >= 0):
        raise ValueError(f"tol={tol!r}, ftol={ftol!r}: need tol > 0 and ftol >= 0")
    if method not in ("control", "autograd"):
        raise ValueError(f"method={method!r}: use 'control' or 'autograd'")
    start = None if init is None else _resample(init, T, model.eta_max)
    if method == "control":
        etas = _control(model, T, damping, tol, ftol, max_iter, start)
    else:
        etas = _autograd(model, T, tol, max_iter, start)
    return etas, float(excess_loss(model, etas)[-1])


def optimal_schedules(model: PowerLawModel, Ts, **kw):
    """optimal_schedule for each horizon in Ts (returned in the given order), solved in increasing T,
    each warm-started from the previous optimum: of its t/T-interpolated and its end-aligned copy (the
    hard phase anneals over a window that is a shrinking fraction of T) the one with the lower L(T)."""
    Ts = list(Ts)
    for T in Ts:
        _check_T(T)
    prev, out = kw.pop("init", None), [None] * len(Ts)
    for i in np.argsort(Ts, kind="stable"):
        T, start = Ts[i], None
        if prev is not None:
            starts = np.stack([_resample(prev, T, model.eta_max, align) for align in ("fraction", "end")])
            start = starts[np.argmin(excess_loss(model, starts)[:, -1])]
        out[i] = optimal_schedule(model, T, init=start, **kw)
        prev = out[i][0]
    return out
