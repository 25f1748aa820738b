"""Tests of analysis/bound_schedule.py: the gradient against finite differences of analysis.bound, the
standard bound's closed-form optimum, the refined optimum against the tuned linear decay; and the JSON of
Fig. "bm_shapes" (scripts/figures/bordelon_shapes.py) against this module's and analysis.random_features' optima.

    python -m pytest -q tests/test_bound_schedule.py -p no:cacheprovider
"""
import json

import numpy as np
import pytest

from analysis.bound import bound, optimal_lr
from analysis.bound_schedule import bound_gradient, linear_gap, linear_reference, optimal_bound_schedule
from analysis.random_features import PowerLawModel, best_constant, optimal_schedule
from scripts.figures import bordelon_shapes
from scripts.figures.common import Context, to_jsonable


def _central_differences(lr, G, D, kind, h=1e-6):
    """The gradient of analysis.bound.bound by central differences (relative step h)."""
    out = np.empty(lr.size)
    for j in range(lr.size):
        step = np.zeros(lr.size)
        step[j] = h * lr[j]
        out[j] = (bound(lr + step, G, D, kind) - bound(lr - step, G, D, kind)) / (2 * step[j])
    return out


@pytest.mark.parametrize("kind", ["refined", "standard"])
@pytest.mark.parametrize("G", [1.0, "array"])
def test_gradient_matches_finite_differences(kind, G):
    rng = np.random.default_rng(3)
    lr = rng.uniform(0.05, 1.0, 37)
    lr[-5:] *= 1e-2                         # a schedule that ends low, where term 3 is largest
    G = rng.uniform(0.5, 2.0, lr.size) if G == "array" else G
    numeric = _central_differences(lr, G, 1.7, kind)
    np.testing.assert_allclose(bound_gradient(lr, G, 1.7, kind), numeric, rtol=1e-6, atol=1e-8 * np.abs(numeric).max())


@pytest.mark.parametrize("T", [1, 7, 100])
def test_standard_optimum_is_the_closed_form_constant(T):
    # (D^2 + G^2 sum eta^2) / (2 sum eta) is minimized by eta = D / (G sqrt T), giving D G / sqrt(T)
    D, G = 2.0, 0.5
    best = optimal_bound_schedule(T, G=G, D=D, kind="standard", start=np.linspace(1.0, 0.1, T))
    np.testing.assert_allclose(best.lr, D / (G * np.sqrt(T)), rtol=1e-6)
    assert best.omega == pytest.approx(D * G / np.sqrt(T), rel=1e-12)


def test_single_step_refined_closed_form():
    # T = 1: no term 3, (D^2 + eta^2 G^2) / (2 eta) is minimal at eta = D / G with value D G
    best = optimal_bound_schedule(1, G=3.0, D=0.5)
    assert best.lr[0] == pytest.approx(0.5 / 3.0, rel=1e-7)
    assert best.omega == pytest.approx(1.5, rel=1e-12)


@pytest.mark.parametrize("T", [50, 200])
def test_refined_optimum_beats_tuned_linear_decay_and_is_close_to_it(T):
    best = optimal_bound_schedule(T)
    lin_lr, lin_omega = linear_reference(T)
    assert lin_omega == pytest.approx(optimal_lr(lin_lr / lin_lr.max())[1], rel=1e-12)
    assert best.omega == pytest.approx(bound(best.lr), rel=1e-14)
    # measured: 3.3% (T = 50) and 0.87% (T = 200) below linear decay, i.e. ~1.7/T
    gain = 1.0 - best.omega / lin_omega
    assert 0.5 / T < gain < 3.0 / T
    # the normalized optimum is linear decay within 2.1/T (measured) except its last step, which rises
    gap = linear_gap(best.shape)
    assert gap["max_abs"] < 2.5 / T and gap["rms"] < gap["max_abs"]
    assert gap["last"] > 4.0 / T
    assert np.argmax(best.lr) == 0


def test_refined_optimum_is_stationary_and_start_independent():
    # the bound's own finite differences (not bound_gradient) vanish at the optimum, and a random start
    # reaches the same bound: the minimum is not an artefact of starting at linear decay
    T = 60
    best = optimal_bound_schedule(T)
    fd = _central_differences(best.lr, 1.0, 1.0, "refined")
    assert np.abs(fd).max() < 1e-5 * best.omega / best.lr.mean()
    other = optimal_bound_schedule(T, start=np.random.default_rng(0).uniform(0.01, 1.0, T))
    assert other.omega == pytest.approx(best.omega, rel=1e-9)
    np.testing.assert_allclose(other.lr, best.lr, rtol=1e-3)


