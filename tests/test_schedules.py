"""Tests of schedules/: closed forms, the paper runs' logged LRs, torch's OneCycleLR, REX's published
values (input validation, configs and the plot CLI: tests/test_schedule_configs.py).

    python -m pytest tests/test_schedules.py -q      (a few seconds)
"""
import math

import numpy as np
import pytest

import schedules

T, W = 200, 10

# One instance of every schedule with non-default settings, for the generic properties.
# value_at_warmup_end: whether the post-warmup shape starts at the peak (continuity at step W).
FACTORIES = {
    "constant": (lambda: schedules.Constant(T, W, warmup_start=0.1), True),
    "linear": (lambda: schedules.Linear(T, W, final_fraction=0.05), True),
    "cosine": (lambda: schedules.Cosine(T, W, final_fraction=0.1), True),
    "cosine_paper": (lambda: schedules.CosinePaper(T, W, final_fraction=0.1), False),
    "cyclic_cosine": (lambda: schedules.CyclicCosine(T, W, cycle_factor=0.7), True),
    "wsd": (lambda: schedules.WSD(T, W, cooldown_fraction=0.3), True),
    "wsd_sqrt": (lambda: schedules.WSD(T, W, cooldown_fraction=0.2, cooldown_kind="1-sqrt", final_fraction=0.01), True),
    "wsd_cosine": (lambda: schedules.WSD(T, W, cooldown_fraction=0.5, cooldown_kind="cosine"), True),
    "wsd_steps": (lambda: schedules.WSD(T, W, cooldown_fraction=None, cooldown_steps=37), True),
    "two_stage_wsd": (lambda: schedules.TwoStageWSD(T, W, drop_step=80, transition_steps=15, rho=0.4), True),
    "inverse_sqrt": (lambda: schedules.InverseSqrt(T, W, cooldown_fraction=0.2, cooldown_kind="1-sqrt"), True),
    "polynomial": (lambda: schedules.Polynomial(T, W, power=3.0, final_fraction=0.02), True),
    "step": (lambda: schedules.StepDecay(T, W, milestones=[0.25, 0.5], factor=0.3), True),
    "exponential": (lambda: schedules.Exponential(T, W, final_fraction=0.001), True),
    "onecycle": (lambda: schedules.OneCycle(T), False),
    "rex": (lambda: schedules.REX(T, W, beta=0.9, update_every=7), True),
    "piecewise_linear": (lambda: schedules.PiecewiseLinear(T, W, points=[[0.1, 1.0], [0.5, 0.5], [1.0, 0.1]]), True),
    "from_array": (lambda: schedules.FromArray(T, W, source=[1.0, 1.0, 0.8, 0.9, 0.2, 0.0]), False),
}


@pytest.fixture(params=sorted(FACTORIES), ids=sorted(FACTORIES))
def any_schedule(request):
    return FACTORIES[request.param][0]()


# ---------------------------------------------------------------- generic properties

def test_scalar_in_scalar_out_and_shapes(any_schedule):
    s = any_schedule
    for step in (0, 3, T - 1, np.int64(5)):
        assert type(s(step)) is float
    grid = np.arange(12).reshape(3, 4)
    out = s(grid)
    assert out.shape == (3, 4) and out.dtype == np.float64
    m = s.multipliers()
    assert m.shape == (s.total_steps,) and m.dtype == np.float64
    np.testing.assert_array_equal(m, s(np.arange(s.total_steps)))


def test_vectorized_equals_scalar_loop(any_schedule):
    steps = np.arange(T + 5)
    loop = np.array([any_schedule(int(k)) for k in steps])
    np.testing.assert_array_equal(any_schedule(steps), loop)


def test_clamped_past_the_horizon(any_schedule):
    end = any_schedule(T)
    for k in (T + 1, T + 17, 10**9):
        assert any_schedule(k) == end
    np.testing.assert_array_equal(any_schedule(np.array([T, T + 3, 5 * T])), end)


