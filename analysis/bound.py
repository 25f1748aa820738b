"""The last-iterate bound for convex non-smooth SGD (docs/theory.md section 1), the one place it lives.

A schedule is an array of step sizes eta_1..eta_T (peak LR included). With e_t = eta_t^2 G_t^2 and
S(a, b) = sum_{t=a..b} eta_t, the bound on f(x_T) - f* at horizon T (Defazio et al., Thm. 10) is

    Omega_T = D^2 / (2 S(1,T))                                              term 1: the 1/gamma part
            + sum_t e_t / (2 S(1,T))                                        term 2 } the gamma part
            + 1/2 sum_{k<T} [eta_k / S(k+1,T)] [sum_{t>=k} e_t / S(k,T)]    term 3 }

Usage:
    from analysis.bound import bound, bound_curve, optimal_lr, step_sizes
    shape = schedule.multipliers()            # peak 1, steps 0..T-1
    gamma, omega = optimal_lr(shape)          # theory-optimal peak LR and its bound (D = G = 1)
    bound(gamma * shape)                      # == omega
    bound(gamma * shape, split=True)          # BoundTerms(term1, term2, term3); .total == omega
    bound_curve(gamma * shape)                # Omega_1..Omega_T: the schedule truncated at each horizon
    # a cosine to an absolute 1e-7 (shape built with final_fraction=0): the steps are affine in gamma
    optimal_lr(shape, final_lr=1e-7)          # 1-D minimisation over log gamma instead of the closed form

Conventions: float64 throughout; a zero step contributes nothing (0 * inf := 0), so a warmup that
starts at exactly 0 is fine, but the bound at a horizon whose own step is 0 is +inf (the theorem needs
the last weight eta_T > 0; the paper's simulations therefore evaluate a T+1-step schedule at T).
The time index of the bound is the schedule's: bound_curve(lr)[n-1] uses eta_1..eta_n.
"""
import math
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar

from analysis._multipole import Prefix, cauchy_sums

KINDS = ("refined", "standard")


class BoundTerms(NamedTuple):
    """The bound's three terms (floats, or arrays over horizons). term1 = D^2/(2S) scales as 1/gamma,
    term2 + term3 as gamma (Schaipp et al. Fig. 20); term3 = 0 for the standard bound."""
    term1: float
    term2: float
    term3: float

    @property
    def total(self):
        return self.term1 + self.term2 + self.term3


def _as_lr(lr, name="lr"):
    lr = np.asarray(lr, dtype=np.float64)
    if lr.ndim != 1 or lr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of step sizes, got shape {lr.shape}")
    if not np.all(np.isfinite(lr)) or np.any(lr < 0):
        raise ValueError(f"{name} must be finite and >= 0 everywhere; clip the schedule at 0 first")
    return lr


def _as_g2(G, T):
    """Squared gradient-norm bounds G_t^2 as an array of length T (G scalar or array of length T)."""
    G = np.asarray(G, dtype=np.float64)
    if G.ndim == 0:
        return np.full(T, float(G) ** 2)
    if G.shape != (T,):
        raise ValueError(f"G must be a scalar or an array of length {T} (one per step), got shape {G.shape}")
    if not np.all(np.isfinite(G)):
        raise ValueError("G must be finite")
    return G ** 2


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")


def _suffix_sum(x):
    """sum_{t>=k} x_t for every k, summed from the tail: no cancellation, >= 0 for x >= 0."""
    return np.cumsum(x[::-1])[::-1]


def bound(lr, G=1.0, D=1.0, kind="refined", split=False):
    """Omega_T at horizon T = len(lr), in the direct three-term form with suffix sums (O(T)).
    A float, or with split=True the BoundTerms of floats."""
    _check_kind(kind)
    lr = _as_lr(lr)
    e = lr ** 2 * _as_g2(G, lr.size)
    S = _suffix_sum(lr)             # S[k] = S(k, T), 0-based k
    E = _suffix_sum(e)
    if S[0] == 0.0:
        terms = BoundTerms(np.inf, np.inf, 0.0 if kind == "standard" else np.inf)
    elif kind == "standard":
        terms = BoundTerms(D ** 2 / (2.0 * S[0]), E[0] / (2.0 * S[0]), 0.0)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            w = lr[:-1] / S[1:]     # eta_k / S(k+1, T): inf where the rest of the schedule is 0
            m = E[:-1] / S[:-1]     # mean of e over k..T per unit step
            term3 = np.where(lr[:-1] > 0, w * m, 0.0)
        terms = BoundTerms(D ** 2 / (2.0 * S[0]), E[0] / (2.0 * S[0]), 0.5 * term3.sum())
    terms = BoundTerms(*(float(t) for t in terms))
    return terms if split else terms.total


