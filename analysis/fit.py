"""Fits: measured loss curves to the bound, and final loss vs peak LR to an empirical optimal LR.

    from analysis.fit import fit_bound, Curve, fit_lr_sweep, optimal_lr_from_sweep
    fit = fit_bound([Curve(steps, val_loss, run.lr()) for run in runs], g_model="exp_power")
    fit.predict(run.lr(), steps)  # C + M * Omega_t at those steps, with the fitted G_t
    fit.r2, fit.rmse
    optimal_lr_from_sweep([1e-4, 5e-4, 1e-3, 2e-3], [3.06, 2.97, 2.96, 2.97])   # -> 9.7e-4

1. Loss curves (docs/theory.md section 4): loss_t ~ C + M * Omega_t, where Omega_t
   is the bound of the run's step sizes truncated at step t (analysis.bound.bound_curve, D = 1) with
   gradient-norm bounds G_t. Omega is linear in (D^2, G_t^2), so with G_t^2 = sum_b c_b phi_b(t) the
   model is linear in (C, M, M c_b): those come from one bounded linear least-squares solve
   (M, c_b >= 0), and only the shape parameters of the basis are searched (variable projection).
   g_model "constant": phi = {1}; "exp_power": phi = {1, exp(-t/tau), t^-alpha}, tau and alpha
   from a small grid refined by scipy.optimize.minimize (Nelder-Mead). Curves of one sweep share
   C, M and the G_t model (same model and data, different schedules or peak LRs).
2. Final loss vs peak LR: L(gamma) = A/gamma + B gamma + C, the bound's own dependence on the peak
   LR (docs/theory.md section 2: Omega = t1/gamma + gamma t23) plus an offset. It is linear in (A, B, C),
   so it is fitted by least squares in the loss, A, B >= 0, without a starting guess; the optimum is
   gamma = sqrt(A/B). The model is symmetric in log(gamma / gamma_opt), so it is the usual
   "parabola in log-LR" shape with the curvature the theory prescribes. LRFit.status says whether
   the optimum is bracketed by the swept LRs, extrapolated within a stated factor, or undetermined
   (then LRFit.next_lrs() are the LRs to run next, on the sweep's own grid).

Tests: python -m pytest tests/test_analysis_fit.py
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import lsq_linear, minimize

from analysis.bound import bound_curve

G_MODELS = ("constant", "exp_power")


@dataclass
class Curve:
    """A measured loss curve: loss at `steps` (updates completed) of a run with step sizes `lr`."""
    steps: np.ndarray
    loss: np.ndarray
    lr: np.ndarray          # step sizes of all T updates of the run (peak LR included)
    label: str = ""

    def __post_init__(self):
        self.steps = np.asarray(self.steps, dtype=np.int64)
        self.loss = np.asarray(self.loss, dtype=np.float64)
        self.lr = np.asarray(self.lr, dtype=np.float64)
        if self.steps.shape != self.loss.shape or self.steps.ndim != 1:
            raise ValueError(f"steps {self.steps.shape} and loss {self.loss.shape} must be 1-D of equal length")
        keep = (self.steps >= 1) & (self.steps <= self.lr.size) & np.isfinite(self.loss)
        self.steps, self.loss = self.steps[keep], self.loss[keep]


def _basis(g_model, theta, t):
    """G_t^2 basis functions at steps t (1-based), each a (len(t),) array."""
    t = np.asarray(t, dtype=np.float64)
    if g_model == "constant":
        return [np.ones_like(t)]
    tau, alpha = theta
    return [np.ones_like(t), np.exp(-t / tau), t ** (-alpha)]


@dataclass
class BoundFit:
    """loss_t = C + M * Omega_t with D = 1 and G_t^2 = sum_b c_b phi_b(t).

    Stored as the linear coefficients of the solve: C, M (on the D-term) and m_b = M c_b (on the
    G-terms); G_t^2 = sum_b m_b phi_b(t) / M (infinite if M = 0: then the D-term is not needed)."""
    C: float
    M: float
    g2_scaled: np.ndarray          # m_b = M c_b
    g_model: str
    theta: tuple                   # (tau, alpha) for exp_power, () for constant
    r2: float
    rmse: float
    curves: list = field(repr=False, default_factory=list)

    def g2(self, t):
        """Fitted G_t^2 at steps t (D = 1)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return sum(m * phi for m, phi in zip(self.g2_scaled, _basis(self.g_model, self.theta, t))) / self.M

    def predict(self, lr, steps):
        """C + M * Omega_t for step sizes `lr` (all T updates) at `steps` (1..T)."""
        curve = Curve(steps, np.zeros(len(steps)), lr)
        coef = np.r_[self.C, self.M, self.g2_scaled]
        X = _columns(curve, self.g_model, self.theta)
        return coef[0] + X @ coef[1:]


def _g_columns(curve, g_model, theta, first=0):
    """Omega at the curve's steps with D = 0 and G_t^2 = phi_b, for the basis functions b >= first."""
    phis = _basis(g_model, theta, np.arange(1, curve.lr.size + 1))[first:]
    return [bound_curve(curve.lr, G=np.sqrt(phi), D=0.0, horizons=curve.steps) for phi in phis]


