"""analysis.bound against independent references: a naive per-horizon implementation written here,
the closed form of the constant schedule, the WSD closed form of THEORY.md section 1, the optimal
bounds of THEORY.md section 5, the schedule classes (absolute LRs) and brute-force LR grids.

    python -m pytest tests/test_analysis_bound.py -q      (about 20 s)
"""
import numpy as np
import pytest

from analysis.bound import bound, bound_curve, optimal_lr, step_sizes
from schedules import REX, Cosine, CosinePaper, Linear, Polynomial, WSD


def naive_terms(lr, G, D):
    """(term1, term2, term3) of Omega_n for n = 1..T, one horizon at a time (suffix sums per horizon)."""
    lr = np.asarray(lr, dtype=np.float64)
    g2 = np.broadcast_to(np.asarray(G, dtype=np.float64) ** 2, lr.shape)
    out = np.empty((lr.size, 3))
    for n in range(1, lr.size + 1):
        eta, e = lr[:n], lr[:n] ** 2 * g2[:n]
        S = np.cumsum(eta[::-1])[::-1]          # S[k] = sum_{t >= k} eta_t
        E = np.cumsum(e[::-1])[::-1]
        if S[0] == 0:
            out[n - 1] = np.inf
            continue
        term3 = 0.0
        for k in range(n - 1):
            if eta[k] > 0:
                term3 += np.inf if S[k + 1] == 0 else eta[k] / S[k + 1] * E[k] / S[k]
        out[n - 1] = D ** 2 / (2 * S[0]), E[0] / (2 * S[0]), 0.5 * term3
    return out


def naive_curve(lr, G, D):
    return naive_terms(lr, G, D).sum(axis=1)


def harmonic(n):
    return float(np.sum(1.0 / np.arange(1, n + 1))) if n > 0 else 0.0


