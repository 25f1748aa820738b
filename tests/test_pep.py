"""The subgradient method's worst case as a PEP (scripts/figures/theory_pep.py) and Fig. 7, against
closed forms, a concrete convex function run step by step, the paper's published PEP values and the
bound Omega_t (an upper bound on the worst case, so never below it).

    python -m pytest -q tests/test_pep.py -p no:cacheprovider
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.bound import bound_curve, optimal_lr
from scripts.figures import theory_pep
from scripts.figures.common import Context, write
from scripts.figures.theory_common import constant, linear, shape, wsd
from scripts.figures.theory_pep import worst_case, worst_case_curve


def one_step_worst_case(eta, D, G):
    """max f(x_2) - f* after x_2 = x_1 - eta g_1, derived by hand. With r = x_1 - x*, the interpolation
    conditions leave f_2 <= min(<g_1, r>, <g_2, r>) - eta <g_1, g_2>; the problem is symmetric in
    (g_1, g_2) and concave, so <g_1, r> = <g_2, r> = a, ||g_i|| = G, and the Gram matrix of
    (r, g_1, g_2) is PSD iff <g_1, g_2> >= 2 a^2 / D^2 - G^2. Maximising a - eta (2 a^2 / D^2 - G^2)
    over a <= D G: a = D^2 / (4 eta) when that is <= D G, else a = D G (the 1-D function G |x|)."""
    if eta * G <= D / 4:
        return D * G - eta * G ** 2
    return D ** 2 / (8 * eta) + eta * G ** 2


def paper_wsd(T, c):
    """The paper's WSD (its scheduled package): T + 1 steps, int(c (T + 1)) of them a linear cooldown
    1 - k/n, k = 1..n; the first T are eta_1..eta_T."""
    n = int(c * (T + 1))
    return np.concatenate([np.ones(T + 1 - n), 1 - np.arange(1, n + 1) / n])[:T]


def tuned(config):
    eta = shape(config)
    return optimal_lr(eta)[0] * eta


# ----- closed forms -----
@pytest.mark.parametrize("D, G", [(1.0, 1.0), (2.0, 0.5), (0.3, 3.0)])
def test_no_step_the_worst_case_is_D_times_G(D, G):
    # f(x_1) - f* <= <g_1, x_1 - x*> <= G D, attained by G |x| at x_1 = D
    assert worst_case([], D=D, G=G) == pytest.approx(D * G, rel=1e-7)


@pytest.mark.parametrize("eta", [0.05, 0.25, 0.5, 2.0])
@pytest.mark.parametrize("D, G", [(1.0, 1.0), (2.0, 0.5)])
def test_one_step_matches_the_closed_form(eta, D, G):
    assert worst_case([eta], D=D, G=G) == pytest.approx(one_step_worst_case(eta, D, G), rel=1e-6)


def test_horizon_t_takes_the_steps_eta_1_to_eta_t_minus_1():
    """The bound's time index: Omega_2 uses eta_1, eta_2, and x_2 = x_1 - eta_1 g_1."""
    lr = [0.5, 0.1, 0.05]
    expected = [1.0, one_step_worst_case(0.5, 1.0, 1.0)]
    assert worst_case_curve(lr, [1, 2]) == pytest.approx(expected, rel=1e-6)


def test_the_worst_case_scales_as_D_G_with_the_step_in_units_of_D_over_G():
    steps = np.array([0.4, 0.3, 0.2, 0.1])
    D, G = 2.0, 0.25
    assert worst_case(steps, D=D, G=G) == pytest.approx(D * G * worst_case(steps * G / D), rel=1e-6)


def test_forcing_the_full_sdp_changes_nothing(monkeypatch):
    """The relaxed SDP (later points' subgradients only) and the one with every pair agree."""
    cases = [np.full(7, 0.3), tuned(linear(8))[:7], tuned(wsd(10, 0.4))[:9]]
    relaxed = [worst_case(steps) for steps in cases]
    monkeypatch.setattr(theory_pep, "FEASIBILITY_TOL", -np.inf)      # every check fails: full SDP
    assert [worst_case(steps) for steps in cases] == pytest.approx(relaxed, rel=1e-6)


