"""analysis.bound against independent references: a naive per-horizon implementation written here,
the closed form of the constant schedule, the WSD closed form of THEORY.md section 1 and the
optimal bounds of THEORY.md section 5."""
import numpy as np
import pytest

from analysis.bound import bound, bound_curve, optimal_lr
from schedules import REX, Cosine, Linear, WSD


def naive_curve(lr, G, D):
    """Omega_n for n = 1..T from the three-term form, one horizon at a time (suffix sums per horizon)."""
    lr = np.asarray(lr, dtype=np.float64)
    g2 = np.broadcast_to(np.asarray(G, dtype=np.float64) ** 2, lr.shape)
    out = np.empty(lr.size)
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
        out[n - 1] = D ** 2 / (2 * S[0]) + E[0] / (2 * S[0]) + 0.5 * term3
    return out


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
def test_curve_matches_naive(name, lr, time_varying_g):
    G = np.random.default_rng(1).uniform(0.2, 3.0, lr.size) if time_varying_g else 1.7
    ref = naive_curve(lr, G, D=2.5)
    assert_curves_equal(bound_curve(lr, G=G, D=2.5), ref)
    assert_curves_equal([bound(lr[:n], G if np.isscalar(G) else G[:n], 2.5) for n in (1, lr.size)],
                        ref[[0, -1]])


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