def assert_curves_equal(fast, ref, rtol=1e-10):
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert np.array_equal(np.isfinite(fast), np.isfinite(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(fast[finite], ref[finite], rtol=rtol, atol=0)


def _schedules():
    rng = np.random.default_rng(0)
    T = 700
    k = np.arange(T)
    ending_zero = np.minimum(1.0, (T - 1 - k) / (0.3 * T))            # last entry exactly 0
    tiny_end = ending_zero.copy()
    tiny_end[-1] = 1e-12
    zeros = rng.uniform(0, 1, T)
    zeros[:5] = 0.0                                                  # warmup from exactly 0
    zeros[200:260] = 0.0                                             # a zero-LR stretch
    return {
        "random": rng.uniform(0, 1, T),
        "random-log": np.exp(rng.uniform(-25, 0, T)),
        "length-1": np.array([0.3]),
        "length-2": np.array([0.3, 0.1]),
        "odd-37": rng.uniform(0, 1, 37),
        "ends-at-0": ending_zero,
        "ends-at-1e-12": tiny_end,
        "zero-stretches": zeros,
        "geometric": 0.98 ** k,                                      # the LR falls e-fold every 50 steps
        "wsd": WSD(total_steps=T, warmup_steps=20, cooldown_fraction=0.2).multipliers(),
        "wsd-1-sqrt": WSD(total_steps=T, cooldown_fraction=0.5, cooldown_kind="1-sqrt").multipliers(),
        "cosine": Cosine(total_steps=T, warmup_steps=10).multipliers(),
        "linear": Linear(total_steps=T).multipliers(),
    }


@pytest.mark.parametrize("name,lr", list(_schedules().items()))
@pytest.mark.parametrize("time_varying_g", [False, True])
def test_curve_and_its_split_match_naive(name, lr, time_varying_g):
    G = np.random.default_rng(1).uniform(0.2, 3.0, lr.size) if time_varying_g else 1.7
    ref_terms = naive_terms(lr, G, D=2.5)
    ref = ref_terms.sum(axis=1)
    assert_curves_equal(bound_curve(lr, G=G, D=2.5), ref)
    terms = bound_curve(lr, G=G, D=2.5, split=True)
    for k in range(3):
        assert_curves_equal(terms[k], ref_terms[:, k])
    assert_curves_equal(terms.total, ref)
    for n in (1, lr.size):
        G_n = G if np.isscalar(G) else G[:n]
        assert_curves_equal(bound(lr[:n], G_n, 2.5), ref[n - 1])
        assert_curves_equal(bound(lr[:n], G_n, 2.5, split=True), ref_terms[n - 1])


@pytest.mark.parametrize("lr", [10 ** np.linspace(-12, 0, 200), np.r_[np.full(100, 1e-13), np.ones(100)]],
                         ids=["ramp-1e-12-to-1", "jump-1e-13-to-1"])
def test_split_term3_is_not_a_difference(lr):
    # Where the last steps dwarf the earlier ones, term 3 is ~1e-11 of term 1 (the ramp) or of
    # term 2 (the jump): total - term1 - term2, or (term2 + term3) - term2, would lose its digits.
    terms = bound_curve(lr, D=0.5, split=True)
    ref = np.array([bound(lr[:n], D=0.5, split=True) for n in range(1, lr.size + 1)])
    assert np.min(ref[1:, 2] / (ref[1:, 0] + ref[1:, 1])) < 1e-10      # the regime where a difference fails
    for k in range(3):
        assert_curves_equal(terms[k], ref[:, k])


@pytest.mark.parametrize("make", [lambda T: WSD(T, 100, cooldown_fraction=0.2), lambda T: Cosine(T, 100),
                                  lambda T: Linear(T, 100)], ids=["wsd", "cosine", "linear"])
def test_split_curve_on_schedules_decaying_to_exactly_0(make):
    # The schedule at steps 0..T: its last step is exactly 0 (the bound there is +inf), the steps
    # before it tiny; THEORY.md warns that prefix-sum differences cancel there.
    T = 20_000
    lr = 1e-3 * make(T)(np.arange(T + 1))
    assert lr[-1] == 0.0 and 0 < lr[-2] < 1e-6
    horizons = np.r_[1, 2, 150, 9000, np.arange(T - 60, T + 1, 3), T + 1]
    terms = bound_curve(lr, horizons=horizons, split=True)
    ref = np.array([bound(lr[:n], split=True) for n in horizons])
    for k in range(3):
        assert_curves_equal(terms[k], ref[:, k])
    assert np.isinf(terms.total[[0, -1]]).all() and np.isfinite(terms.total[1:-1]).all()   # steps 0 and T are 0


def test_curve_matches_one_horizon_bound_long_decay_to_zero():
    # Long schedules that decay to ~0 are where prefix-sum differences cancel: compare with the
    # one-horizon suffix-sum form at the horizons near the end (and a geometric decay to 1e-9).
    rng = np.random.default_rng(2)
    T = 20_000
    k = np.arange(T)
    for lr in (0.5 * (1 + np.cos(np.pi * k / (T - 1))) + 1e-12, np.minimum(1.0, (T - k) / (0.2 * T)),
               np.where(rng.uniform(size=T) < 0.02, 1.0, 1e-7), 0.999 ** k):
        horizons = np.r_[1, 2, rng.integers(1, T, 10), np.arange(T - 50, T + 1, 7), T]
        fast = bound_curve(lr, horizons=horizons)
        ref = [bound(lr[:n]) for n in horizons]
        assert_curves_equal(fast, ref)


def test_horizons_subset_equals_full_curve():
    lr = WSD(total_steps=3000, warmup_steps=100, cooldown_fraction=0.3).multipliers()
    G = np.linspace(2.0, 0.5, lr.size)
    horizons = np.array([3000, 1, 17, 2500, 2999])
    np.testing.assert_allclose(bound_curve(lr, G, horizons=horizons), bound_curve(lr, G)[horizons - 1], rtol=1e-13)


def test_constant_schedule_closed_form():
    # Omega_T = D^2/(2 gamma T) + gamma G^2/2 + (gamma G^2/2) H_{T-1}
    gamma, G, D, T = 0.03, 1.5, 2.0, 2000
    lr = np.full(T, gamma)
    H = np.concatenate(([0.0], np.cumsum(1.0 / np.arange(1, T))))
    n = np.arange(1, T + 1)
    closed = D ** 2 / (2 * gamma * n) + gamma * G ** 2 / 2 * (1 + H[n - 1])
    np.testing.assert_allclose(bound_curve(lr, G, D), closed, rtol=1e-12)
    assert bound(lr, G, D) == pytest.approx(closed[-1], rel=1e-12)
    # ... and its three pieces are the bound's three terms
    pieces = (D ** 2 / (2 * gamma * n), np.full(T, gamma * G ** 2 / 2), gamma * G ** 2 / 2 * H[n - 1])
    for k, (curve_term, one_term) in enumerate(zip(bound_curve(lr, G, D, split=True), bound(lr, G, D, split=True))):
        np.testing.assert_allclose(curve_term, pieces[k], rtol=1e-12, atol=0)
        assert one_term == pytest.approx(pieces[k][-1], rel=1e-12, abs=0)
    # Optimal LR in closed form: t1 = D^2/(2T), t23 = G^2 (1 + H_{T-1}) / 2.
    t1, t23 = D ** 2 / (2 * T), G ** 2 * (1 + H[-1]) / 2
    gamma_star, omega_star = optimal_lr(np.ones(T), G, D)
    assert gamma_star == pytest.approx(np.sqrt(t1 / t23), rel=1e-12)
    assert omega_star == pytest.approx(2 * np.sqrt(t1 * t23), rel=1e-12)


def test_standard_bound():
    rng = np.random.default_rng(3)
    lr = rng.uniform(0, 1, 500)
    G = rng.uniform(0.5, 2, 500)
    closed = (3.0 ** 2 + np.cumsum(lr ** 2 * G ** 2)) / (2 * np.cumsum(lr))
    np.testing.assert_allclose(bound_curve(lr, G, 3.0, kind="standard"), closed, rtol=1e-12)
    t1, t2, t3 = bound_curve(lr, G, 3.0, kind="standard", split=True)
    np.testing.assert_allclose(t1, 3.0 ** 2 / (2 * np.cumsum(lr)), rtol=1e-12)
    np.testing.assert_allclose(t2, np.cumsum(lr ** 2 * G ** 2) / (2 * np.cumsum(lr)), rtol=1e-12)
    assert np.all(t3 == 0) and bound(lr, G, 3.0, kind="standard", split=True).term3 == 0
    assert bound(lr, G, 3.0, kind="standard") == pytest.approx(closed[-1], rel=1e-12)
    gamma, omega = optimal_lr(lr, G, 3.0, kind="standard")
    assert gamma == pytest.approx(3.0 / np.sqrt(np.sum(lr ** 2 * G ** 2)), rel=1e-12)
    assert omega == pytest.approx(bound(gamma * lr, G, 3.0, kind="standard"), rel=1e-12)


@pytest.mark.parametrize("kind", ["refined", "standard"])
def test_optimal_lr_minimizes_the_bound(kind):
    shape = Cosine(total_steps=800, warmup_steps=50).multipliers()
    gamma, omega = optimal_lr(shape, G=0.7, D=3.0, kind=kind)
    assert bound(gamma * shape, 0.7, 3.0, kind) == pytest.approx(omega, rel=1e-12)
    for factor in (0.99, 1.01, 0.5, 2.0):
        assert bound(factor * gamma * shape, 0.7, 3.0, kind) > omega


def wsd_theorem(T, T0):
    """THEORY.md section 1: upper bound on Omega* for WSD with a linear cooldown from T0, D = G = 1."""
    a = (2 / 3 + (T + 2 * T0) / (3 * (T + T0)) + harmonic(T + T0 - 2) - harmonic(T - T0 + 1)
         - (T - T0) * (T0 - 1) / (3 * (T - T0 + 2) * (T + T0)) + 1 / (T - T0) ** 2
         + harmonic(T - T0 - 1) / (T - T0 + 1))
    return np.sqrt(4 / (T + T0) * a)


@pytest.mark.parametrize("T", [100, 400, 1000, 5000])
def test_wsd_closed_form(T):
    # The paper's convention: a schedule of T+1 steps (cooldown over n = floor(0.2 (T+1)) steps,
    # 1 - k/n for k = 1..n, starting after step T0 = T+1-n), evaluated at horizon T.
    n = int(0.2 * (T + 1))
    shape = np.r_[np.ones(T + 1 - n), 1 - np.arange(1, n + 1) / n]
    _, omega = optimal_lr(shape[:T])
    upper = wsd_theorem(T, T + 1 - n)
    assert omega <= upper
    assert omega >= 0.75 * upper      # and close to it (the ratio is about 0.81 for these T)


def test_optimal_bounds_of_theory_section_5():
    # D = G = 1, T = 100, eta_t = f((t-1)/T): linear < REX < cosine < constant.
    T = 100
    z = np.arange(T) / T
    shapes = {"linear": 1 - z, "rex": REX(total_steps=T).multipliers(), "cosine": (1 + np.cos(np.pi * z)) / 2,
              "constant": np.ones(T)}
    expected = {"linear": 0.2036, "rex": 0.2061, "cosine": 0.2091, "constant": 0.2485}
    for name, shape in shapes.items():
        assert optimal_lr(shape)[1] == pytest.approx(expected[name], abs=5e-5), name


def test_zero_steps():
    # A horizon whose own step is 0 has an infinite bound; zero steps before it are harmless.
    lr = np.array([0.0, 0.0, 1.0, 0.5, 0.0, 0.2])
    curve = bound_curve(lr)
    assert np.isinf(curve[[0, 1, 4]]).all() and np.isfinite(curve[[2, 3, 5]]).all()
    assert np.isinf(bound(lr[:5]))


def test_bad_input():
    with pytest.raises(ValueError, match="lr"):
        bound(np.array([1.0, -0.1]))
    with pytest.raises(ValueError, match="lr"):
        bound_curve(np.array([]))
    with pytest.raises(ValueError, match="G"):
        bound_curve(np.ones(5), G=np.ones(4))
    with pytest.raises(ValueError, match="horizons"):
        bound_curve(np.ones(5), horizons=np.array([0, 3]))
    with pytest.raises(ValueError, match="kind"):
        bound(np.ones(5), kind="tight")


# ---------------------------------------------------------------- absolute final and warmup-start LRs

@pytest.mark.parametrize("make", [
    lambda f, ws: WSD(500, 40, warmup_start=ws, cooldown_fraction=0.3, cooldown_kind="1-sqrt", final_fraction=f),
    lambda f, ws: Cosine(500, 40, warmup_start=ws, final_fraction=f),
    lambda f, ws: Polynomial(500, 40, warmup_start=ws, power=2.0, final_fraction=f),
    lambda f, ws: REX(500, 40, warmup_start=ws, final_fraction=f),
    lambda f, ws: CosinePaper(500, 40, warmup_start=ws, final_fraction=f),   # a cosine warmup
], ids=["wsd", "cosine", "polynomial", "rex", "cosine_paper"])
def test_step_sizes_equal_the_schedule_with_those_absolute_lrs(make):
    # The schedule at peak gamma whose final / warmup-start multipliers are final_lr / gamma.
    gamma, final_lr, start_lr = 3e-3, 1e-5, 2e-5
    shape = make(0.0, 0.0).multipliers()
    expected = gamma * make(final_lr / gamma, start_lr / gamma).multipliers()
    np.testing.assert_allclose(step_sizes(shape, gamma, final_lr, start_lr, warmup_steps=40), expected,
                               rtol=1e-13, atol=1e-19)


def test_optimal_lr_with_offsets_matches_the_standard_bounds_closed_form():
    # Standard bound, eta = gamma s + o: Omega = (D^2 + a g^2 + 2 b g + c) / (2 (A g + B)), whose
    # derivative vanishes at a A g^2 + 2 a B g + 2 b B - A (D^2 + c) = 0.
    shape = Cosine(1000, 50).multipliers()
    G, D, final_lr, start_lr = 0.8, 2.0, 4e-3, 1e-3
    o = step_sizes(shape, 1.0, final_lr, start_lr, warmup_steps=50) - shape
    A, B, a, b, c = shape.sum(), o.sum(), G ** 2 * shape @ shape, G ** 2 * shape @ o, G ** 2 * o @ o
    g = (-a * B + np.sqrt((a * B) ** 2 - a * A * (2 * b * B - A * (D ** 2 + c)))) / (a * A)
    gamma, omega = optimal_lr(shape, G, D, "standard", final_lr, start_lr, warmup_steps=50)
    assert gamma == pytest.approx(g, rel=1e-6)
    assert omega == pytest.approx((D ** 2 + a * g * g + 2 * b * g + c) / (2 * (A * g + B)), rel=1e-12)


def test_optimal_lr_with_offsets_agrees_with_a_brute_force_grid():
    # The paper's cosine: warmup from an absolute LR, cosine to an absolute LR.
    shape = CosinePaper(2000, 100, warmup_start=0.0, final_fraction=0.0).multipliers()
    kw = dict(final_lr=2e-3, warmup_start_lr=1e-3, warmup_steps=100)
    gamma, omega = optimal_lr(shape, G=1.3, D=0.7, **kw)
    grid = gamma * 10 ** np.linspace(-1, 1, 4001)                  # 0.05% apart
    values = np.array([bound(step_sizes(shape, g, **kw), 1.3, 0.7) for g in grid])
    best = int(np.argmin(values))
    assert 0 < best < grid.size - 1
    assert abs(gamma / grid[best] - 1) < 1.2e-3
    assert values[best] * (1 - 1e-12) <= omega <= values[best]
    assert omega == pytest.approx(bound(step_sizes(shape, gamma, **kw), 1.3, 0.7), rel=1e-14)


def test_optimal_lr_is_continuous_as_the_absolute_lrs_go_to_0():
    shape = WSD(3000, 100, cooldown_fraction=0.2).multipliers()
    gamma0, omega0 = optimal_lr(shape)
    for eps in (1e-3, 1e-5, 1e-7):
        gamma, omega = optimal_lr(shape, final_lr=eps * gamma0, warmup_start_lr=eps * gamma0, warmup_steps=100)
        assert abs(gamma / gamma0 - 1) < 10 * eps + 1e-6 and abs(omega / omega0 - 1) < 10 * eps + 1e-10
        assert gamma != gamma0 and omega != omega0                 # the numerical path, not the closed form
    assert optimal_lr(shape, final_lr=0.0, warmup_start_lr=None) == (gamma0, omega0)


def test_absolute_lr_bad_input():
    shape = Linear(100).multipliers()
    with pytest.raises(ValueError, match="final_lr=-0.001 must be an absolute LR >= 0"):
        step_sizes(shape, 1.0, final_lr=-1e-3)
    with pytest.raises(ValueError, match="warmup_start_lr=0.001 needs the warmup length"):
        step_sizes(shape, 1.0, warmup_start_lr=1e-3)
    with pytest.raises(ValueError, match="peak-1 multipliers"):
        step_sizes(2 * shape, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        step_sizes(shape, 0.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        step_sizes(shape, 1.0, warmup_steps=101)
    with pytest.raises(ValueError, match="are not small next to the peak; lower them"):
        optimal_lr(shape, final_lr=10.0)
    with pytest.raises(ValueError, match="0 everywhere"):
        optimal_lr(np.zeros(10))
