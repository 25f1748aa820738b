"""User-defined shapes: piecewise-linear through points, and an array of multipliers (file or list).

PiecewiseLinear: points [[x, value], ...] with x a fraction of T (x_units: fraction) or a step
index (x_units: step); linear in between, held constant before the first and after the last
point; the warmup (if any) replaces steps < W as for every schedule.

    schedules.PiecewiseLinear(1000, points=[[0, 1], [0.5, 1], [0.6, 0.3], [1, 0]])

FromArray: the multipliers of a run as a .npy file (1-D float array), a .csv file (one number per
line; a header line is allowed; with several columns the last one is used), or an inline list.
An array of length T is used as is (entry s for step s); otherwise it is resampled by linear
interpolation, entry i of L placed at step i (T - 1)/(L - 1), so first and last entries land on
steps 0 and T - 1. Steps >= T use the last entry. This is how refined schedules (Defazio et al.,
analysis/) are fed to the trainer:

    python train.py schedule=from_array schedule.source=outputs/refined.npy
"""
import os

import numpy as np

from schedules.base import Schedule


def _as_float_array(values, name, example):
    try:
        arr = np.asarray(list(values), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={values!r} is not a list of numbers; use e.g. {example}") from None
    return arr


class PiecewiseLinear(Schedule):
    """Linear interpolation through user points (fractions of T or step indices, values)."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, points=((0.0, 1.0), (1.0, 0.0)),
                 x_units="fraction"):
        super().__init__(total_steps, warmup_steps, warmup_start)
        if x_units not in ("fraction", "step"):
            raise ValueError(f"x_units={x_units!r} is unknown; use 'fraction' (of total_steps) or 'step'")
        try:
            pts = np.array([[float(x), float(v)] for x, v in points], dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            pts = np.empty((0, 2))
        if len(pts) == 0:
            raise ValueError(f"points={_short(points)} must be a non-empty list of [x, value] pairs, "
                             "e.g. [[0.0, 1.0], [1.0, 0.0]]")
        x, v = pts[:, 0], pts[:, 1]
        if np.any(np.diff(x) <= 0):
            raise ValueError(f"points x={x.tolist()} must be strictly increasing; for a jump use two close points")
        if not np.all(np.isfinite(pts)) or np.any(v < 0):
            raise ValueError(f"point values {v.tolist()} must be finite and >= 0 (multipliers of the peak LR)")
        if x_units == "fraction" and (x[0] < 0 or x[-1] > 1):
            raise ValueError(f"points x={x.tolist()} must lie in [0, 1] with x_units='fraction'; "
                             "use x_units='step' for step indices")
        self.points = pts.tolist()
        self.x_units = x_units
        self._x = x * self.total_steps if x_units == "fraction" else x
        self._v = v

    def _shape(self, steps):
        return np.interp(steps, self._x, self._v)


class FromArray(Schedule):
    """Multipliers from a .npy/.csv file or an inline list, resampled to total_steps if needed."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, source=(1.0, 0.0)):
        super().__init__(total_steps, warmup_steps, warmup_start)
        if isinstance(source, (str, os.PathLike)):
            values = _load_multipliers(os.fspath(source))
            self.source = os.fspath(source)
        else:
            values = _as_float_array(source, "source", "a path to a .npy/.csv file or [1.0, 0.5, 0.0]")
            self.source = values.tolist()
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"source={_short(source)} must hold a non-empty 1-D array of multipliers, "
                             f"got shape {values.shape}")
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"source={_short(source)} has non-finite or negative multipliers; "
                             "write multipliers of the peak LR (>= 0)")
        self._values = values
        n = values.size
        self._x = np.arange(n, dtype=np.float64) * (self.total_steps - 1) / max(n - 1, 1)

    def _shape(self, steps):
        if self._values.size == 1 or self.total_steps == 1:  # nothing to interpolate between
            return np.where(steps >= self.total_steps, self._values[-1], self._values[0])
        return np.interp(steps, self._x, self._values)  # clamps: steps >= T - 1 use the last entry


def _load_multipliers(path):
    if not os.path.isfile(path):
        raise ValueError(f"source={path!r} is not a file (relative paths are resolved from {os.getcwd()}); "
                         "give the path of a .npy or .csv file of multipliers")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        if ext == ".csv":
            try:
                table = np.loadtxt(path, delimiter=",", ndmin=2)
            except ValueError:  # a header line
                table = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)
            return table[:, -1]
    except ValueError as err:
        raise ValueError(f"source={path!r} could not be read as numbers ({err}); "
                         "write one multiplier per line (.csv) or a 1-D float array (.npy)") from None
    raise ValueError(f"source={path!r} has extension {ext!r}; use a .npy or .csv file")


def _short(source):
    text = repr(source)
    return text if len(text) < 80 else text[:77] + "..."
