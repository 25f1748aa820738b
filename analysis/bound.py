"""The last-iterate bound for convex non-smooth SGD (THEORY.md section 1), the one place it lives.

A schedule is an array of step sizes eta_1..eta_T (peak LR included). With e_t = eta_t^2 G_t^2 and
S(a, b) = sum_{t=a..b} eta_t, the bound on f(x_T) - f* at horizon T (Defazio et al., Thm. 10) is

    Omega_T = D^2 / (2 S(1,T)) + sum_t e_t / (2 S(1,T))
            + 1/2 sum_{k<T} [eta_k / S(k+1,T)] [sum_{t>=k} e_t / S(k,T)]

Usage:
    from analysis.bound import bound, bound_curve, optimal_lr
    shape = schedule.multipliers()            # peak 1, steps 0..T-1
    gamma, omega = optimal_lr(shape)          # theory-optimal peak LR and its bound (D = G = 1)
    bound(gamma * shape)                      # == omega
    bound_curve(gamma * shape)                # Omega_1..Omega_T: the schedule truncated at each horizon

Conventions: float64 throughout; a zero step contributes nothing (0 * inf := 0), so a warmup that
starts at exactly 0 is fine, but the bound at a horizon whose own step is 0 is +inf (the theorem needs
the last weight eta_T > 0; the paper's simulations therefore evaluate a T+1-step schedule at T).
The time index of the bound is the schedule's: bound_curve(lr)[n-1] uses eta_1..eta_n.
"""
import math

import numpy as np

KINDS = ("refined", "standard")


def _as_lr(lr):
    lr = np.asarray(lr, dtype=np.float64)
    if lr.ndim != 1 or lr.size == 0:
        raise ValueError(f"lr must be a non-empty 1-D array of step sizes, got shape {lr.shape}")
    if not np.all(np.isfinite(lr)) or np.any(lr < 0):
        raise ValueError("lr must be finite and >= 0 everywhere; clip the schedule at 0 first")
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


