"""`python -m analysis random-features export`: the Bordelon-Mori optimal schedule as a schedule=from_array file.

    python -m analysis random-features export --phase hard --horizon 20000 --out outputs/rf/hard.npy
    python -m analysis random-features export --a 3.5 --b 2 --sigma 0.5 --horizon 20000 --model-horizon 1000 \
        --out outputs/rf/easy.npy
    python train.py schedule=from_array schedule.source=$PWD/outputs/rf/hard.npy trainer.max_steps=20000

The optimal schedule eta*_t of the power-law random-feature model (analysis.random_features,
THEORY.md section 6) is computed at the model's own horizon T_rf (--model-horizon, default
min(T, 3000): the optimum costs O(N T_rf) per sweep) and resampled to the LLM's horizon T
(trainer.max_steps) by linear interpolation in the fraction of the run: LLM update s (0-based)
takes the value at s/T of the curve through (t/T_rf, eta*_t), t = 0..T_rf-1; then normalized to peak 1.
The file holds T multipliers, one per update, as schedules.FromArray reads them (the shape
only: the LLM's peak LR, optimizer.lr, is tuned or transferred like any other schedule's).

--phase picks the paper's figure models: easy (a = 3.5, b = 2: the LR warms up a little, then
decays polynomially) and hard (a = 3.5, b = 5: the LR stays at its cap, then anneals over a short
final window); or give --a and --b. The other model parameters default to the paper's (N = 1000,
batch 5, label noise sigma 0.5, eta_max 1). Tested by tests/test_random_features_cli.py.
"""
from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.random_features import PowerLawModel, optimal_schedule
from analysis.report import say
from data.shards import atomic_path

PHASES = {"easy": {"a": 3.5, "b": 2.0}, "hard": {"a": 3.5, "b": 5.0}}   # Bordelon & Mori Fig. 2
MAX_MODEL_HORIZON = 3000        # default T_rf = min(T, this): at N = 1000, tol 1e-9 the optimum took 5 s
                                # (easy) and 12 s (hard) on this shared 2-core machine


def resample(etas, steps: int) -> np.ndarray:
    """eta* resampled to `steps` updates by linear interpolation in t/T, normalized to peak 1 (after the
    interpolation, so that an interior peak that falls between updates still maps to optimizer.lr)."""
    etas = np.asarray(etas, dtype=np.float64)
    if etas.ndim != 1 or etas.size < 1 or not np.all(np.isfinite(etas)) or etas.max() <= 0:
        raise ValueError(f"etas must be a 1-D schedule with a positive peak, got shape {etas.shape}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps={steps!r} must be an integer >= 1 (the LLM's trainer.max_steps)")
    shape = np.interp(np.arange(steps) / steps, np.arange(etas.size) / etas.size, etas)
    return shape / shape.max()


def model_of(args) -> PowerLawModel:
    """The PowerLawModel of the parsed arguments: --phase or --a/--b, plus N, batch, sigma, eta_max."""
    if args.phase is not None and (args.a is not None or args.b is not None):
        raise ValueError(f"give --phase or --a/--b, not both (--phase {args.phase} sets a and b)")
    if args.phase is None and (args.a is None or args.b is None):
        raise ValueError("give --phase easy|hard, or both --a and --b (e.g. --a 3.5 --b 2)")
    exponents = PHASES[args.phase] if args.phase else {"a": args.a, "b": args.b}
    return PowerLawModel(N=args.N, batch=args.batch, sigma=args.sigma, eta_max=args.eta_max, **exponents)


def _model_horizon(args) -> int:
    if args.horizon < 1:
        raise ValueError(f"--horizon {args.horizon} must be >= 1: the LLM's number of updates (trainer.max_steps)")
    T_rf = args.model_horizon if args.model_horizon is not None else min(args.horizon, MAX_MODEL_HORIZON)
    if T_rf < 1:
        raise ValueError(f"--model-horizon {T_rf} must be >= 1 (default min(--horizon, {MAX_MODEL_HORIZON}))")
    return T_rf