# ----- the worst case is a worst case: above any instance, below the bound -----
def test_the_worst_case_is_at_least_a_convex_function_run_step_by_step():
    """f(x) = G max_k <a_k, x - x*> with unit a_k that positively span the plane: convex, G-Lipschitz,
    minimum 0 at x*. Every start on the circle ||x_1 - x*|| = D gives f(x_t) <= the worst case."""
    D, G = 1.0, 1.0
    lr = tuned(wsd(12, 0.2))
    angles = 2 * np.pi * np.arange(5) / 5 + 0.3
    A = G * np.column_stack([np.cos(angles), np.sin(angles)])
    pep = worst_case_curve(lr, np.arange(1, lr.size + 1))
    for start in np.linspace(0, 2 * np.pi, 7, endpoint=False):
        x = D * np.array([np.cos(start), np.sin(start)])           # x* = 0
        for t in range(1, lr.size + 1):
            k = np.argmax(A @ x)                                     # f(x_t) = (A @ x)[k]
            assert (A @ x)[k] <= pep[t - 1] + 1e-7
            x = x - lr[t - 1] * A[k]                                 # a subgradient step: A[k] is active


def test_the_paper_published_pep_values_before_the_cooldown():
    """fabian-sp/lr-scheduling, scripts/output/pepit_wsd.json (PEPit + MOSEK): WSD-0.2 at T = 60, peak
    LR tuned on the bound. Its steps are one index later than ours, which changes nothing before the
    cooldown (step 50), so the values at t = 6, 11, 16 are comparable."""
    lr = tuned(wsd(60, 0.2))
    published = {6: 0.6847640492221975, 11: 0.4382523989156654, 16: 0.33777827634456103}
    assert worst_case_curve(lr, list(published)) == pytest.approx(list(published.values()), abs=1e-6)


@pytest.mark.parametrize("config", [wsd(20, 0.2), constant(12), linear(12)], ids=["wsd", "constant", "linear"])
def test_the_worst_case_never_exceeds_the_bound(config):
    lr = tuned(config)
    horizons = np.arange(1, lr.size + 1)
    pep = worst_case_curve(lr, horizons)
    assert np.all(pep <= bound_curve(lr) * (1 + 1e-7))
    assert np.all(pep > 0)


def test_an_untuned_large_step_stays_below_the_bound_too():
    lr = np.full(10, 1.5)
    assert np.all(worst_case_curve(lr, np.arange(1, 11)) <= bound_curve(lr) * (1 + 1e-7))


# ----- Fig. 7 -----
def test_fig7_plots_the_paper_schedule_its_bound_and_worst_cases_below_it(tmp_path):
    spec = next(s for s in theory_pep.FIGURES if s.name == "fig7")
    written = write(spec, Context(small=True), tmp_path)
    assert sorted(p.name for p in written) == ["fig7.json", "fig7.pdf", "fig7.png"]
    numbers = json.loads((tmp_path / "fig7.json").read_text())
    T = numbers["T"]
    lr = np.array(numbers["lr"])
    gamma = numbers["gamma_star"]
    assert lr / gamma == pytest.approx(paper_wsd(T, 0.2), abs=1e-12)
    assert (gamma, numbers["omega_star"]) == pytest.approx(optimal_lr(paper_wsd(T, 0.2)), rel=1e-12)
    bound = np.array(numbers["bound"]["bound"])
    assert numbers["bound"]["step"] == list(range(1, T + 1))
    assert bound == pytest.approx(bound_curve(lr), rel=1e-12)
    steps, pep = numbers["pep"]["step"], np.array(numbers["pep"]["worst_case"])
    assert steps[0] == 1 and steps[-1] == T and pep[0] == pytest.approx(1.0, rel=1e-7)
    assert np.all(pep <= bound[np.array(steps) - 1])
    assert numbers["cooldown_start"] == T + 1 - int(0.2 * (T + 1)) + 1     # the first step below the peak


# ----- bad input -----
@pytest.mark.parametrize("steps, D, G, match", [
    ([0.1, -0.1], 1.0, 1.0, "steps must be"), ([np.nan], 1.0, 1.0, "steps must be"),
    ([[0.1]], 1.0, 1.0, "steps must be"), ([0.1], 0.0, 1.0, "D must be"), ([0.1], 1.0, -1.0, "G must be"),
])
def test_bad_input_names_the_problem(steps, D, G, match):
    with pytest.raises(ValueError, match=match):
        worst_case(steps, D=D, G=G)


def test_horizons_beyond_the_schedule_are_refused():
    with pytest.raises(ValueError, match=r"horizons must be .* \[1, 4\]"):
        worst_case_curve([0.1, 0.1, 0.1], [1, 5])
