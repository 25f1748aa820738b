"""The "bm5" figure (scripts/figures/bordelon_momentum.py, Bordelon & Mori Fig. 5) at its small settings:
it writes PNG + PDF + JSON, and the JSON's numbers agree with independent recomputations (SGD's optimum
from analysis.random_features, the heavy-ball recursion on the stored schedules, a scipy refit of the
exponents) and with the paper's claims (same easy-phase rate, a better hard-phase rate).

    python -m pytest -q tests/test_bordelon_momentum_figure.py -p no:cacheprovider
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import linregress

from analysis.random_features import PowerLawModel, optimal_schedule
from analysis.random_features_momentum import ema_form, momentum_loss
from scripts.figures.bordelon_momentum import FIGURES
from scripts.figures.common import Context, write


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build once (~15-20 s on 2 cores): the written files and the JSON as a reader loads it."""
    out = tmp_path_factory.mktemp("bm5")
    (spec,) = FIGURES
    paths = write(spec, Context(small=True), out)
    return paths, json.loads((out / "bm5.json").read_text())


def _model(numbers, phase):
    p, d = numbers["params"], numbers["phases"][phase]
    return PowerLawModel(N=d["N"], a=p["a"], b=d["b"], batch=p["batch"], sigma=p["sigma"], eta_max=p["eta_max"])


def test_writes_png_pdf_json(built):
    paths, numbers = built
    assert sorted(p.suffix for p in paths) == [".json", ".pdf", ".png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert numbers["figure"] == "bm5"
    assert set(numbers["exponents"]) == {"easy", "hard"}


@pytest.mark.parametrize("phase", ["easy", "hard"])
def test_sgd_curve_is_the_sgd_optimum(built, phase):
    numbers = built[1]
    d, model = numbers["phases"][phase], _model(numbers, phase)
    for T, loss in zip(d["horizons"], d["sgd"]["loss"]):
        etas, ref = optimal_schedule(model, T, tol=numbers["params"]["sgd_tol"])
        assert loss == pytest.approx(ref, rel=1e-9)
        np.testing.assert_allclose(d["sgd"]["etas"][str(T)], etas, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("phase", ["easy", "hard"])
def test_joint_loss_is_its_schedules_loss_and_never_above_sgd(built, phase):
    numbers = built[1]
    d, model, beta_max = numbers["phases"][phase], _model(numbers, phase), numbers["params"]["beta_max"]
    for T, loss, sgd in zip(d["horizons"], d["momentum"]["loss"], d["sgd"]["loss"]):
        etas, betas = np.array(d["momentum"]["etas"][str(T)]), np.array(d["momentum"]["betas"][str(T)])
        assert etas.shape == betas.shape == (T,)
        assert np.all((betas >= 0) & (betas <= beta_max)) and np.all((etas >= 0) & (etas <= model.eta_max))
        assert loss == pytest.approx(momentum_loss(model, etas, betas)[-1], rel=1e-10)
        assert loss <= sgd * (1 + 1e-12)
        eta_ema, beta_ema = ema_form(etas, betas)
        np.testing.assert_allclose(d["momentum"]["eta_ema"][str(T)], eta_ema, rtol=1e-12)
        np.testing.assert_allclose(d["momentum"]["beta_ema"][str(T)], beta_ema, rtol=1e-12, atol=1e-15)


def test_exponents_refit_and_the_papers_claims(built):
    numbers = built[1]
    zeta = {}
    for phase, d in numbers["phases"].items():
        for key in ("sgd", "momentum"):
            fit = linregress(np.log(d["horizons"]), np.log(d[key]["loss"]))
            assert numbers["exponents"][phase][key]["zeta"] == pytest.approx(-fit.slope, abs=1e-9)
            zeta[phase, key] = -fit.slope
    a, b_easy, b_hard = numbers["params"]["a"], numbers["phases"]["easy"]["b"], numbers["phases"]["hard"]["b"]
    assert zeta["easy", "sgd"] == pytest.approx((a - 1) / a, abs=0.03)          # 5/7: SGD's optimal rate
    assert zeta["hard", "sgd"] == pytest.approx((a - 1) / b_hard, abs=0.03)     # 1/2
    assert b_easy < a < b_hard
    assert zeta["easy", "momentum"] == pytest.approx(zeta["easy", "sgd"], abs=0.03)   # (a): the same rate
    assert zeta["hard", "momentum"] > zeta["hard", "sgd"] + 0.05                      # (d): a better rate
