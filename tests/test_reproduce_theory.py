"""The theory figures of `python -m scripts.reproduce` (scripts/figures/theory*.py): every figure builds,
and the numbers in their JSON match independent references (the paper's schedule arrays built here
from its definitions, the bound of THEORY.md section 1 written as a plain double loop, closed forms,
and root-finds done here with scipy's brentq).

    python -m pytest -q tests/test_reproduce_theory.py -p no:cacheprovider
"""
from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import pytest
from scipy.optimize import brentq

from analysis.bound import optimal_lr
from scripts.figures import theory
from scripts.figures.common import Context, to_jsonable, write
from scripts.figures.theory_common import constant, cosine, inverse_sqrt, linear, shape, wsd

SPECS = {spec.name: spec for spec in theory.FIGURES}


@lru_cache(maxsize=None)
def figure_json(name: str, small: bool) -> dict:
    """The figure's numbers exactly as write() stores them in <name>.json (keys become strings)."""
    _, numbers = SPECS[name].make(Context(small=small))
    return json.loads(json.dumps(to_jsonable(numbers)))


# ----- independent references -----
def paper_wsd(T, c, kind="linear"):
    """The paper's WSD: T + 1 steps, a cooldown of int(c (T + 1)) steps (T at most: with no warmup a
    full cooldown is shortened by one), k-th cooldown value 1 - k/n or 1 - sqrt(k/n); evaluated at T."""
    n = min(int(c * (T + 1)), T)
    k = np.arange(1, n + 1)
    cool = 1 - k / n if kind == "linear" else 1 - np.sqrt(k / n)
    return np.concatenate([np.ones(T + 1 - n), cool])[:T]


def paper_cosine(T, final=0.0):
    i = np.arange(T)
    return final + (1 - final) * 0.5 * (1 + np.cos(np.pi * i / T))


def naive_terms(eta):
    """(t1, t23) of the bound (D = G = 1) as THEORY.md section 1 writes it: term1 = t1 / gamma,
    terms 2 + 3 = gamma t23, summed directly over k and t (O(T^2))."""
    T, e = eta.size, eta ** 2
    S = eta.sum()
    t3 = 0.5 * sum(eta[k] / eta[k + 1:].sum() * e[k:].sum() / eta[k:].sum() for k in range(T - 1))
    return 1 / (2 * S), e.sum() / (2 * S) + t3


def naive_optimum(eta):
    t1, t23 = naive_terms(eta)
    return math.sqrt(t1 / t23), 2 * math.sqrt(t1 * t23)


def harmonic(n):
    return sum(1.0 / k for k in range(1, n + 1))


# ----- every figure builds -----
def test_the_theory_figures_are_listed():
    expected = {"fig1b", *(f"fig{i}" for i in (2, 3, 4, 5, 6, 7, 8, 9, 11, 13, 14, 15, 16, 17, 18, 19, 20))}
    assert set(SPECS) == expected
    assert all(spec.caption and not spec.needs_logs for spec in SPECS.values())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_figure_builds_on_small_settings(name, tmp_path):
    written = write(SPECS[name], Context(small=True), tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}{s}" for s in (".png", ".pdf", ".json"))
    assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    numbers = json.loads((tmp_path / f"{name}.json").read_text())
    assert numbers["figure"] == name and numbers["caption"] == SPECS[name].caption


# ----- the project's step convention gives the paper's arrays -----
@pytest.mark.parametrize("T, c, kind", [(400, 0.2, "linear"), (404, 0.2, "linear"), (400, 0.3, "1-sqrt"),
                                        (400, 1.0, "linear"), (400, 1.0, "1-sqrt")])
def test_wsd_configs_give_the_papers_arrays(T, c, kind):
    # T = 404: floor(0.2 T) = 80 but the paper's cooldown has int(0.2 (T + 1)) = 81 steps.
    np.testing.assert_allclose(shape(wsd(T, c, kind)), paper_wsd(T, c, kind), rtol=0, atol=1e-15)


def test_decay_configs_give_the_papers_arrays():
    T = 400
    np.testing.assert_allclose(shape(cosine(T)), paper_cosine(T), atol=1e-15)
    np.testing.assert_allclose(shape(linear(T)), paper_wsd(T, 1.0), atol=1e-15)
    np.testing.assert_allclose(shape(inverse_sqrt(T)), 1 / np.sqrt(np.arange(1, T + 1)), atol=1e-15)
    np.testing.assert_array_equal(shape(constant(T)), np.ones(T))