def step_sizes(shape, gamma, final_lr=None, warmup_start_lr=None, warmup_steps=0):
    """eta_t = gamma * shape_t + offset_t: the steps of a schedule whose final (and/or warmup-start) LR
    is absolute, i.e. does not scale with the peak gamma (the paper's cosine ends at 1e-7 whatever
    the peak).

    shape: the peak-1 multipliers built with final_fraction=0 and warmup_start=0. Every schedule of
    the form f + (1 - f) g_t (WSD, cosine, linear, ... and the linear warmup ws + (1 - ws) t/W) then
    has eta_t = gamma g_t + f gamma (1 - g_t), so offset_t = final_lr (1 - shape_t) after the warmup
    and warmup_start_lr (1 - shape_t) on the first warmup_steps steps: exact, not an approximation.
    Give warmup_steps whenever the schedule has a warmup, even with final_lr alone: its warmup steps
    rise from warmup_start_lr (None: 0), not from final_lr. Not of that form, so not exact: the
    cooldowns of TwoStageWSD and InverseSqrt (they start from rho or the 1/sqrt level, not the peak).
    """
    shape = _as_lr(shape, "shape")
    if shape.max() > 1.0 + 1e-12:
        raise ValueError(f"shape must be the peak-1 multipliers (all <= 1), got a maximum {shape.max():.6g}; "
                         "pass schedule.multipliers() and the peak LR as gamma")
    if isinstance(gamma, bool) or not np.isscalar(gamma) or not 0.0 < gamma < math.inf:
        raise ValueError(f"gamma={gamma!r} must be a finite peak LR > 0")
    offsets = []
    for name, value in (("final_lr", final_lr), ("warmup_start_lr", warmup_start_lr)):
        value = 0.0 if value is None else value
        if isinstance(value, bool) or not np.isscalar(value) or not 0.0 <= value < math.inf:
            raise ValueError(f"{name}={value!r} must be an absolute LR >= 0 (or None for none)")
        offsets.append(float(value))
    final, start = offsets
    W = warmup_steps
    if isinstance(W, bool) or not isinstance(W, (int, np.integer)) or not 0 <= W <= shape.size:
        raise ValueError(f"warmup_steps={W!r} must be an integer in [0, {shape.size}] (len(shape))")
    if start > 0 and W == 0:
        raise ValueError(f"warmup_start_lr={warmup_start_lr!r} needs the warmup length: give warmup_steps "
                         "(the schedule's warmup_steps), or drop warmup_start_lr")
    offset = np.where(np.arange(shape.size) < W, start, final) * np.maximum(1.0 - shape, 0.0)
    return gamma * shape + offset


def optimal_lr(shape, G=1.0, D=1.0, kind="refined", final_lr=None, warmup_start_lr=None, warmup_steps=0):
    """(gamma*, Omega*): the peak LR minimizing the bound of the schedule, and that bound.

    Without absolute LRs the steps are gamma * shape: term 1 scales as 1/gamma and terms 2 + 3 as
    gamma, so Omega(gamma) = t1/gamma + gamma t23, gamma* = sqrt(t1/t23) and Omega* = 2 sqrt(t1 t23)
    (closed form; with a peak-1 shape gamma* is the peak LR). With final_lr or warmup_start_lr > 0
    the steps are affine in gamma (see step_sizes) and gamma* is found by a 1-D minimisation over
    log gamma: a grid of quarter decades below the standard bound's closed-form gamma, then Brent's method.
    """
    _check_kind(kind)
    shape = _as_lr(shape, "shape")
    if shape.sum() == 0.0:
        raise ValueError("shape is 0 everywhere: give the schedule's peak-1 multipliers")
    if not final_lr and not warmup_start_lr:
        terms = bound(shape, G, D, kind, split=True)
        t1, t23 = terms.term1, terms.term2 + terms.term3
        return math.sqrt(t1 / t23), 2.0 * math.sqrt(t1 * t23)

    def omega(log_gamma):
        return bound(step_sizes(shape, math.exp(log_gamma), final_lr, warmup_start_lr, warmup_steps), G, D, kind)

    # The grid's anchor: the standard bound's gamma* = D / sqrt(sum shape^2 G^2), finite even for a
    # shape that ends at 0; the refined bound's gamma* is below it (its gamma part is larger).
    anchor = D / math.sqrt(float(np.sum(shape ** 2 * _as_g2(G, shape.size))))
    grid = math.log(anchor) + np.linspace(-8.0, 1.0, 37) * math.log(10.0)
    values = np.array([omega(x) for x in grid])
    k = int(np.argmin(values))
    if k in (0, grid.size - 1):
        raise ValueError(f"the bound keeps falling toward peak LR {math.exp(grid[k]):.3g}, the end of the search "
                         f"[{math.exp(grid[0]):.3g}, {math.exp(grid[-1]):.3g}]: the absolute LRs (final_lr={final_lr}, "
                         f"warmup_start_lr={warmup_start_lr}) are not small next to the peak; lower them")
    result = minimize_scalar(omega, bounds=(grid[k - 1], grid[k + 1]), method="bounded", options={"xatol": 1e-10})
    return float(math.exp(result.x)), float(result.fun)