def _columns(curve, g_model, theta):
    """Design columns of one curve at its steps: Omega with (D=1, G=0), then with (D=0, G^2=phi_b)."""
    d_term = bound_curve(curve.lr, G=0.0, D=1.0, horizons=curve.steps)
    return np.stack([d_term, *_g_columns(curve, g_model, theta)], axis=1)


def _solve(X, y):
    """Bounded linear least squares for (C, M, m_b): loss = C + X @ (M, m_b), M, m_b >= 0."""
    finite = np.all(np.isfinite(X), axis=1)     # a horizon whose own step is 0 has Omega = inf
    X, y = X[finite], y[finite]
    design = np.concatenate([np.ones((len(y), 1)), X], axis=1)
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    lower = np.r_[-np.inf, np.zeros(X.shape[1])]
    sol = lsq_linear(design / scale, y, bounds=(lower, np.full(design.shape[1], np.inf)))
    coef = sol.x / scale
    residual = y - design @ coef
    return coef, float(residual @ residual), y


def default_min_step(horizon: int) -> int:
    """The first step fitted unless told: 1000, or 10% of a shorter run (the first steps' fast drop
    is outside what the bound describes; a 400-step CPU run still keeps 90% of its points)."""
    return int(max(1, min(1000, horizon // 10)))


def fit_bound(curves, g_model="constant", min_step=1) -> BoundFit:
    """Fit loss ~ C + M * Omega_t(G_t) jointly to `curves` (a Curve or a list of them).
    min_step=None: default_min_step of the longest curve's horizon."""
    if g_model not in G_MODELS:
        raise ValueError(f"g_model={g_model!r} is not one of {G_MODELS}")
    curves = [curves] if isinstance(curves, Curve) else list(curves)
    if min_step is None:
        min_step = default_min_step(max(c.lr.size for c in curves))
    curves = [Curve(c.steps[c.steps >= min_step], c.loss[c.steps >= min_step], c.lr, c.label) for c in curves]
    y = np.concatenate([c.loss for c in curves])
    if y.size < 4:
        raise ValueError(f"fewer than 4 finite loss points at steps >= {min_step}; give more points "
                         "or fit from an earlier step")
    # Columns that do not depend on the basis parameters are computed once.
    fixed = np.concatenate([_columns(c, "constant", ()) for c in curves])
    theta = ()
    if g_model == "exp_power":
        T = max(c.lr.size for c in curves)

        def design(th):   # the fixed columns, then those of the basis functions after the constant
            extra = [np.stack(_g_columns(c, g_model, th, first=1), axis=1) for c in curves]
            return np.concatenate([fixed, np.concatenate(extra)], axis=1)

        def sse(x):   # x = (log tau, alpha)
            return _solve(design((np.exp(x[0]), x[1])), y)[1]

        # A coarse grid over the timescale tau (steps) and the power alpha, then Nelder-Mead.
        grid = [(np.log(tau), alpha) for tau in np.geomspace(T / 300, T, 4) for alpha in (0.25, 0.75, 1.5)]
        x0 = min(grid, key=sse)
        res = minimize(sse, x0=np.array(x0), method="Nelder-Mead",
                       options={"maxfev": 40, "xatol": 1e-3, "fatol": 1e-12 * max(float(y @ y), 1.0)})
        best = res.x if res.fun <= sse(x0) else np.array(x0)
        theta = (float(np.exp(best[0])), float(best[1]))
        X = design(theta)
    else:
        X = fixed
    coef, err, y_fit = _solve(X, y)
    sst = float(((y_fit - y_fit.mean()) ** 2).sum())
    return BoundFit(C=float(coef[0]), M=float(coef[1]), g2_scaled=coef[2:], g_model=g_model, theta=theta,
                    r2=1.0 - err / sst if sst > 0 else np.nan, rmse=float(np.sqrt(err / y_fit.size)),
                    curves=curves)


# ---------------------------------------------------------------------------------------------------
# Final loss vs peak LR.
# ---------------------------------------------------------------------------------------------------
STATUSES = ("bracketed", "extrapolated", "undetermined")


def next_grid_lrs(lrs, side: str, n: int = 2, ceiling: float | None = None) -> list[float]:
    """The next n peak LRs beyond the `side` ("above" or "below") end of the swept `lrs`, on the sweep's
    own grid: steps of its median log-spacing (a factor 2 with one LR). Above, a `ceiling` (the
    smallest LR that diverged) is never reached: the n points then split (edge, ceiling) evenly in log."""
    lrs = np.unique(np.asarray(lrs, dtype=np.float64))
    if side not in ("above", "below") or lrs.size == 0:
        raise ValueError(f"side={side!r} must be 'above' or 'below', lrs non-empty (got {lrs})")
    step = float(np.exp(np.median(np.diff(np.log(lrs))))) if lrs.size > 1 else 2.0
    if side == "below":
        return [float(lrs[0] / step ** k) for k in range(1, n + 1)]
    edge = lrs[-1]
    points = [float(edge * step ** k) for k in range(1, n + 1)]
    if ceiling is not None and np.isfinite(ceiling) and points[-1] >= ceiling:
        points = [float(edge * (ceiling / edge) ** (k / (n + 1))) for k in range(1, n + 1)]
    return points


@dataclass
class LRFit:
    """final loss = A/lr + B lr + C over a sweep, and how far its optimum sqrt(A/B) can be trusted:
    `status` is "bracketed" (inside the swept LRs), "extrapolated" (outside, but within a factor
    `max_extrapolation` of the nearest swept LR, with curvature A, B > 0) or "undetermined"
    (no curvature, e.g. a monotone sweep; further out; or at/above an LR that diverged, `ceiling`)."""
    A: float
    B: float
    C: float
    lrs: np.ndarray
    losses: np.ndarray
    r2: float
    rmse: float
    max_extrapolation: float = 2.0
    ceiling: float = np.inf            # the smallest LR above the sweep whose run diverged

    @property
    def optimal_lr(self) -> float:
        """sqrt(A/B); inf if B = 0 (no upturn at large LR), 0 if A = 0."""
        if self.B <= 0:
            return np.inf
        return float(np.sqrt(self.A / self.B))

    @property
    def optimum_inside(self) -> bool:
        """Whether the optimum lies within the swept LRs (outside it is an extrapolation)."""
        return bool(self.lrs.min() <= self.optimal_lr <= self.lrs.max())

    @property
    def factor_outside(self) -> float:
        """How far the optimum lies outside the swept LRs, as a factor >= 1 (1 inside; inf if none)."""
        opt, low, high = self.optimal_lr, self.lrs.min(), self.lrs.max()
        if not 0 < opt < np.inf:
            return np.inf
        return float(max(opt / high, low / opt, 1.0))

    @property
    def status(self) -> str:
        if not (self.A > 0 and self.B > 0) or self.optimal_lr >= self.ceiling:
            return "undetermined"
        if self.optimum_inside:
            return "bracketed"
        return "extrapolated" if self.factor_outside <= self.max_extrapolation else "undetermined"

    @property
    def open_side(self) -> str | None:
        """Where the sweep must grow to pin the optimum: "above"/"below" the swept LRs, None if bracketed.
        The fit's optimum decides when it has one; else the side of the best measured run."""
        if self.status == "bracketed":
            return None
        opt = self.optimal_lr
        if self.A > 0 and self.B > 0 and not self.lrs.min() <= opt <= self.lrs.max():
            return "above" if opt > self.lrs.max() else "below"
        return "above" if self.B <= 0 or self.lrs[np.argmin(self.losses)] == self.lrs.max() else "below"

    def next_lrs(self, n: int = 2) -> list[float]:
        """The next n LRs of the sweep's own grid on its open side ([] when bracketed)."""
        side = self.open_side
        return [] if side is None else next_grid_lrs(self.lrs, side, n, self.ceiling)

    def predict(self, lr):
        lr = np.asarray(lr, dtype=np.float64)
        return self.A / lr + self.B * lr + self.C


def fit_lr_sweep(lrs, final_losses, max_extrapolation=2.0, ceiling=np.inf) -> LRFit:
    """Least-squares fit of final_loss = A/lr + B*lr + C (A, B >= 0) over a sweep of peak LRs.
    max_extrapolation and ceiling (the smallest LR that diverged) set LRFit.status."""
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(final_losses, dtype=np.float64)
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(f"lrs {lrs.shape} and final_losses {losses.shape} must be 1-D of equal length")
    keep = np.isfinite(losses) & np.isfinite(lrs)
    lrs, losses = lrs[keep], losses[keep]
    if np.any(lrs <= 0):
        raise ValueError(f"peak LRs must be > 0, got {lrs}")
    if not max_extrapolation >= 1:
        raise ValueError(f"max_extrapolation={max_extrapolation} must be >= 1 (a factor beyond the swept LRs)")
    if np.unique(lrs).size < 3:
        raise ValueError(f"need final losses at >= 3 distinct peak LRs to fit A/lr + B*lr + C, got {np.unique(lrs)}")
    ref = np.exp(np.log(lrs).mean())     # work with x = lr / ref ~ 1 for conditioning
    x = lrs / ref
    design = np.stack([1.0 / x, x, np.ones_like(x)], axis=1)
    sol = lsq_linear(design, losses, bounds=([0.0, 0.0, -np.inf], [np.inf, np.inf, np.inf]))
    a, b, c = sol.x
    residual = losses - design @ sol.x
    sse = float(residual @ residual)
    sst = float(((losses - losses.mean()) ** 2).sum())
    return LRFit(A=a * ref, B=b / ref, C=c, lrs=lrs, losses=losses,
                 r2=1.0 - sse / sst if sst > 0 else np.nan, rmse=float(np.sqrt(sse / losses.size)),
                 max_extrapolation=float(max_extrapolation), ceiling=float(ceiling))


def optimal_lr_from_sweep(lrs, final_losses) -> float:
    """The empirical optimal peak LR sqrt(A/B) of the fit final_loss = A/lr + B*lr + C."""
    return fit_lr_sweep(lrs, final_losses).optimal_lr