# ----- Fig. 18: the optimal bound of six schedules at T = 400 -----
def test_fig18_optimal_bounds_and_their_order():
    schedules = figure_json("fig18", False)["schedules"]
    T = 400
    reference = {"linear decay to 0": paper_wsd(T, 1.0), "1-sqrt decay to 0": paper_wsd(T, 1.0, "1-sqrt"),
                 "cosine to 0": paper_cosine(T), "WSD, 20% linear cooldown": paper_wsd(T, 0.2),
                 "1/sqrt(t)": 1 / np.sqrt(np.arange(1, T + 1)), "constant": np.ones(T)}
    assert set(schedules) == set(reference)
    for name, eta in reference.items():
        gamma, omega = naive_optimum(eta)
        assert schedules[name]["gamma_star"] == pytest.approx(gamma, rel=1e-9), name
        assert schedules[name]["omega_star"] == pytest.approx(omega, rel=1e-9), name
    # The constant schedule in closed form: Omega* = sqrt((1 + H_{T-1}) / T).
    assert schedules["constant"]["omega_star"] == pytest.approx(math.sqrt((1 + harmonic(T - 1)) / T), rel=1e-12)
    # With the peak LR tuned per schedule, linear decay is best and the constant LR worst; at T = 400
    # cosine to 0 (0.1034) is below WSD with a 20% cooldown (0.1093).
    order = sorted(schedules, key=lambda name: schedules[name]["omega_star"])
    assert order == ["linear decay to 0", "1-sqrt decay to 0", "cosine to 0", "WSD, 20% linear cooldown",
                     "1/sqrt(t)", "constant"]


# ----- Figs. 2, 3, 14, 20: the horizon -----
def test_fig3_optimal_lr_follows_a_power_law_with_exponent_minus_one_half():
    # For a fixed shape, sum eta = a T + O(1) and t23 = b + O(log T / T) (no log factor for cosine
    # and WSD), so d ln gamma* / d ln T = -1/2 + O(log T / T); over T = 200..600, log T / T <= 0.03:
    # the fitted B lies within 0.02 of -1/2. The standard bound's gamma* = 1 / sqrt(sum eta^2) has
    # only the O(1/T) correction: within 0.005.
    for name, tol in (("fig3", 0.02), ("fig14", 0.005)):
        numbers = figure_json(name, False)
        T = np.array(numbers["horizons"], dtype=float)
        for sched, fit in numbers["exponents"].items():
            assert fit["B"] == pytest.approx(-0.5, abs=tol), (name, sched)
            gammas = np.array(numbers["schedules"][sched]["gamma_star"])
            np.testing.assert_allclose(fit["A"] * T ** fit["B"], gammas, rtol=0.01)
            for t, g in zip(numbers["horizons"], gammas):     # gamma* against the closed form on the paper's arrays
                eta = paper_cosine(t) if sched.startswith("cosine") else paper_wsd(t, 0.2)
                if name == "fig3":
                    assert g == pytest.approx(naive_optimum(eta)[0], rel=1e-9)
                else:
                    assert g == pytest.approx(1 / math.sqrt((eta ** 2).sum()), rel=1e-9)


def wsd_closed_form(T, T0):
    """THEORY.md section 1: the upper bound on Omega* of WSD with a linear cooldown from step T0."""
    inner = (2 / 3 + (T + 2 * T0) / (3 * (T + T0)) + harmonic(T + T0 - 2) - harmonic(T - T0 + 1)
             - (T - T0) * (T0 - 1) / (3 * (T - T0 + 2) * (T + T0)) + 1 / (T - T0) ** 2
             + harmonic(T - T0 - 1) / (T - T0 + 1))
    return math.sqrt(4 / (T + T0) * inner)


def test_wsd_optimal_bound_against_the_closed_form():
    ratios = []
    for name, group in (("fig2", "schedules"), ("fig20", None)):
        numbers = figure_json(name, False)
        wsd_numbers = numbers[group]["WSD, 20% linear cooldown"] if group else numbers["wsd"]
        for T, entry in wsd_numbers.items():
            T = int(T)
            T0 = T - int(0.2 * (T + 1))
            closed = wsd_closed_form(T, T0)
            assert entry["omega_star"] <= closed
            ratios.append(closed / entry["omega_star"])
    # The closed form is an upper bound that tracks Omega* within a T-independent factor (1.22..1.24
    # for T = 200..8000): both fall as 1/sqrt(T), no log factor.
    assert 1.0 < min(ratios) and max(ratios) < 1.3 and max(ratios) / min(ratios) < 1.02


def test_fig20_constant_log_factor_and_split():
    numbers = figure_json("fig20", True)
    for T, omega in zip(numbers["horizons"], numbers["constant"]["omega_star_at_horizons"]):
        assert omega == pytest.approx(math.sqrt((1 + harmonic(T - 1)) / T), rel=1e-12)
    t = np.array(numbers["constant"]["horizon"])
    drawn = np.array(numbers["constant"]["omega_star"])
    np.testing.assert_allclose(drawn, [math.sqrt((1 + harmonic(n - 1)) / n) for n in t], rtol=1e-12)
    split = numbers["split"]
    eta = paper_wsd(split["T"], 0.2)
    term1 = np.array(split["term1"])
    np.testing.assert_allclose(term1, 1 / (2 * split["gamma_star"] * np.cumsum(eta)), rtol=1e-12)
    # At the optimal gamma the 1/gamma part and the gamma part are equal at the horizon.
    assert term1[-1] == pytest.approx(split["term2_plus_term3"][-1], rel=1e-9)
    assert term1[-1] + split["term2_plus_term3"][-1] == pytest.approx(split["omega_star"], rel=1e-9)