def test_in_unit_interval_and_peak_reached(any_schedule):
    m = any_schedule.multipliers()
    assert np.all(m >= 0) and np.all(m <= 1 + 1e-12)
    assert np.isclose(m.max(), 1.0)


@pytest.mark.parametrize("name", [n for n, (_, cont) in FACTORIES.items() if cont])
def test_linear_warmup_convention(name):
    """Steps 0..W-1: warmup_start + (1 - warmup_start) s / W; step W is the post-warmup peak (continuity)."""
    s = FACTORIES[name][0]()
    k = np.arange(W)
    np.testing.assert_allclose(s(k), s.warmup_start + (1 - s.warmup_start) * k / W, rtol=0, atol=1e-15)
    assert s(W) == 1.0


def test_negative_steps_raise(any_schedule):
    with pytest.raises(ValueError, match=r"steps must be >= 0"):
        any_schedule(-1)
    with pytest.raises(ValueError, match=r"steps must be integers"):
        any_schedule(np.array(["a"]))


# ---------------------------------------------------------------- closed forms

def test_constant_linear_cosine_closed_forms():
    T_, W_ = 50, 5
    p = lambda s: (s - W_) / (T_ - W_)
    post = np.arange(W_, T_ + 1)
    assert np.all(schedules.Constant(T_, W_)(post) == 1.0)
    np.testing.assert_allclose(schedules.Linear(T_, W_, final_fraction=0.2)(post),
                               [0.2 + 0.8 * (1 - p(s)) for s in post], rtol=1e-14)
    np.testing.assert_allclose(schedules.Cosine(T_, W_, final_fraction=0.1)(post),
                               [0.1 + 0.9 * (1 + math.cos(math.pi * p(s))) / 2 for s in post], rtol=1e-14)
    # the decay reaches its final value at step T, just after the last update
    assert schedules.Linear(T_, 0)(T_ - 1) == pytest.approx(1 / T_)
    assert schedules.Linear(T_, 0)(T_) == 0.0


@pytest.mark.parametrize("kind, g", [("linear", lambda u: 1 - u), ("1-sqrt", lambda u: 1 - math.sqrt(u)),
                                     ("cosine", lambda u: (1 + math.cos(math.pi * u)) / 2)])
def test_wsd_cooldown_starts_at_T_minus_floor_cT(kind, g):
    T_, c, f = 1000, 0.2, 0.05
    s = schedules.WSD(T_, 10, cooldown_fraction=c, cooldown_kind=kind, final_fraction=f)
    n = 200
    assert s.cooldown_start == T_ - n == 800
    assert np.all(s(np.arange(10, 801)) == 1.0)  # the peak through the first cooldown step
    assert s(801) < 1.0
    for k in (1, 50, 199):
        assert s(800 + k) == pytest.approx(f + (1 - f) * g(k / n), rel=1e-13)
    assert s(T_) == f
    assert np.all(np.diff(s(np.arange(800, T_ + 1))) < 0)  # strictly decreasing cooldown


def test_cooldown_in_steps():
    # WSD, TwoStageWSD and InverseSqrt: cooldown_steps = n is the cooldown of floor(c T) = n steps
    for make in (lambda **c: schedules.WSD(1000, 10, final_fraction=0.05, **c),
                 lambda **c: schedules.TwoStageWSD(1000, 10, drop_step=300, rho=0.4, final_fraction=0.05, **c),
                 lambda **c: schedules.InverseSqrt(1000, 10, final_fraction=0.05, **c)):
        by_steps, by_fraction = make(cooldown_fraction=None, cooldown_steps=290), make(cooldown_fraction=0.29)
        np.testing.assert_array_equal(by_steps(np.arange(1003)), by_fraction(np.arange(1003)))
        assert (by_steps.cooldown_start, by_steps.cooldown_length) == (710, 290) == (by_fraction.cooldown_start,
                                                                                     by_fraction.cooldown_length)
        rebuilt = eval("schedules." + repr(by_steps))   # the attributes are the arguments as given
        assert rebuilt.cooldown_fraction is None and rebuilt.cooldown_steps == 290
    s = schedules.WSD(1000, 10, cooldown_fraction=None, cooldown_steps=333, final_fraction=0.05)  # 333 != floor(c T)
    assert s.cooldown_start == 667 and s(667) == 1.0 and s(1000) == 0.05
    np.testing.assert_allclose(s(667 + np.arange(334)), 0.05 + 0.95 * (1 - np.arange(334) / 333), rtol=1e-14)