# ---------------------------------------------------------------------------------------------------
# The bound at every horizon n (the schedule truncated at n), P_n = S(1, n) the prefix sums.
#
# eta_k / (S(k+1,n) S(k,n)) = 1/S(k+1,n) - 1/S(k,n) telescopes term 3. Swapping the sums:
#     term 3 = 1/(2 P_n) [ sum_{t<n} e_t P_t / (P_n - P_t) + e_n P_{n-1} / eta_n ],
# a sum of terms >= 0; adding term 2 = sum_{t<=n} e_t / (2 P_n), the E/P parts cancel and
#     Omega_n = D^2 / (2 P_n) + 1/2 [ C_n + e_n / eta_n ],   C_n = sum_{t<n} e_t / (P_n - P_t).
# The total uses the second form; split=True the first, so that term 3 is not a difference
# (total - term1 - term2 loses the digits of term 3 where term 3 is tiny next to term 1 or 2, e.g.
# where the last step dwarfs the earlier ones: tests/test_analysis_bound.py has two such schedules).
# Both sums over t < n are causal Cauchy-kernel sums (weights e_t or e_t P_t at positions P_t),
# evaluated for all n at once in analysis/_multipole.py, with P in double-double so that P_n - P_t
# does not cancel where the schedule decays to ~0.
# ---------------------------------------------------------------------------------------------------
def bound_curve(lr, G=1.0, D=1.0, kind="refined", horizons=None, split=False):
    """Omega_n of the schedule truncated at every horizon n = 1..T (or at `horizons` only, 1-based).

    Equal to [bound(lr[:n], G[:n], D) for n in horizons] up to rounding, but vectorized. An array,
    or with split=True the BoundTerms of arrays (one value per horizon).
    """
    _check_kind(kind)
    lr = _as_lr(lr)
    T = lr.size
    g2 = _as_g2(G, T)
    if horizons is None:
        n = np.arange(1, T + 1)
    else:
        n = np.asarray(horizons)
        if n.ndim != 1 or not np.issubdtype(n.dtype, np.integer) or np.any((n < 1) | (n > T)):
            raise ValueError(f"horizons must be a 1-D array of integers in [1, {T}] (len(lr))")
    i = n.astype(np.int64) - 1
    e = lr ** 2 * g2
    if kind == "standard":
        P = np.cumsum(lr)[i]
        E = np.cumsum(e)[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            if not split:
                return np.where(P > 0, (D ** 2 + E) / (2.0 * P), np.inf)
            terms = (D ** 2 / (2.0 * P), E / (2.0 * P))
        return BoundTerms(*(np.where(P > 0, t, np.inf) for t in terms), np.zeros(i.size))
    prefix = Prefix(lr)
    P = prefix.at(i)
    with np.errstate(divide="ignore", invalid="ignore"):
        if not split:
            omega = D ** 2 / (2.0 * P) + 0.5 * (cauchy_sums(prefix, e, i) + lr[i] * g2[i])  # e_n/eta_n = eta_n G_n^2
            return np.where(P > 0, omega, np.inf)
        P_before = np.where(i > 0, prefix.at(np.maximum(i - 1, 0)), 0.0)           # P_{n-1}
        tail = cauchy_sums(prefix, e * prefix.at(np.arange(T)), i) + lr[i] * g2[i] * P_before
        terms = (D ** 2 / (2.0 * P), np.cumsum(e)[i] / (2.0 * P), tail / (2.0 * P))
    return BoundTerms(*(np.where(P > 0, t, np.inf) for t in terms))
