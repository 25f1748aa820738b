"""Schedules refined from the gradient norms of a previous run (Defazio, Cutkosky, Mehta, Mishchenko).

    from analysis.refine import refine_schedule
    shape = refine_schedule(run.grad_norms["l1"], steps=5000, optimizer="adam")   # 5000 multipliers, peak 1, last 0

    python -m analysis refine outputs/runs/<run> [--optimizer adam|sgd] [--steps T] [--norm l1|l2]
                              [--filter-width F] [--out FILE.npy]

The refinement (Defazio et al., "When, why and how much?", 2023) turns a per-update norm sequence n_1..n_L into a
shape: clean it (drop non-finite values, then the first and last `trim`), resample it to `grid` points
by linear interpolation, smooth it with a median filter, weight w_t = n_t^-2 (SGD: the l2 norm) or
n_t^-1 (Adam: the l1 norm), and set s_t = w_t * sum_{p>t} w_p, normalized to peak 1 and resampled to
the new run's `steps`. Constant norms give linear decay; large early norms give a warmup.

Median filter convention: `filter_width` is a FRACTION OF THE RUN; the window is that fraction of the
grid rounded to an odd number of points (0.1 of 10,000 -> 1001, the paper's choice; 0 -> no smoothing).
The end of the run is padded by reflection, so that the last points are not pulled toward an edge value;
the start repeats its first value (scipy's 'nearest'), which keeps a monotone start exactly as it is.

The command writes the multipliers (.npy, one per update: schedules.FromArray reads them), prints the
`python train.py schedule=from_array ...` overrides, and plots the refined schedule against the source
run's (its logged lr / peak LR) beside the source's raw and smoothed norms. Exit status 1 when the run
has no usable norms. Tested by tests/test_refine.py.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure
from scipy.ndimage import median_filter

from analysis.plots import category_colors
from analysis.report import note, say
from analysis.runs import load
from data.shards import atomic_path
from training.rundir import HYDRA_DIR

WEIGHT_POWER = {"sgd": 2.0, "adam": 1.0}    # w_t = n_t^-power (the optimizers the analysis covers)
DEFAULT_NORM = {"sgd": "l2", "adam": "l1"}  # the norm each weight is derived for


def filter_points(filter_width: float, grid: int) -> int:
    """The median window in grid points: filter_width x grid rounded, made odd (at least 1)."""
    if isinstance(filter_width, bool) or not isinstance(filter_width, (int, float, np.number)) \
            or not 0.0 <= filter_width < 1.0:
        raise ValueError(f"filter_width={filter_width!r} must be a fraction of the run in [0, 1), "
                         "e.g. 0.1 (the paper's: 10% of the run); 0 turns the smoothing off")
    points = int(round(filter_width * grid))
    return max(points + (points % 2 == 0), 1)


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def clean_norms(norms, trim: int = 2) -> np.ndarray:
    """The finite norms (float64) without the first and last `trim` of them: logs often end in a
    partial or repeated value. Negative values, all zeros or too few points raise a ValueError."""
    trim = _count(trim, "trim", 0)
    values = np.asarray(norms, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"norms must be one value per update (1-D), got shape {values.shape}")
    finite = values[np.isfinite(values)]
    if (finite < 0).any():
        first = int(np.flatnonzero(np.isfinite(values) & (values < 0))[0])
        raise ValueError(f"norms has {int((finite < 0).sum())} negative values (the first at index {first}); a "
                         "gradient norm is >= 0: pass the logged norms themselves, not their logarithms or differences")
    kept = finite[trim:finite.size - trim]
    if kept.size < 2:
        raise ValueError(f"norms has {finite.size} finite values of {values.size}; after dropping the first and last "
                         f"trim={trim} at least 2 must remain: log the norms of more updates "
                         "(trainer.log_grad_norms=true) or lower trim")
    if not (kept > 0).any():
        raise ValueError(f"all {kept.size} norms kept are 0: a gradient that is 0 throughout gives no schedule; "
                         "check that the norms come from a run that trained")
    return kept


def smooth_norms(norms, filter_width: float = 0.1, grid: int = 10_000, trim: int = 2) -> np.ndarray:
    """The cleaned norms resampled to `grid` points (linear interpolation) and median-filtered, the end
    of the run padded by reflection (module docstring). float64, length `grid`."""
    grid = _count(grid, "grid", 2)
    width = filter_points(filter_width, grid)
    kept = clean_norms(norms, trim)
    resampled = np.interp(np.linspace(0.0, 1.0, grid), np.linspace(0.0, 1.0, kept.size), kept)
    half = width // 2
    padded = np.pad(resampled, (0, half), mode="reflect")
    return median_filter(padded, size=width, mode="nearest")[:grid]


def refine_schedule(norms, steps: int, optimizer: str = "adam", filter_width: float = 0.1, grid: int = 10_000,
                    trim: int = 2) -> np.ndarray:
    """`steps` multipliers in [0, 1], peak 1, last 0, refined from the per-update norms of a previous
    run (l2 norms for optimizer="sgd", l1 norms for "adam"): s_t = w_t sum_{p>t} w_p on the smoothed grid
    (w = n^-2 or n^-1), resampled to `steps` points by linear interpolation (first and last on the
    first and last update, as schedules.FromArray reads them). Norms of any constant scale give the same
    shape, so only their profile over the run matters."""
    if optimizer not in WEIGHT_POWER:
        raise ValueError(f"optimizer={optimizer!r} is unknown; use one of {', '.join(WEIGHT_POWER)} "
                         "(adam for Adam-type optimizers, with l1 norms; sgd with l2 norms)")
    steps = _count(steps, "steps", 2)
    smoothed = smooth_norms(norms, filter_width, grid, trim)
    if (smoothed <= 0).any():
        share = float((smoothed <= 0).mean())
        raise ValueError(f"the smoothed norms are 0 over {share:.1%} of the run, where the weight n^-p is "
                         "infinite: widen filter_width (the median then skips isolated zeros) or drop the zero records")
    # Scale-free weights: dividing by the largest norm first keeps w >= 1 and finite for any scale.
    weights = (smoothed / smoothed.max()) ** -WEIGHT_POWER[optimizer]
    if not np.isfinite(weights).all():
        raise ValueError("the norms span too many orders of magnitude for float64 weights "
                         f"(smallest/largest {smoothed.min() / smoothed.max():.3g}); smooth more (filter_width)")
    after = np.cumsum(weights[::-1])[::-1]                  # after[t] = sum_{p >= t} w_p
    shape = weights * np.append(after[1:], 0.0)            # w_t * sum_{p > t} w_p; 0 at the last point
    resampled = np.interp(np.linspace(0.0, 1.0, steps), np.linspace(0.0, 1.0, grid), shape / shape.max())
    return resampled / resampled.max()


# --- `python -m analysis refine` ------------------------------------------------------------------------------
def add_parser(commands) -> None:
    """The `refine` subcommand on the parser of analysis/cli.py."""
    p = commands.add_parser("refine", help="a schedule refined from a run's gradient norms (Defazio et al.)",
                            description="\n\n".join(__doc__.split("\n\n")[3:]),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="the source run: a run directory or a paper-log .json")
    p.add_argument("--optimizer", choices=list(WEIGHT_POWER), default="adam",
                   help="adam: w = 1/n with l1 norms (default); sgd: w = 1/n^2 with l2 norms")
    p.add_argument("--steps", type=int, default=None, help="horizon T of the new run (default: the source's)")
    p.add_argument("--norm", choices=("l1", "l2"), default=None, help="norm to refine from (default: the optimizer's)")
    p.add_argument("--filter-width", type=float, default=0.1,
                   help="median filter width as a fraction of the run (default 0.1; 0: no smoothing)")
    p.add_argument("--out", default=None, help="the .npy to write (default outputs/refined/<run name>_T<steps>.npy)")
    p.set_defaults(func=cmd_refine)


def _norm_column(run, wanted: str) -> str:
    """`wanted` if the run logged it, else the other norm with a note; SystemExit if it has neither."""
    table = run.grad_norms
    usable = [c for c in ("l1", "l2") if np.isfinite(table[c].to_numpy(np.float64)).sum() >= 2]
    if not usable:
        raise SystemExit(f"refine: {run.source} has no usable gradient norms (found {len(table)} records; a "
                         "refinement needs a norm per update): train with trainer.log_grad_norms=true "
                         "(grad_norms.bin), or give a run or log with a grad_norm column (none of the paper's "
                         "published logs has one)")
    if wanted not in usable:
        note(f"{run.name} has no {wanted} norms; using {usable[0]} instead ({table.attrs.get('origin', '')})")
        return usable[0]
    return wanted


def _source_overrides(run) -> list[str]:
    """The source run's own overrides (a run directory's .hydra/overrides.yaml) that the refined run
    keeps: all but those of the schedule, horizon, warmup, peak LR, branch start and hydra."""
    path = Path(run.source) / HYDRA_DIR / "overrides.yaml"
    replaced = ("trainer.max_steps", "trainer.warmup_steps", "trainer.init_from", "optimizer.lr")
    keys = {str(o): str(o).lstrip("+~").split("=")[0] for o in (yaml.safe_load(path.read_text()) or []
                                                                if path.is_file() else [])}
    return [o for o, key in keys.items() if key.split(".")[0] not in ("schedule", "hydra") and key not in replaced]


def plot_refinement(path, run, shape, steps, values, smoothed, title) -> Path:
    """Left: the refined multipliers and the source's logged lr / peak LR over the fraction of the run.
    Right: the source's raw norms and the smoothed ones that made the shape, by step."""
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    colors = category_colors(3)
    T = len(shape)
    left.plot(np.arange(T) / T, shape, color=colors[0], label=f"refined (T = {T:,})")
    logged = run.metrics.dropna(subset=["lr"]) if "lr" in run.metrics else run.metrics.iloc[:0]
    if len(logged) and run.peak_lr:
        horizon = run.total_steps if run.schedule_config else int(logged["step"].max())
        left.plot((logged["step"] - 1) / horizon, logged["lr"] / run.peak_lr, color=colors[1],
                  label=f"source: logged lr / peak {run.peak_lr:g} (T = {horizon:,})")
    left.plot([0, 1], [1, 0], color="black", linestyle="--", linewidth=0.8, label="linear decay")
    left.set(xlabel="fraction of the run (step / T)", ylabel="multiplier of the peak LR", ylim=(0, 1.05))
    right.plot(steps, values, color=colors[2], alpha=0.35, linewidth=0.6, label="raw")
    right.plot(np.linspace(steps[0], steps[-1], len(smoothed)), smoothed, color="black", label="median-filtered")
    right.set(xlabel="step of the source run", ylabel="gradient norm", yscale="log")
    for ax, name in ((left, "schedules"), (right, "source gradient norms")):
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return Path(path)