def test_wsd_cooldown_length_is_robust_to_float_rounding():
    assert 0.29 * 100 < 29  # float rounding would give floor = 28
    assert schedules.WSD(100, 0, cooldown_fraction=0.29).cooldown_start == 71
    s = schedules.WSD(100, 0, cooldown_fraction=0.0, final_fraction=0.1)
    assert np.all(s.multipliers() == 1.0) and s(100) == 0.1


# The paper's logged LRs, (iter, train_lr) pairs at peak lr 1e-3, warmup 300.
# Data from fabian-sp/lr-scheduling (folder data/), MIT License, (c) 2025 Fabian Schaipp, Alexander Hägele.
PAPER_WSD_WARMUP = [(50, 0.000175), (100, 0.00033999999999999997), (250, 0.0008350000000000001), (300, 0.001),
                    (350, 0.001), (25000, 0.001), (49950, 0.001), (50000, 0)]  # stable-124m, T = 50000, c = 0
PAPER_WSD_LINEAR = [(20050, 0.00099), (20100, 0.00098), (22500, 0.0005), (24950, 1.000000000000001e-05),
                    (25000, 0)]  # ann124-0.2, T = 25000, linear cooldown 0.2
PAPER_WSD_SQRT = [(20050, 0.0009000000000000001), (20100, 0.0008585786437626905), (21250, 0.0005),
                  (24950, 5.012562893380035e-06), (25000, 0)]  # ann124-0.2, T = 25000, 1-sqrt cooldown 0.2
PAPER_COS = [(10, 1.2729813612505445e-05), (100, 0.00025900290399396143), (290, 0.000997788464377272),
             (300, 0.0009999999953791494), (310, 0.0009999994408772068), (5000, 0.0009016862689351073),
             (11000, 0.0005667631282321798), (22220, 0.0001000000046208505)]  # cos-210m, T = 22222, to lr/10


@pytest.mark.parametrize("schedule, log", [
    (schedules.WSD(50000, 300, warmup_start=0.01, cooldown_fraction=0.0), PAPER_WSD_WARMUP),
    (schedules.WSD(25000, 300, warmup_start=0.01, cooldown_fraction=0.2), PAPER_WSD_LINEAR),
    (schedules.WSD(25000, 300, warmup_start=0.01, cooldown_fraction=0.2, cooldown_kind="1-sqrt"), PAPER_WSD_SQRT),
    (schedules.CosinePaper(22222, 300, warmup_start=0.01, final_fraction=0.1), PAPER_COS),
], ids=["wsd_warmup", "wsd_linear", "wsd_sqrt", "cosine_paper"])
def test_matches_the_paper_runs_logged_lr(schedule, log):
    steps, lrs = np.array(log).T
    np.testing.assert_allclose(1e-3 * schedule(steps.astype(int)), lrs, rtol=1e-12, atol=1e-18)


def _torch_onecycle_lrs(total_steps, **kwargs):
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total_steps, cycle_momentum=False,
                                                **kwargs)
    lrs = []
    for _ in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


