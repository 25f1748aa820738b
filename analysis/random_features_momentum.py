"""Heavy-ball SGD on the Bordelon & Mori power-law random-feature model: exact mean dynamics and the
jointly optimal (eta_t, beta_t) schedule (issue 13, Fig. 5; THEORY.md section 6).

Convention (velocity form, v_0 = 0, w_0 = 0):
    g_t = (1/m) sum_mu psi_mu (w_t . psi_mu - y_mu),   v_{t+1} = beta_t v_t - eta_t g_t,   w_{t+1} = w_t + v_{t+1}.
With beta_t = 0 this is w_{t+1} = w_t - eta_t g_t, plain SGD, and the recursion below reduces exactly to
analysis.random_features.excess_loss (tested). The effective LR of a long constant run is eta/(1 - beta).

Derivation. Error e = w - w*, features psi ~ N(0, Lambda), Lambda = diag(lambda_k), y = w*.psi + sigma z.
Then g = M e - (sigma/m) sum_mu z_mu psi_mu with M = (1/m) sum_mu psi_mu psi_mu^T drawn fresh at each step
(independent of e, v). Gaussian fourth moments give E[M X M] = Lambda X Lambda + (Lambda X Lambda +
Lambda tr(Lambda X))/m, so the diagonals of the second moments close on themselves (as for SGD):
    E[g_k^2 | .] -> lambda_k^2 x_k + (lambda_k/m) (lambda_k x_k + L + sigma^2),  L = sum_j lambda_j x_j,
    E[g_k e_k] = lambda_k x_k,   E[g_k v_k] = lambda_k y_k,
with x_k = E[e_k^2], y_k = E[e_k v_k], z_k = E[v_k^2]. Expanding v' = beta v - eta g and e' = e + v':
    z' = beta^2 z - 2 beta eta lambda y + eta^2 E[g^2],
    y' = E[e v'] + z' = (beta y - eta lambda x) + z',
    x' = x + 2 E[e v'] + z'.
We carry the lambda-weighted moments X = lambda x (so X_k is mode k's excess loss, X_k(0) = k^-a),
Y = lambda y, Z = lambda z; the multiplicative SGD noise feeds back through L(t) = sum_k X_k(t) and the
label noise through sigma^2, as in the SGD recursion. beta = 0 gives Z' = eta^2 lambda E[g^2],
X' = (1 - eta lambda)^2 X + (eta^2 lambda^2/m)(X + L + sigma^2): the SGD recursion.

Optimum. L(T) is minimized over eta_t in [0, eta_max], beta_t in [0, beta_max] (all 2T values, no
low-dimensional parametrization) by scipy L-BFGS-B on log L(T), started at the SGD optimum
(analysis.random_features.optimal_schedule) with beta = 0, so the result is never worse than SGD's.
The gradient is the adjoint of the recursion (checked against torch float64 autograd in the tests;
autograd's tape costs ~1 ms per step, the adjoint ~0.03 ms at N = 100). The landscape is flat and not convex:
schedules differing visibly (beta jumping between the cap and lower values mid-run) reach L(T) within
~1%, so read the shape, not single steps; at beta_max = 0.999 the cap binds mid-run in the hard phase.
From beta = 0 alone L-BFGS-B stops with beta ~ 0 over the final steps; restarting from there with late
momentum ends lower, with beta rising over the last steps as eta drops (hard phase, N = 100, T = 100,
300 iterations: L(T) = 0.01916 against 0.01929 from the first run and 0.03079 for SGD's optimum).
Stability couples eta and beta (the top mode diverges when eta/(1 - beta) is too large for the
multiplicative noise); the optimizer sees that as a huge loss.

Usage:
    from analysis.random_features import PowerLawModel
    from analysis.random_features_momentum import momentum_loss, optimal_momentum_schedule
    etas, betas, loss_T = optimal_momentum_schedule(PowerLawModel(N=100, a=3.5, b=5.0, sigma=0.5), T=300)
Tests: python -m pytest -q tests/test_random_features_momentum.py -p no:cacheprovider
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from analysis.random_features import PowerLawModel, _as_etas, _check_T, optimal_schedule


def _as_pair(etas, betas):
    """Validated float arrays of equal shape (T,) or (S, T); betas in [0, 1)."""
    etas = _as_etas(etas)
    betas = np.asarray(betas, dtype=float)
    if betas.shape != etas.shape:
        raise ValueError(f"betas has shape {betas.shape}, etas {etas.shape}: pass one momentum per step")
    if not np.all(np.isfinite(betas)) or np.any(betas < 0) or np.any(betas >= 1):
        raise ValueError("betas must be finite and in [0, 1) (beta = 1 never forgets a velocity)")
    return etas, betas


def second_moments(model: PowerLawModel, etas, betas):
    """lambda-weighted per-mode moments (X, Y, Z) = lambda_k (E[e_k^2], E[e_k v_k], E[v_k^2]) at t = 0..T.

    Shapes (T + 1, N) for a schedule of shape (T,), (S, T + 1, N) for (S, T); X.sum(-1) is L(t).
    """
    etas, betas = _as_pair(etas, betas)
    e2, b2 = np.atleast_2d(etas), np.atleast_2d(betas)
    S, T = e2.shape
    lam, m, s2 = model.lambdas, model.batch, model.sigma**2
    X, Y, Z = (np.zeros((S, T + 1, model.N)) for _ in range(3))
    X[:, 0] = model.ell0
    for t in range(T):
        e, b = e2[:, t : t + 1], b2[:, t : t + 1]
        x, y, z = X[:, t], Y[:, t], Z[:, t]
        L = x.sum(axis=1, keepdims=True)
        g2 = lam**2 * x + lam**2 / m * (x + L + s2)          # lambda E[g_k^2]
        ev = b * y - e * lam * x                              # lambda E[e_k v'_k]
        Z[:, t + 1] = b**2 * z - 2 * b * e * lam * y + e**2 * g2
        Y[:, t + 1] = ev + Z[:, t + 1]
        X[:, t + 1] = x + 2 * ev + Z[:, t + 1]
    if etas.ndim == 1:
        return X[0], Y[0], Z[0]
    return X, Y, Z


def momentum_loss(model: PowerLawModel, etas, betas) -> np.ndarray:
    """Excess loss L(t), t = 0..T, of heavy ball: shape (T + 1,) for (T,) schedules, (S, T + 1) for (S, T)."""
    return second_moments(model, etas, betas)[0].sum(axis=-1)


def ema_form(etas, betas):
    """The same run in the EMA convention u' = beta' u + (1 - beta') g, w' = w - eta' u' (returns eta', beta').

    Matching v = -eta' u step by step gives eta'_t = eta_t + beta_t eta'_{t-1} (eta'_{-1} = 0) and
    beta'_t = beta_t eta'_{t-1} / eta'_t: eta' is the total step a gradient receives, and beta' rises
    where eta drops even at a fixed heavy-ball beta (the convention of the paper's Fig. 5e-f is not stated).
    """
    etas, betas = _as_pair(etas, betas)
    eta_ema, beta_ema = np.zeros_like(etas), np.zeros_like(betas)
    prev = np.zeros(etas.shape[:-1])
    for t in range(etas.shape[-1]):
        eta_ema[..., t] = etas[..., t] + betas[..., t] * prev
        with np.errstate(invalid="ignore", divide="ignore"):
            beta_ema[..., t] = np.where(eta_ema[..., t] > 0, betas[..., t] * prev / eta_ema[..., t], 0.0)
        prev = eta_ema[..., t]
    return eta_ema, beta_ema


def simulate_momentum(model: PowerLawModel, etas, betas, seeds: int, rng=None):
    """Direct one-pass heavy-ball SGD on Gaussian features psi ~ N(0, diag lambda), all seeds in parallel.

    Returns {"L", "EV", "VV"}: each a (mean, stderr) pair over seeds of sum_k lambda_k e_k^2 (the excess
    loss), sum_k lambda_k e_k v_k and sum_k lambda_k v_k^2 at t = 0..T.
    """
    etas, betas = _as_pair(etas, betas)
    if etas.ndim != 1:
        raise ValueError("simulate_momentum takes one schedule of shape (T,)")
    if seeds < 2:
        raise ValueError(f"seeds={seeds}: need >= 2 seeds for a standard error")
    rng = np.random.default_rng(rng)
    lam, m = model.lambdas, model.batch
    # teacher with lambda_k (w*_k)^2 = k^-a and random signs; e = w - w* starts at -w*
    e = -np.sqrt(model.ell0 / lam) * rng.choice([-1.0, 1.0], size=(seeds, model.N))
    v = np.zeros_like(e)
    out = {k: np.zeros((seeds, etas.size + 1)) for k in ("L", "EV", "VV")}

    def record(t):
        out["L"][:, t] = (lam * e**2).sum(axis=1)
        out["EV"][:, t] = (lam * e * v).sum(axis=1)
        out["VV"][:, t] = (lam * v**2).sum(axis=1)

    record(0)
    for t, (eta, beta) in enumerate(zip(etas, betas)):
        psi = rng.standard_normal((seeds, m, model.N)) * np.sqrt(lam)
        resid = np.einsum("smn,sn->sm", psi, e) - model.sigma * rng.standard_normal((seeds, m))
        v = beta * v - eta / m * np.einsum("smn,sm->sn", psi, resid)
        e = e + v
        record(t + 1)
    return {k: (a.mean(axis=0), a.std(axis=0, ddof=1) / np.sqrt(seeds)) for k, a in out.items()}


def _value_and_grad(model: PowerLawModel, etas: np.ndarray, betas: np.ndarray):
    """L(T) and its gradient in (etas, betas) by the adjoint (costate) of the recursion: a forward pass
    storing (X, Y, Z), a backward pass for the costates (pX, pY, pZ) = dL(T)/d(X, Y, Z), then the
    gradients from both at once. Tested against torch autograd, whose tape cost ~1 ms per step here;
    this costs a few tens of microseconds (the loops hold only the O(N) state updates)."""
    lam, m, s2, T = model.lambdas, model.batch, model.sigma**2, etas.size
    a1, c = lam**2 * (1 + 1 / m), lam**2 / m          # lambda E[g^2] = a1 X + c (L + sigma^2)
    X, Y, Z = np.empty((T + 1, model.N)), np.zeros((T + 1, model.N)), np.zeros((T + 1, model.N))
    X[0] = model.ell0
    for t in range(T):
        e, b, x, y = etas[t], betas[t], X[t], Y[t]
        ev = b * y - (e * lam) * x
        z = (b * b) * Z[t] - (2 * b * e * lam) * y + (e * e) * (a1 * x + c * (x.sum() + s2))
        Y[t + 1] = ev + z
        X[t + 1] = x + 2 * ev + z
        Z[t + 1] = z
    QZ, QEV = np.empty((T, model.N)), np.empty((T, model.N))   # d L(T) / d (Z', ev) at each step
    pX, pY, pZ = np.ones(model.N), np.zeros(model.N), np.zeros(model.N)
    for t in range(T - 1, -1, -1):
        e, b = etas[t], betas[t]
        qZ = QZ[t] = pX + pY + pZ         # Z' enters Y' and X' with weight 1
        qev = QEV[t] = pY + 2 * pX        # ev enters Y' once and X' twice
        pX, pY, pZ = (pX - (e * lam) * qev + (e * e) * (a1 * qZ + c @ qZ),
                      b * qev - (2 * b * e * lam) * qZ, (b * b) * qZ)
    x, y, z = X[:-1], Y[:-1], Z[:-1]
    G2 = a1 * x + c * (x.sum(axis=1, keepdims=True) + s2)
    LY = lam * y
    g_eta = -(QEV * lam * x).sum(1) + 2 * etas * (QZ * G2).sum(1) - 2 * betas * (QZ * LY).sum(1)
    g_beta = (QEV * y).sum(1) + 2 * betas * (QZ * z).sum(1) - 2 * etas * (QZ * LY).sum(1)
    return float(X[-1].sum()), g_eta, g_beta


def optimal_momentum_schedule(model: PowerLawModel, T: int, beta_max: float = 0.999, start=None, warm=None,
                              tol: float = 1e-12, max_iter: int = 3000):
    """(eta_t, beta_t) minimizing L(T) over eta in [0, eta_max], beta in [0, beta_max]; returns (etas, betas, L(T)).

    start: the SGD schedule to start from (beta = 0); default analysis.random_features.optimal_schedule(model, T).
    tol: L-BFGS-B's relative tolerance on log L(T) changes; max_iter bounds its iterations (per start).
    The landscape is not convex: L-BFGS-B runs from SGD's schedule with beta = 0, then again from its result
    with beta = 0.5 over the last 15% of steps at the same effective LR eta/(1 - beta); the best is returned.
    warm: (etas, betas) of another horizon's optimum, interpolated in t/T as a third start (a long
    horizon's 2T-dimensional problem converges far from a cold start within a few hundred iterations).
    """
    _check_T(T)
    if not 0 <= beta_max < 1:
        raise ValueError(f"beta_max={beta_max!r}: the momentum cap must lie in [0, 1)")
    if start is None:
        start = optimal_schedule(model, T, tol=1e-7)[0]
    start = _as_etas(start)
    if start.shape != (T,) or np.any(start > model.eta_max):
        raise ValueError(f"start must be an SGD schedule of shape ({T},) within [0, eta_max={model.eta_max}]")

    def f(x):  # log L(T): O(1) values and relative gradients whatever the scale of the loss
        with np.errstate(over="ignore", invalid="ignore"):
            loss, g_eta, g_beta = _value_and_grad(model, x[:T], x[T:])
        if not np.isfinite(loss) or loss <= 0:   # diverged (eta/(1-beta) too large): a wall to back off from
            return 1e300, np.zeros_like(x)
        return np.log(loss), np.concatenate([g_eta, g_beta]) / loss

    bounds = [(0.0, model.eta_max)] * T + [(0.0, beta_max)] * T
    x0 = np.concatenate([start, np.zeros(T)])
    late, b_late = min(T, max(2, int(np.ceil(0.15 * T)))), min(0.5, beta_max)

    def lbfgs(x):
        return minimize(f, x, jac=True, method="L-BFGS-B", bounds=bounds,
                        options={"maxiter": max_iter, "maxfun": 2 * max_iter, "ftol": tol, "gtol": 1e-12,
                                 "maxcor": 30}).x

    candidates = [x0, lbfgs(x0)]
    # restart from that result with beta raised to b_late over the last 15% of steps, eta lowered to keep
    # the effective LR eta/(1 - beta): the late-beta ~ 0 point the first run stops at is not the optimum
    x1 = candidates[1].copy()
    eta_end, beta_end = x1[T - late : T], x1[2 * T - late :]
    low = beta_end < b_late
    eta_end[low] *= (1 - b_late) / (1 - beta_end[low])
    beta_end[low] = b_late
    candidates.append(lbfgs(x1))
    if warm is not None:
        w_etas, w_betas = _as_pair(*warm)
        if w_etas.ndim != 1:
            raise ValueError("warm must be one (etas, betas) pair of shape (T',)")
        u, grid = (np.arange(w_etas.size) + 0.5) / w_etas.size, (np.arange(T) + 0.5) / T
        candidates.append(lbfgs(np.concatenate([np.clip(np.interp(grid, u, w_etas), 0, model.eta_max),
                                                np.clip(np.interp(grid, u, w_betas), 0, beta_max)])))
    x = min(candidates, key=lambda c: f(c)[0])  # never worse than the SGD start x0
    etas, betas = x[:T], np.minimum(x[T:], beta_max)
    return etas, betas, float(momentum_loss(model, etas, betas)[-1])