def bound(lr, G=1.0, D=1.0, kind="refined"):
    """Omega_T at horizon T = len(lr), in the direct three-term form with suffix sums (O(T))."""
    _check_kind(kind)
    lr = _as_lr(lr)
    e = lr ** 2 * _as_g2(G, lr.size)
    S = _suffix_sum(lr)             # S[k] = S(k, T), 0-based k
    E = _suffix_sum(e)
    if S[0] == 0.0:
        return np.inf
    if kind == "standard":
        return (D ** 2 + E[0]) / (2.0 * S[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        w = lr[:-1] / S[1:]         # eta_k / S(k+1, T): inf where the rest of the schedule is 0
        m = E[:-1] / S[:-1]         # mean of e over k..T per unit step
        term3 = np.where(lr[:-1] > 0, w * m, 0.0)
    return D ** 2 / (2.0 * S[0]) + E[0] / (2.0 * S[0]) + 0.5 * term3.sum()


def optimal_lr(shape, G=1.0, D=1.0, kind="refined"):
    """(gamma*, Omega*) for the schedule gamma * shape, in closed form.

    Term 1 scales as 1/gamma and terms 2 + 3 as gamma, so Omega(gamma) = t1/gamma + gamma t23 with
    gamma* = sqrt(t1/t23) and Omega* = 2 sqrt(t1 t23). With a peak-1 shape gamma* is the peak LR.
    """
    shape = _as_lr(shape)
    t1 = D ** 2 / (2.0 * shape.sum()) if shape.sum() > 0 else np.inf
    t23 = bound(shape, G=G, D=0.0, kind=kind)
    return float(np.sqrt(t1 / t23)), float(2.0 * np.sqrt(t1 * t23))


# ---------------------------------------------------------------------------------------------------
# The bound at every horizon.
#
# eta_k / (S(k+1,n) S(k,n)) = 1/S(k+1,n) - 1/S(k,n) telescopes term 3; swapping the sums, the E/S
# parts of terms 2 and 3 cancel and
#     Omega_n = D^2 / (2 P_n) + 1/2 [ C_n + e_n / eta_n ],   C_n = sum_{t<n} e_t / (P_n - P_t),
# with prefix sums P. C is a causal Cauchy-kernel sum (targets x_n = P_n, sources y_t = P_t with
# weights e_t), evaluated for all n in ~O(T log T) by a one-dimensional multipole method:
# - P in double-double (hi = cumsum, lo = cumsum of the exact rounding error of every addition), so
#   P_n - P_t = (hi_n - hi_t) + (lo_n - lo_t) has no cancellation even where the schedule is ~0.
# - Source blocks on dyadic levels (width LEAF * 2^l). For one block with centre c and radius r (in
#   P-space), sum_t e_t / (x - y_t) = sum_m mom_m (r/(x-c))^m / (x-c), mom_m = sum_t e_t ((y_t-c)/r)^m,
#   truncated after N_TERMS terms: relative error <= (1+RATIO)/(1-RATIO) RATIO^N_TERMS ~ 5e-13 when
#   r <= RATIO (x - c).
# - For every target, [0, n) is covered greedily from the left: on each level (coarse to fine) the
#   next blocks are taken while they pass the radius test (a few per level for a smooth schedule,
#   more where the LR falls steeply), the rest goes to the finer levels, and what remains at the
#   leaves (the target's own neighbourhood, and stretches where the LR is so small that nothing is
#   well separated) is summed directly.
# ---------------------------------------------------------------------------------------------------
LEAF = 16          # leaf block width (sources)
RATIO = 0.3        # far-field test: block radius <= RATIO * distance to its centre
N_TERMS = 24       # multipole terms
DIRECT_CHUNK = 1 << 21   # elements per vectorized chunk of the direct sums


def _two_sum_prefix(x):
    """Double-double prefix sums of x >= 0: P_i = hi_i + lo_i to ~1 ulp of P_i, both arrays (T,)."""
    hi = np.cumsum(x)   # np.cumsum adds sequentially, so the error of step i is TwoSum(hi_{i-1}, x_i)
    a, b, s = hi[:-1], x[1:], hi[1:]
    assert np.array_equal(s, a + b), "np.cumsum did not add sequentially"
    bb = s - a
    err = (a - (s - bb)) + (b - bb)       # Knuth's TwoSum: a + b = s + err exactly
    lo = np.concatenate(([0.0], np.cumsum(err)))
    return hi, lo


class _Prefix:
    def __init__(self, lr):
        self.hi, self.lo = _two_sum_prefix(lr)

    def diff(self, i, j):
        """P_i - P_j for index arrays (broadcast), clamped at 0 (true value >= 0 for i >= j)."""
        return np.maximum((self.hi[i] - self.hi[j]) + (self.lo[i] - self.lo[j]), 0.0)


def _leaf_moments(prefix, e, width):
    """Per block of `width` sources: start index, centre offset cq, radius r and moments (nb, N_TERMS).

    Positions are P_j - P_start (double-double, >= 0); the centre and radius span the sources with
    e_j > 0; mom_m = sum_j e_j z_j^m with z_j = (position - cq) / r in [-1, 1]."""
    T = e.size
    nb = -(-T // width)
    idx = np.arange(nb * width).reshape(nb, width)
    start = idx[:, 0]
    idx_c = np.minimum(idx, T - 1)
    w = np.where(idx < T, e[idx_c], 0.0)
    q = prefix.diff(idx_c, start[:, None])
    weighted = w > 0
    has = weighted.any(axis=1)
    qmin = np.where(has, np.where(weighted, q, np.inf).min(axis=1), 0.0)
    qmax = np.where(has, np.where(weighted, q, -np.inf).max(axis=1), 0.0)
    cq, r = 0.5 * (qmin + qmax), 0.5 * (qmax - qmin)
    z = np.where(weighted, (q - cq[:, None]) / np.where(r > 0, r, 1.0)[:, None], 0.0)
    mom = np.empty((nb, N_TERMS))
    p = w.copy()
    for m in range(N_TERMS):
        mom[:, m] = p.sum(axis=1)
        p *= z
    return start, cq, r, mom


_BINOM = np.array([[math.comb(m, k) for k in range(N_TERMS)] for m in range(N_TERMS)], dtype=np.float64)


def _shift_moments(mom, a, b):
    """Moments about a new centre and radius: z_new = a z + b, so
    mom_new_m = sum_k binom(m, k) a^k b^(m-k) mom_k. |a| + |b| <= 1 (child inside parent), so the
    rounding error of order m is ~eps 2^m, harmless next to the weight RATIO^m it gets."""
    powers = np.arange(N_TERMS)
    ya = mom * a[:, None] ** powers          # a^k mom_k
    bp = b[:, None] ** powers                # b^j
    out = np.empty_like(mom)
    for m in range(N_TERMS):
        out[:, m] = (ya[:, :m + 1] * bp[:, m::-1]) @ _BINOM[m, :m + 1]
    return out


def _parent_moments(prefix, child, child_width, T):
    """The level above `child` (blocks of 2 x child_width) from its children's moments (M2M)."""
    start, cq, r, mom = child
    if start.size % 2:      # pad with an empty child
        start = np.r_[start, start[-1] + child_width]
        cq, r, mom = np.r_[cq, 0.0], np.r_[r, 0.0], np.vstack([mom, np.zeros(N_TERMS)])
    start_p = start[0::2]
    offset = prefix.diff(np.minimum(start[1::2], T - 1), start_p)   # right child's start, parent frame
    centre = np.stack([cq[0::2], offset + cq[1::2]], axis=1)          # (nb, 2) child centres
    radius = np.stack([r[0::2], r[1::2]], axis=1)
    has = np.stack([mom[0::2, 0] > 0, mom[1::2, 0] > 0], axis=1)
    any_has = has.any(axis=1)
    qmin = np.where(any_has, np.where(has, centre - radius, np.inf).min(axis=1), 0.0)
    qmax = np.where(any_has, np.where(has, centre + radius, -np.inf).max(axis=1), 0.0)
    cq_p, r_p = 0.5 * (qmin + qmax), 0.5 * (qmax - qmin)
    scale = np.where(r_p > 0, r_p, 1.0)
    mom_p = np.zeros((start_p.size, N_TERMS))
    for side in (0, 1):
        a = np.where(has[:, side] & (r_p > 0), radius[:, side] / scale, 0.0)
        b = np.where(has[:, side] & (r_p > 0), (centre[:, side] - cq_p) / scale, 0.0)
        mom_p += _shift_moments(mom[side::2], a, b)
    return start_p, cq_p, r_p, mom_p


def _levels(prefix, e):
    """[(width, start, cq, r, mom)] from the coarsest level (width <= T) down to the leaves."""
    T = e.size
    width, level = LEAF, _leaf_moments(prefix, e, LEAF)
    levels = [(width, *level)]
    while width * 2 <= T:
        level = _parent_moments(prefix, level, width, T)
        width *= 2
        levels.append((width, *level))
    return levels[::-1]


def _cauchy_sums(lr, e, targets):
    """C_i = sum_{j<i} e_j / (P_i - P_j) for 0-based target indices (j, i 0-based)."""
    prefix = _Prefix(lr)
    C = np.zeros(targets.size)
    b = np.zeros(targets.size, dtype=np.int64)       # sources [0, b) are already accounted for
    for width, start, cq, r, mom in _levels(prefix, e):   # coarse to fine
        active = np.arange(targets.size)             # targets still taking blocks on this level
        while active.size:
            i, J = targets[active], b[active] // width
            inside = (J + 1) * width <= i            # the block lies entirely before the target
            active, i, J = active[inside], i[inside], J[inside]
            X = prefix.diff(i, start[J]) - cq[J]
            empty = mom[J, 0] == 0.0
            far = empty | ((X > 0) & (r[J] <= RATIO * X))
            active, X, J, empty = active[far], X[far], J[far], empty[far]
            Xs = np.where(empty, 1.0, X)
            u = r[J] / Xs
            acc = mom[J, N_TERMS - 1]
            for m in range(N_TERMS - 2, -1, -1):     # Horner in u = r / X
                acc = acc * u + mom[J, m]
            C[active] += np.where(empty, 0.0, acc / Xs)
            b[active] += width
    # Direct sums over the remainders [b_i, i), in chunks of about DIRECT_CHUNK pairs.
    length = targets - b
    assert np.all(length >= 0)
    order = np.argsort(length, kind="stable")
    ends = np.cumsum(length[order])
    lo_pos = 0
    while lo_pos < order.size:
        hi_pos = int(np.searchsorted(ends, (ends[lo_pos - 1] if lo_pos else 0) + DIRECT_CHUNK, "right"))
        hi_pos = max(hi_pos, lo_pos + 1)
        sel = order[lo_pos:hi_pos]
        n = length[sel]
        total = int(n.sum())
        if total:
            owner = np.repeat(np.arange(sel.size), n)
            offset = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
            j = b[sel][owner] + offset
            i = targets[sel][owner]
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = np.where(e[j] > 0, e[j] / prefix.diff(i, j), 0.0)
            C[sel] += np.bincount(owner, weights=terms, minlength=sel.size)
        lo_pos = hi_pos
    return C, prefix


def bound_curve(lr, G=1.0, D=1.0, kind="refined", horizons=None):
    """Omega_n of the schedule truncated at every horizon n = 1..T (or at `horizons` only, 1-based).

    Equal to [bound(lr[:n], G[:n], D) for n in horizons] up to rounding, but vectorized.
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
        with np.errstate(divide="ignore"):
            return np.where(P > 0, (D ** 2 + np.cumsum(e)[i]) / (2.0 * P), np.inf)
    C, prefix = _cauchy_sums(lr, e, i)
    P = prefix.hi[i] + prefix.lo[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        omega = D ** 2 / (2.0 * P) + 0.5 * (C + lr[i] * g2[i])   # e_n / eta_n = eta_n G_n^2
    return np.where(P > 0, omega, np.inf)
