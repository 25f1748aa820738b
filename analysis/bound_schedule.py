"""The convex bound's optimal schedule: minimize Omega_T over the whole schedule eta_1..eta_T >= 0.

Schaipp et al. (ICML 2025) find the bound-optimal schedule by gradient descent on the schedule; here
the bound is analysis.bound.bound (THEORY.md section 1, D and G given), its gradient is analytic (O(T),
below), and the minimizer is scipy's L-BFGS on theta = log eta, so every step stays > 0 (the bound is
+inf once the last steps are 0), started from the tuned linear decay.

    from analysis.bound_schedule import optimal_bound_schedule
    best = optimal_bound_schedule(400)             # refined bound, D = G = 1
    best.lr, best.omega, best.shape                # eta_1..eta_T, Omega_T, eta / max eta
    optimal_bound_schedule(400, kind="standard")   # the constant D / (G sqrt T), Omega_T = D G / sqrt T

What it finds (measured, D = G = 1, tests/test_bound_schedule.py):
- standard bound (D^2 + sum eta^2 G^2) / (2 sum eta): the constant D / (G sqrt T), its closed form.
- refined bound: linear decay from the peak at t = 1, except the very last step, which jumps back up
  (about 9/T above the line, normalized). Over steps 1..T-1 the normalized optimum stays within
  2.1/T of linear decay 1 - (t-1)/T (0.042, 0.021, 0.0105, 0.0052 at T = 50, 100, 200, 400). Its
  bound is below the tuned linear decay's by 3.3%, 1.7%, 0.87%, 0.44% at those T: linear decay is
  near-optimal and the gap closes as ~1/T. L-BFGS reaches the same Omega_T (to 1e-9) from the
  linear, constant, warmup and random starts (16-17 iterations from linear decay, 19-76 from the
  others); under a second up to T = 4000 on this 2-core machine (there: 17 iterations, 0.045% gain).

Tests: python -m pytest -q tests/test_bound_schedule.py -p no:cacheprovider
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize

from analysis.advise import shape_of
from analysis.bound import bound, optimal_lr


class BoundOptimum(NamedTuple):
    """The bound-optimal step sizes eta_1..eta_T (absolute, D and G included) and their bound."""
    lr: np.ndarray
    omega: float
    iterations: int

    @property
    def shape(self) -> np.ndarray:
        """The schedule normalized to peak 1 (the multipliers a schedule=from_array file holds)."""
        return self.lr / self.lr.max()


def _g2(G, T: int) -> np.ndarray:
    G = np.asarray(G, dtype=np.float64)
    return np.full(T, float(G) ** 2) if G.ndim == 0 else G ** 2


def bound_gradient(lr, G=1.0, D=1.0, kind: str = "refined") -> np.ndarray:
    """d Omega_T / d eta_j for every j (steps > 0; same arguments as analysis.bound.bound).

    With S_k = sum_{t>=k} eta_t, E_k = sum_{t>=k} e_t, e_t = eta_t^2 G_t^2 (0-based k) and
    q_k = eta_k / (S_{k+1} S_k), r_k = q_k E_k for k = 0..T-2:
        Omega = (D^2 + E_0) / (2 S_0) + 1/2 sum_k r_k,
    and eta_j enters S_k, E_k for k <= j, S_{k+1} for k <= j - 1, and eta_k for k = j, so
        dOmega/deta_j = e'_j / (2 S_0) - (D^2 + E_0) / (2 S_0^2)
                        + 1/2 [ e'_j sum_{k<=j} q_k - sum_{k<=j} r_k / S_k - sum_{k<j} r_k / S_{k+1}
                                + E_j / (S_{j+1} S_j) (j <= T-2) ],     e'_j = 2 eta_j G_j^2:
    prefix sums, O(T). Checked against finite differences of analysis.bound.bound in the tests.
    """
    bound(lr, G, D, kind)                               # validates lr, G and kind with bound's messages
    lr = np.asarray(lr, dtype=np.float64)
    if np.any(lr <= 0):
        raise ValueError("bound_gradient needs every step > 0 (the bound is +inf or not differentiable "
                         "where the schedule ends in zeros)")
    g2 = _g2(G, lr.size)
    de = 2.0 * lr * g2
    S = np.cumsum(lr[::-1])[::-1]
    E = np.cumsum((lr ** 2 * g2)[::-1])[::-1]
    grad = de / (2.0 * S[0]) - (D ** 2 + E[0]) / (2.0 * S[0] ** 2)
    if kind == "standard":
        return grad
    q = lr[:-1] / (S[1:] * S[:-1])
    r = q * E[:-1]
    up_to = lambda x: np.append(np.cumsum(x), x.sum())        # sum_{k <= min(j, T-2)}, j = 0..T-1
    before = np.concatenate([[0.0], np.cumsum(r / S[1:])])     # sum_{k <= j-1}
    own = np.append(E[:-1] / (S[1:] * S[:-1]), 0.0)
    return grad + 0.5 * (de * up_to(q) - up_to(r / S[:-1]) - before + own)


def linear_reference(T: int, G=1.0, D=1.0, kind: str = "refined") -> tuple[np.ndarray, float]:
    """The tuned linear decay (schedules.Linear, 1 - t/T over steps t = 0..T-1, at optimal_lr's
    peak): its step sizes and bound, the baseline the optimum must not be worse than."""
    _check_T(T)
    shape = shape_of({"_target_": "schedules.Linear", "total_steps": T})
    gamma, omega = optimal_lr(shape, G=G, D=D, kind=kind)
    return gamma * shape, omega


def optimal_bound_schedule(T: int, G=1.0, D=1.0, kind: str = "refined", start=None, gtol: float = 1e-13,
                           max_iter: int = 20_000) -> BoundOptimum:
    """The step sizes eta_1..eta_T > 0 minimizing Omega_T (analysis.bound.bound with G, D, kind).

    L-BFGS on theta = log eta with the analytic gradient (chain rule: dOmega/dtheta = eta dOmega/deta),
    from `start` (step sizes > 0; default: the tuned linear decay). Converged when the projected
    gradient falls below gtol or the bound stops falling at float64 precision; a run that stops for
    max_iter raises (raise max_iter, or loosen gtol)."""
    _check_T(T)
    if isinstance(D, bool) or not np.isscalar(D) or not 0.0 < D < math.inf:
        raise ValueError(f"D={D!r} must be a finite distance > 0 (||x_1 - x*||; the figures use D = 1)")
    if start is None:
        start = linear_reference(T, G, D, kind)[0]
    start = np.asarray(start, dtype=np.float64)
    if start.shape != (T,) or not np.all(np.isfinite(start)) or np.any(start <= 0):
        raise ValueError(f"start must be {T} finite step sizes > 0 (the optimization is over log eta), "
                         f"got shape {start.shape}")
    bound(start, G, D, kind)                             # validates G and kind before the loop

    def objective(theta):
        lr = np.exp(theta)
        return bound(lr, G, D, kind), lr * bound_gradient(lr, G, D, kind)

    result = minimize(objective, np.log(start), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "maxfun": 2 * max_iter, "ftol": 1e-15, "gtol": gtol,
                               "maxcor": 30})
    if result.status == 1:                               # iteration or evaluation limit
        raise ValueError(f"the bound's minimization did not converge in {result.nit} iterations at T = {T} "
                         f"({result.message}); raise max_iter or loosen gtol")
    lr = np.exp(result.x)
    return BoundOptimum(lr, bound(lr, G, D, kind), int(result.nit))


def linear_gap(shape) -> dict:
    """How far a normalized schedule (peak 1, T steps) is from linear decay 1 - (t-1)/T, t = 1..T:
    the largest and root-mean-square differences over steps 1..T-1 and the last step's difference
    (the bound's optimum lifts only its last step off the line)."""
    shape = np.asarray(shape, dtype=np.float64)
    if shape.ndim != 1 or shape.size < 2:
        raise ValueError(f"shape must be a 1-D schedule of >= 2 steps, got shape {shape.shape}")
    diff = shape - (1.0 - np.arange(shape.size) / shape.size)
    return {"max_abs": float(np.abs(diff[:-1]).max()), "rms": float(np.sqrt(np.mean(diff[:-1] ** 2))),
            "last": float(diff[-1])}


def _check_T(T):
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T={T!r} must be an integer horizon >= 1 (the number of steps)")