@pytest.mark.parametrize("total_steps, anneal", [(100, "cos"), (333, "cos"), (257, "linear")])
def test_onecycle_matches_torch(total_steps, anneal):
    ours = schedules.OneCycle(total_steps, anneal_strategy=anneal).multipliers()
    np.testing.assert_allclose(ours, _torch_onecycle_lrs(total_steps, anneal_strategy=anneal), rtol=1e-12, atol=1e-15)


def test_onecycle_defaults_and_cosine_paper_is_torch_onecycle():
    s = schedules.OneCycle(1000)
    assert s(0) == pytest.approx(1 / 25) and s(299) == 1.0 and s(999) == pytest.approx(1 / (25 * 1e4))
    ref = _torch_onecycle_lrs(500, pct_start=40 / 500, div_factor=100.0, final_div_factor=0.1)
    np.testing.assert_allclose(schedules.CosinePaper(500, 40).multipliers(), ref, rtol=1e-12)


def test_two_stage_wsd_against_naive_piecewise():
    T_, W_, d, L, rho, c = 400, 20, 150, 30, 0.4, 0.25

    def naive(s):
        if s < W_:
            return s / W_
        n = math.floor(c * T_)
        if s >= T_ - n:
            return rho * (1 - min(s - (T_ - n), n) / n)
        return 1 + (rho - 1) * min(max((s - d) / L, 0), 1)

    s = schedules.TwoStageWSD(T_, W_, drop_step=d, transition_steps=L, rho=rho, cooldown_fraction=c)
    np.testing.assert_allclose(s(np.arange(T_ + 3)), [naive(k) for k in range(T_ + 3)], rtol=1e-14, atol=1e-15)
    # drop_fraction = drop_step / T; no transition is a sudden drop at the drop step
    sudden = schedules.TwoStageWSD(T_, W_, drop_fraction=d / T_, rho=rho, cooldown_fraction=c)
    assert sudden(d - 1) == 1.0 and sudden(d) == rho and sudden(T_ - 100) == rho and sudden(T_) == 0.0


def test_inverse_sqrt_closed_form_and_cooldown():
    s = schedules.InverseSqrt(1000, 100)
    post = np.arange(100, 1001)
    np.testing.assert_allclose(s(post), np.sqrt(100 / post), rtol=1e-14)  # sqrt(W / s)
    cool = schedules.InverseSqrt(1000, 100, cooldown_fraction=0.2, final_fraction=0.01)
    np.testing.assert_array_equal(cool(np.arange(801)), s(np.arange(801)))  # same until the cooldown starts
    level = math.sqrt(100 / 800)
    assert cool(900) == pytest.approx(0.01 + (level - 0.01) * 0.5) and cool(1000) == 0.01
    assert schedules.InverseSqrt(100, 0, timescale=4)(12) == pytest.approx(math.sqrt(4 / 16))


def test_polynomial_and_exponential():
    post = np.arange(10, 201)
    np.testing.assert_allclose(schedules.Polynomial(200, 10, power=1.0).multipliers(),
                               schedules.Linear(200, 10).multipliers(), rtol=1e-14)
    np.testing.assert_allclose(schedules.Polynomial(200, 10, power=2.0, final_fraction=0.1)(post),
                               0.1 + 0.9 * (1 - (post - 10) / 190) ** 2, rtol=1e-14)
    e = schedules.Exponential(200, 10, final_fraction=1e-3)
    ratios = e(post[1:]) / e(post[:-1])
    np.testing.assert_allclose(ratios, 1e-3 ** (1 / 190), rtol=1e-12)  # constant decay rate ...
    assert e(200) == pytest.approx(1e-3, rel=1e-14)  # ... set to reach the final fraction at T


def test_step_decay_values():
    s = schedules.StepDecay(100, 0, milestones=[0.3, 0.6, 0.9], factor=0.1)
    expected = {0: 1.0, 29: 1.0, 30: 0.1, 59: 0.1, 60: 0.01, 89: 0.01, 90: 1e-3, 99: 1e-3, 100: 1e-3}
    for step, value in expected.items():
        assert s(step) == pytest.approx(value, rel=1e-12)