def cmd_refine(args) -> np.ndarray:
    try:
        run = load(args.run)
    except ValueError as error:
        raise SystemExit(f"refine: {error}") from None
    column = _norm_column(run, args.norm or DEFAULT_NORM[args.optimizer])
    table = run.grad_norms
    if column != DEFAULT_NORM[args.optimizer]:
        note(f"--optimizer {args.optimizer} is derived for {DEFAULT_NORM[args.optimizer]} norms; "
             f"refining from {column}")
    finite = np.isfinite(table[column].to_numpy(np.float64))
    steps, values = table["step"].to_numpy()[finite], table[column].to_numpy(np.float64)[finite]
    gaps = np.diff(steps)
    say(f"source: {run.name}: {len(values):,} {column} norms over steps {steps[0]:,}-{steps[-1]:,}"
        + ("" if gaps.max(initial=1) == 1 else f" (every {int(np.median(gaps))} steps: interpolated between)")
        + f"; {table.attrs.get('origin', '')}")
    even = values                                  # the refinement takes equally spaced norms: put them so
    if gaps.size and gaps.min() != gaps.max():
        even = np.interp(np.arange(steps[0], steps[-1] + 1, int(np.median(gaps))), steps, values)
    if run.schedule_config and steps[-1] - steps[0] < 0.9 * run.total_steps:
        note(f"the norms cover steps {steps[0]:,}-{steps[-1]:,} of the source's {run.total_steps:,}: the refined "
             "schedule stretches them over the whole new run")
    T = args.steps if args.steps is not None else (run.total_steps if run.schedule_config else None)
    if T is None:
        raise SystemExit(f"refine: {run.source} records no horizon; give --steps")
    try:
        shape = refine_schedule(even, T, args.optimizer, args.filter_width)
        smoothed = smooth_norms(even, args.filter_width)
    except ValueError as error:
        raise SystemExit(f"refine: {run.source}: {error}") from None
    out = Path(args.out or f"outputs/refined/{run.name}_T{T}.npy")
    if out.suffix != ".npy":
        raise SystemExit(f"refine: --out {out} must end in .npy (schedules.FromArray reads .npy and .csv)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:    # a file object: np.save adds no suffix
        np.save(f, shape)
    peak = int(np.argmax(shape))
    say(f"refined ({args.optimizer}, w = n^-{WEIGHT_POWER[args.optimizer]:g}, "
        f"filter {args.filter_width:g} of the run): "
        f"peak at step {peak:,} of {T:,} ({peak / T:.3f} T), multiplier {shape[T // 2]:.3f} at T/2 "
        f"(linear decay: 0.5), written to {out}")
    overrides = ["schedule=from_array", f"schedule.source={shlex.quote(str(out.resolve()))}",
                 f"trainer.max_steps={T}"] + ([f"optimizer.lr={run.peak_lr:g}"] if run.peak_lr else [])
    print("Hydra overrides (python train.py ...; the peak LR is the source's: tune or transfer it like any other):")
    print("  " + " ".join(overrides + _source_overrides(run)))
    title = f"{run.name}: refined from {column} norms ({args.optimizer})"
    say(f"plot: {plot_refinement(out.with_suffix('.png'), run, shape, steps, values, smoothed, title)}")
    return shape