# ----- Fig. 8: rho of the two-stage WSD, against a root-find on the paper's arrays -----
def paper_two_stage(T1, T2, rho):
    """The paper's extension: 1 before int(0.8 T1), rho after, and a linear cooldown of int(0.2 (T2 + 1))
    steps from rho to 0 at the end of T2 + 1 steps; evaluated at T2."""
    n = int(0.2 * (T2 + 1))
    main = np.where(np.arange(T2 + 1 - n) < int(0.8 * T1), 1.0, rho)
    return np.concatenate([main, rho * (1 - np.arange(1, n + 1) / n)])[:T2]


def test_fig8_rho_matches_an_independent_root_find():
    numbers = figure_json("fig8", True)
    T1 = numbers["T1"]
    gamma_1 = optimal_lr(paper_wsd(T1, 0.2))[0]
    assert numbers["gamma_1"] == pytest.approx(gamma_1, rel=1e-12)
    rhos = {}
    for factor in (2, 4):
        T2 = factor * T1
        entry = numbers["extended"][str(T2)]
        rho = brentq(lambda r: math.log(optimal_lr(paper_two_stage(T1, T2, r))[0] / gamma_1), 0.05, 1.0, xtol=1e-8)
        # 2e-3: the paper drops one step later than the project's TwoStageWSD (step 3200 vs 3201 at
        # T1 = 4000) and the table rounds rho to 4 digits.
        assert entry["parameter"] == pytest.approx(rho, abs=2e-3), factor
        # Keeping the LR with the old cooldown fraction is clearly worse in the bound.
        assert entry["bound"] < 0.97 * numbers["same_lr"][str(T2)]["bound"]
        rhos[factor] = entry["parameter"]
    assert 0.2 < rhos[4] < rhos[2] < 1.0


def test_fig9_adapted_cooldown_keeps_the_optimal_lr():
    numbers = figure_json("fig9", True)
    gamma_1 = numbers["gamma_1"]
    for T2, entry in numbers["extended"].items():
        if entry["parameter"] is None:
            continue
        eta = np.array(entry["lr"]) / gamma_1
        assert optimal_lr(eta)[0] == pytest.approx(gamma_1, rel=0.01), T2


# ----- Fig. 11: the LR transfer from WSD to linear decay -----
def test_fig11_values_and_their_independence_of_T():
    numbers = figure_json("fig11", False)
    c = np.array(numbers["fraction"])
    for kind, per_T in numbers["cooldown"].items():
        for T in (400, 1600):
            log_ratio = np.array(per_T[str(T)]["log_ratio"])
            linear_gamma = optimal_lr(paper_wsd(T, 1.0, kind))[0]
            for value in (0.2, 0.5, 1.0):
                i = int(np.argmin(np.abs(c - value)))
                direct = math.log(linear_gamma) - math.log(optimal_lr(paper_wsd(T, c[i], kind))[0])
                assert log_ratio[i] == pytest.approx(direct, abs=1e-12), (kind, T, value)
        table = np.array([per_T[T]["log_ratio"] for T in per_T])     # (horizons, fractions)
        spread = table.max(axis=0) - table.min(axis=0)
        # THEORY 2 (ii): nearly independent of T for T = 400..102400 (values up to 1.3), except at c = 0,
        # where WSD is the constant LR and carries the log factor.
        assert np.all(spread[c >= 0.1] < 0.015), kind
        assert spread[0] > 0.2
        assert np.all(np.diff(table[-1]) < 0)           # a longer cooldown allows a larger LR


# ----- Fig. 17: the toy problem stays below its bound -----
def test_fig17_toy_problem_is_below_the_bound():
    numbers = figure_json("fig17", False)
    finals = {}
    for name, run in numbers["runs"].items():
        f, omega = np.array(run["suboptimality"]), np.array(run["bound"])
        assert np.all(f <= omega), name     # Defazio et al. Thm. 10 with the observed ||g_t|| and the true D
        finals[name] = f[-1]
    assert numbers["D"] == pytest.approx(5.0)
    constant_final = finals.pop("constant LR 0.02")
    assert all(final < 0.5 * constant_final for final in finals.values())      # a cooldown pays off


def test_fig19_longer_cosine_cycles_are_worse():
    numbers = figure_json("fig19", False)
    omegas = [numbers["cycles"][str(c)]["omega_star"] for c in numbers["cycle"]]
    assert omegas[0] == pytest.approx(naive_optimum(paper_cosine(400, final=0.1))[1], rel=1e-9)
    assert np.all(np.diff(omegas) > 0)