def test_rex_published_values_and_properties():
    s = schedules.REX(100)  # no warmup: step s uses f(s / T)
    published = {0: 1.0, 25: 0.8571, 50: 0.6667, 75: 0.4, 90: 0.1818, 100: 0.0}  # f(z) at z = s / 100
    for step, value in published.items():
        assert s(step) == pytest.approx(value, abs=5e-5)
    z = np.arange(101) / 100
    assert np.all(s(np.arange(101)) >= 1 - z - 1e-15)  # f(z) >= 1 - z
    fine = schedules.REX(200_000).multipliers()
    assert fine.mean() == pytest.approx(2 * (1 - math.log(2)), abs=1e-5)  # integral of f over [0, 1]
    np.testing.assert_allclose(schedules.REX(100, 10, beta=0.0).multipliers(),
                               schedules.Linear(100, 10).multipliers(), rtol=1e-14)


def test_rex_sampling_rate_holds_the_lr_between_refreshes():
    every, dense = schedules.REX(100, 10, update_every=10), schedules.REX(100, 10)
    m, d = every.multipliers(), dense.multipliers()
    for start in range(10, 100, 10):
        assert np.all(m[start:start + 10] == d[start])  # refreshed at W + 10 k, held for 10 steps
    assert every(100) == 0.0


def test_cyclic_cosine_cycle_lengths():
    f = 0.1
    np.testing.assert_allclose(schedules.CyclicCosine(100, 5, cycle_factor=1.0, final_fraction=f).multipliers(),
                               schedules.Cosine(100, 5, final_fraction=f).multipliers(), rtol=1e-14)
    long = schedules.CyclicCosine(100, 0, cycle_factor=1.5, final_fraction=f)
    assert long(100) == pytest.approx(f + (1 - f) * (1 + math.cos(math.pi / 1.5)) / 2)  # never reaches f
    short = schedules.CyclicCosine(100, 0, cycle_factor=0.5, final_fraction=f)
    assert short(50) == pytest.approx(f) and short(100) == pytest.approx(1.0)  # down and back up


def test_piecewise_linear_fractions_and_steps():
    frac = schedules.PiecewiseLinear(100, 0, points=[[0.2, 1.0], [0.6, 0.5], [1.0, 0.0]])
    steps = schedules.PiecewiseLinear(100, 0, points=[[20, 1.0], [60, 0.5], [100, 0.0]], x_units="step")
    np.testing.assert_allclose(frac.multipliers(), steps.multipliers(), rtol=1e-14)
    assert frac(0) == 1.0 and frac(20) == 1.0 and frac(40) == pytest.approx(0.75) and frac(80) == pytest.approx(0.25)


def test_from_array_files_and_resampling(tmp_path):
    ref = schedules.WSD(300, 10, cooldown_fraction=0.3)
    np.save(tmp_path / "m.npy", ref.multipliers())
    np.testing.assert_array_equal(schedules.FromArray(300, source=str(tmp_path / "m.npy")).multipliers(),
                                  ref.multipliers())  # length T: used as is
    (tmp_path / "m.csv").write_text("step,multiplier\n0,1.0\n1,0.5\n2,0.25\n")
    csv = schedules.FromArray(3, source=str(tmp_path / "m.csv"))
    np.testing.assert_array_equal(csv.multipliers(), [1.0, 0.5, 0.25])
    assert csv(3) == 0.25 and csv(50) == 0.25  # past the end: the last entry
    resampled = schedules.FromArray(11, source=[1.0, 0.0])  # first/last entry on steps 0 and T - 1
    np.testing.assert_allclose(resampled.multipliers(), np.linspace(1.0, 0.0, 11), rtol=1e-14, atol=1e-16)
    shrunk = schedules.FromArray(3, source=[0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(shrunk.multipliers(), [0.0, 2.0, 4.0])
