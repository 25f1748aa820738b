"""Private: the causal Cauchy-kernel sums behind analysis.bound.bound_curve, by a 1-D multipole method.

    from analysis._multipole import Prefix, cauchy_sums
    prefix = Prefix(lr)                     # P_i = lr_0 + ... + lr_i in double-double
    C = cauchy_sums(prefix, e, targets)     # C_i = sum_{j<i} e_j / (P_i - P_j), weights e >= 0

Why (the math is in analysis/bound.py): the bound of the schedule truncated at horizon n has a
term sum_{t<n} e_t / (P_n - P_t) (weights e_t = eta_t^2 G_t^2, or e_t P_t for term 3 alone), and
all horizons at once directly is O(T^2). Here it is ~O(T log T):
- P in double-double (hi = cumsum, lo = cumsum of the exact rounding error of every addition), so
  P_n - P_t = (hi_n - hi_t) + (lo_n - lo_t) has no cancellation even where the schedule is ~0.
- Source blocks on dyadic levels (width LEAF * 2^l). For one block with centre c and radius r (in
  P-space), sum_t e_t / (x - y_t) = sum_m mom_m (r/(x-c))^m / (x-c), mom_m = sum_t e_t ((y_t-c)/r)^m,
  truncated after N_TERMS terms: relative error <= (1+RATIO)/(1-RATIO) RATIO^N_TERMS ~ 5e-13 when
  r <= RATIO (x - c). All weights are >= 0, so this relative error carries over to the whole sum.
- For every target, [0, n) is covered greedily from the left: on each level (coarse to fine) the
  next blocks are taken while they pass the radius test (a few per level for a smooth schedule,
  more where the LR falls steeply), the rest goes to the finer levels, and what remains at the
  leaves (the target's own neighbourhood, and stretches where the LR is so small that nothing is
  well separated) is summed directly.
Tested through analysis.bound (tests/test_analysis_bound.py) against per-horizon direct sums.
"""
import math

import numpy as np

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


class Prefix:
    """P_i = sum_{t<=i} lr_t (0-based) in double-double: hi + lo."""

    def __init__(self, lr):
        self.hi, self.lo = _two_sum_prefix(lr)

    def at(self, i):
        """P_i, rounded once to float64."""
        return self.hi[i] + self.lo[i]

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


def cauchy_sums(prefix, e, targets):
    """C_i = sum_{j<i} e_j / (P_i - P_j) for 0-based target indices i (sources j 0-based), e_j >= 0.

    A source with e_j > 0 and P_j = P_i gives +inf (the bound at a horizon whose own step is 0)."""
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
    return C