def plot_export(path, etas, shape, words) -> Path:
    """The optimum at the model's horizon (normalized) and the exported multipliers, against t/T."""
    fig = Figure(figsize=(6.2, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(etas.size) / etas.size, etas / etas.max(), color="tab:blue", lw=2.5, alpha=0.5,
            label=f"random-feature optimum, T_rf = {etas.size:,} (peak {etas.max():.3g})")
    ax.plot(np.arange(shape.size) / shape.size, shape, color="black", lw=0.9,
            label=f"exported multipliers, T = {shape.size:,}")
    ax.plot([0, 1], [1, 0], color="0.5", ls="--", lw=0.8, label="linear decay")
    ax.set(xlabel="fraction of the run t/T", ylabel="multiplier of the peak LR", ylim=(0, 1.05))
    ax.set_title(words, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=150)
    return Path(path)


# --- `python -m analysis random-features export` ----------------------------------------------------------------
def add_parser(commands) -> None:
    """The `random-features` command (subcommand `export`) on the parser of analysis/cli.py."""
    group = commands.add_parser("random-features", help="the Bordelon-Mori random-feature model's schedules")
    modes = group.add_subparsers(dest="rf_mode", required=True, metavar="MODE")
    p = modes.add_parser("export", help="its optimal schedule as a schedule=from_array file for the LLM",
                         description="\n\n".join(__doc__.split("\n\n")[2:]),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", choices=list(PHASES), default=None,
                   help="easy: a = 3.5, b = 2; hard: a = 3.5, b = 5 (the paper's Fig. 2); or give --a and --b")
    p.add_argument("--a", type=float, default=None, help="initial loss exponent, ell_k(0) = k^-a (> 1)")
    p.add_argument("--b", type=float, default=None, help="spectrum exponent, lambda_k = k^-b (> 1; b < a: easy)")
    p.add_argument("--N", type=int, default=1000, help="number of features (default 1000)")
    p.add_argument("--batch", type=int, default=5, help="batch size m (default 5)")
    p.add_argument("--sigma", type=float, default=0.5, help="label-noise std (default 0.5, the paper's)")
    p.add_argument("--eta-max", type=float, default=1.0, help="LR cap of the model (default 1)")
    p.add_argument("--horizon", type=int, required=True, help="the LLM's horizon T (trainer.max_steps)")
    p.add_argument("--model-horizon", type=int, default=None,
                   help=f"the model's horizon T_rf for the optimum (default min(T, {MAX_MODEL_HORIZON}))")
    p.add_argument("--tol", type=float, default=1e-9,
                   help="stop the optimal-control sweeps when the schedule moves less than this x eta_max "
                        "(default 1e-9; they also stop once L(T) stops falling)")
    p.add_argument("--out", required=True, help="the .npy to write (a .png of the shape goes beside it)")
    p.set_defaults(func=main)


def main(args) -> np.ndarray:
    """Compute, write and describe the exported multipliers; SystemExit with the problem on bad input."""
    out = Path(args.out)
    try:
        model = model_of(args)
        T_rf = _model_horizon(args)
        if out.suffix != ".npy":
            raise ValueError(f"--out {out} must end in .npy (schedules.FromArray reads .npy and .csv)")
        start = time.perf_counter()
        etas, loss = optimal_schedule(model, T_rf, tol=args.tol)
        seconds = time.perf_counter() - start
        shape = resample(etas, args.horizon)
    except ValueError as error:
        raise SystemExit(f"random-features export: {error}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:        # a file object: np.save adds no suffix
        np.save(f, shape)
    phase = "easy" if model.b < model.a else "hard" if model.b > model.a else "boundary (b = a)"
    words = (f"{phase} phase: a = {model.a:g}, b = {model.b:g}, N = {model.N:,}, batch {model.batch}, "
             f"sigma = {model.sigma:g}, eta_max = {model.eta_max:g}")
    T = args.horizon
    L0 = float(model.ell0.sum())                                # L(0) = sum_k k^-a over the N modes
    say(f"optimal schedule of the random-feature model ({words}) at T_rf = {T_rf:,}: "
        f"excess loss {L0:.4g} -> {loss:.4g} ({seconds:.1f} s); peak eta {etas.max():.4g} at t/T = "
        f"{np.argmax(etas) / T_rf:.3f}, last eta {etas[-1]:.3g}")
    peak = int(np.argmax(shape))
    below = np.flatnonzero(shape[peak:] < 0.5)                 # where the anneal passes half the peak
    half = f"half the peak from step {peak + below[0]:,} ({(peak + below[0]) / T:.3f} T)" if below.size else \
        "never below half the peak"
    say(f"exported {T:,} multipliers (peak 1 at step {peak:,}, {shape[0]:.3f} at step 0, {shape[T // 2]:.3f} at "
        f"T/2 (linear decay: 0.5), {half}, {shape[-1]:.3g} at the last step) to {out}")
    overrides = ["schedule=from_array", f"schedule.source={shlex.quote(str(out.resolve()))}",
                 f"trainer.max_steps={T}"]
    print("Hydra overrides (python train.py ...; the shape only: tune or transfer optimizer.lr as for any schedule):")
    print("  " + " ".join(overrides))
    say(f"plot: {plot_export(out.with_suffix('.png'), etas, shape, words)}")
    return shape