def test_linear_gap_of_linear_decay_is_zero():
    gap = linear_gap(1.0 - np.arange(10) / 10)
    assert gap == {"max_abs": 0.0, "rms": 0.0, "last": 0.0}


@pytest.mark.parametrize("call, words", [
    (lambda: optimal_bound_schedule(0), "T=0"),
    (lambda: optimal_bound_schedule(2.5), "integer horizon"),
    (lambda: optimal_bound_schedule(10, kind="tight"), "kind="),
    (lambda: optimal_bound_schedule(10, D=0.0), "D=0.0"),
    (lambda: optimal_bound_schedule(10, G=np.ones(3)), "length 10"),
    (lambda: optimal_bound_schedule(4, start=[1.0, 0.0, 1.0, 1.0]), "start must be 4"),
    (lambda: bound_gradient([1.0, 0.0]), "every step > 0"),
    (lambda: linear_gap([1.0]), ">= 2 steps"),
])
def test_bad_input_names_the_problem(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_bm_shapes_figure_plots_the_modules_optima():
    """Fig. bm_shapes (small): its JSON curves are the modules' optima and the references built here, and
    in its cross table no shape beats a problem's optimum (beyond the random-feature solver's tolerance)."""
    spec = next(spec for spec in bordelon_shapes.FIGURES if spec.name == "bm_shapes")
    fig, numbers = spec.make(Context(small=True))
    data = json.loads(json.dumps(to_jsonable(numbers)))
    s = bordelon_shapes.settings(small=True)
    assert {k: data["settings"][k] for k in s} == s and len(fig.axes) == 3
    curves = data["curves"]
    best = optimal_bound_schedule(s["bound_T"])
    np.testing.assert_allclose(curves["bound"]["multiplier"], best.shape, rtol=1e-12)
    assert curves["bound"]["omega"] == pytest.approx(best.omega, rel=1e-12)
    for phase, b in (("easy", 2.0), ("hard", 5.0)):
        model = PowerLawModel(N=s["N"], a=3.5, b=b, batch=5, sigma=0.5, eta_max=1.0)
        etas, loss = optimal_schedule(model, s["rf_T"], tol=s["tol"])
        np.testing.assert_allclose(curves[f"rf_{phase}"]["multiplier"], etas / etas.max(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(curves[f"rf_{phase}"]["t_over_T"], np.arange(s["rf_T"]) / s["rf_T"])
        assert curves[f"rf_{phase}"]["loss"] == pytest.approx(loss, rel=1e-12)
    T = s["bound_T"]
    n = int(0.2 * (T + 1))                                  # the paper's WSD-0.2 cooldown of n steps
    np.testing.assert_allclose(curves["linear"]["multiplier"], 1.0 - np.arange(T) / T, atol=1e-15)
    np.testing.assert_allclose(curves["wsd"]["multiplier"], np.r_[np.ones(T + 1 - n), 1.0 - np.arange(1, n + 1) / n][:T],
                               atol=1e-12)
    cross = data["cross"]
    assert cross["linear"]["bound"]["value"] == pytest.approx(linear_reference(T)[1], rel=1e-12)
    for problem in ("bound", "rf_easy", "rf_hard"):
        ratios = {name: row[problem]["ratio"] for name, row in cross.items()}
        own = "bound" if problem == "bound" else problem
        assert ratios[own] == pytest.approx(1.0, abs=1e-4)
        assert min(ratios.values()) > 1.0 - 1e-4, ratios


def test_bm_shapes_tuned_peak_of_a_constant_is_the_best_constant():
    # the figure's peak search on a constant shape is analysis.random_features.best_constant's problem
    model = PowerLawModel(N=80, a=3.5, b=2.0, batch=5, sigma=0.5)
    peak, loss = bordelon_shapes.tuned_rf_loss(model, np.ones(150))
    eta, best = best_constant(model, 150)
    assert loss == pytest.approx(best, rel=1e-8) and peak == pytest.approx(eta, rel=1e-3)
