"""The Schedule base class: step index -> multiplier of the peak learning rate.

Every schedule in this package is a small subclass that implements only its post-warmup shape
(`_shape`); this class adds the warmup, the clamping past the horizon, input checks and the
scalar/array handling. The trainer and the analysis use the same object:

    sched = hydra.utils.instantiate(cfg.schedule)      # e.g. schedules.WSD(total_steps=1000, ...)
    lr = cfg.optimizer.lr * sched(step)                 # trainer: python int -> python float
    eta = sched.multipliers()                           # analysis: float64 array of length T

Step convention (that of the paper's trainer, a torch LambdaLR, and of the paper's theory code):
- Update number s (0-based, s = 0 .. T-1) uses lr = peak_lr * schedule(s); T = total_steps.
- Decaying shapes reach their final value at step T, i.e. just *after* the last update, so the
  last update of a schedule that decays "to 0" still uses a small positive LR (for a linear
  cooldown over n steps it is 1/n). This is "a schedule of T+1 steps evaluated at horizon T" in
  docs/theory.md section 1, and it keeps the convex bound finite (its last term divides by eta_T).
  Exceptions, written as torch writes them: OneCycle and CosinePaper end at step T - 1 (onecycle.py);
  FromArray's last entry is step T - 1 (custom.py).
- Steps >= T return the value at step T (clamped): continued training may run a few steps past.
- Warmup (linear): for s < W = warmup_steps, multiplier = warmup_start + (1 - warmup_start) * s / W,
  so step 0 uses warmup_start and step W is the first post-warmup step (multiplier 1 for
  schedules that start at the peak). The paper's trainer used warmup_start = 0.01 (its
  init_div_factor of 100): at W = 300 and lr 1e-3 its logged LR at step 50 is 1.75e-4.
"""
import inspect
import math

import numpy as np

COOLDOWN_KINDS = ("linear", "1-sqrt", "cosine")


class Schedule:
    """Maps 0-indexed optimizer-update indices to a multiplier of the peak LR. Vectorized.

    Subclasses implement `_shape(steps)` for float64 steps in [warmup_steps, total_steps]
    (post-warmup part, value at total_steps = the end of the schedule) and may override
    `_warmup(steps)` for steps in [0, warmup_steps). They store every __init__ argument as an
    attribute of the same name (that is what __repr__ prints).
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0):
        self.total_steps = check_int(total_steps, "total_steps", minimum=1)
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=0)
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps={warmup_steps} exceeds total_steps={total_steps}; "
                f"set warmup_steps <= total_steps (e.g. trainer.warmup_steps={total_steps // 10})")
        self.warmup_start = check_fraction(warmup_start, "warmup_start",
                                           "the multiplier at step 0, e.g. 0.0 or 0.01")

    # ----- the part subclasses implement -----
    def _shape(self, steps: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _shape(steps)")

    def _warmup(self, steps: np.ndarray) -> np.ndarray:
        # Linear ramp: warmup_start at step 0, reaching 1 at step W (the first post-warmup step).
        return self.warmup_start + (1.0 - self.warmup_start) * steps / self.warmup_steps

    # ----- helpers for subclasses -----
    def _progress(self, steps: np.ndarray) -> np.ndarray:
        """Post-warmup progress p in [0, 1]: 0 at step W, 1 at step T."""
        span = self.total_steps - self.warmup_steps
        if span == 0:
            return (steps >= self.total_steps).astype(np.float64)
        return np.clip((steps - self.warmup_steps) / span, 0.0, 1.0)

    # ----- public API -----
    def __call__(self, steps):
        """np.ndarray of step indices -> float64 array of the same shape; a scalar -> python float."""
        arr = np.asarray(steps)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"steps must be integers (optimizer-update indices), got dtype {arr.dtype}")
        if arr.size and np.min(arr) < 0:
            raise ValueError(f"steps must be >= 0 (0-based update indices), got {np.min(arr)}")
        s = np.minimum(arr.astype(np.float64), float(self.total_steps))  # clamp past the horizon
        out = np.empty(s.shape, dtype=np.float64)
        warm = s < self.warmup_steps
        out[warm] = self._warmup(s[warm])
        out[~warm] = self._shape(s[~warm])
        assert np.all(np.isfinite(out)) and np.all(out >= -1e-12), f"{self!r} gave {out}"
        return float(out) if arr.ndim == 0 else out

    def multipliers(self) -> np.ndarray:
        """The multipliers of all T updates, self(np.arange(total_steps)), float64."""
        return self(np.arange(self.total_steps))

    def __repr__(self):
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in names if hasattr(self, n))
        return f"{type(self).__name__}({args})"


# ----- shared pieces: input checks, the cooldown of WSD, TwoStageWSD and InverseSqrt -----

def check_int(value, name: str, minimum: int = 0) -> int:
    """An integer-valued count >= minimum (floats like 5000.0 from YAML are accepted)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not math.isfinite(value) or value != int(value) or value < minimum:
        raise ValueError(f"{name}={value!r} is not an integer >= {minimum}; set {name} to a whole number of steps")
    return int(value)


def check_fraction(value, name: str, meaning: str) -> float:
    """A float in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r} is outside [0, 1]; set {name} to {meaning}")
    return float(value)


def check_positive(value, name: str, meaning: str) -> float:
    """A finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 < value < math.inf:
        raise ValueError(f"{name}={value!r} must be > 0; set {name} to {meaning}")
    return float(value)


def check_cooldown_kind(kind: str) -> str:
    if kind not in COOLDOWN_KINDS:
        raise ValueError(f"cooldown_kind={kind!r} is unknown; use one of {', '.join(COOLDOWN_KINDS)}")
    return kind


def fraction_to_steps(total_steps: int, fraction: float) -> int:
    """floor(fraction * T), with a 1e-9 tolerance so that float rounding (0.29 * 100 = 28.999...)
    does not lose a step. A cooldown of fraction c has n = floor(c T) steps and occupies steps
    T - n .. T (value 1 at T - n, the final value at T)."""
    return math.floor(fraction * total_steps + 1e-9)


def cooldown_span(total_steps: int, warmup_steps: int, cooldown_fraction, cooldown_steps) -> tuple[int, int]:
    """(start, n) of a cooldown over the last n steps, given as exactly one of cooldown_fraction
    (n = floor(c T)) and cooldown_steps (n itself); it occupies steps start = T - n .. T and must
    start after the warmup. Shared by WSD, TwoStageWSD and InverseSqrt."""
    if (cooldown_fraction is None) == (cooldown_steps is None):
        raise ValueError(f"give exactly one of cooldown_fraction={cooldown_fraction!r} (a fraction of total_steps) "
                         f"and cooldown_steps={cooldown_steps!r} (a number of steps); set the other to null, "
                         "e.g. schedule.cooldown_steps=2000 schedule.cooldown_fraction=null")
    if cooldown_steps is None:
        given = f"cooldown_fraction={cooldown_fraction}"
        n = fraction_to_steps(total_steps, check_fraction(
            cooldown_fraction, "cooldown_fraction", "the fraction of total_steps spent in the cooldown, e.g. 0.2"))
    else:
        given = f"cooldown_steps={cooldown_steps}"
        n = check_int(cooldown_steps, "cooldown_steps")
        if n > total_steps:
            raise ValueError(f"cooldown_steps={cooldown_steps} exceeds total_steps={total_steps}; "
                             f"set cooldown_steps <= {total_steps - warmup_steps} (after the warmup)")
    start = total_steps - n
    if start < warmup_steps:
        raise ValueError(
            f"{given} starts the cooldown at step {start}, inside the warmup of {warmup_steps} steps; shorten "
            f"the warmup to at most {start} steps (trainer.warmup_steps={start}, or drop that override: its "
            f"default is 10% of trainer.max_steps), or use cooldown_fraction <= "
            f"{1 - warmup_steps / total_steps:.4g} or cooldown_steps <= {total_steps - warmup_steps} "
            "(or schedules.Linear for a decay over the whole run)")
    return start, n


def apply_cooldown(steps: np.ndarray, before: np.ndarray, start: int, n: int, kind: str, level: float,
                   final: float) -> np.ndarray:
    """`before` until step `start`, then the cooldown from `level` to `final`: final + (level - final) g(u)
    over progress u = (s - start) / n (g = cooldown_profile), `final` from step start + n = T on.
    n = 0: `final` at step T (= start) only, past the last update."""
    if n == 0:
        return np.where(steps >= start, final, before)
    u = np.clip((steps - start) / n, 0.0, 1.0)
    return np.where(steps >= start, final + (level - final) * cooldown_profile(u, kind), before)


def cooldown_profile(u: np.ndarray, kind: str) -> np.ndarray:
    """Cooldown curve g(u) from g(0) = 1 to g(1) = 0 over cooldown progress u in [0, 1]."""
    if kind == "linear":
        return 1.0 - u
    if kind == "1-sqrt":
        return 1.0 - np.sqrt(u)
    assert kind == "cosine", kind
    return 0.5 * (1.0 + np.cos(np.pi * u))


def cosine_interp(start, end, pct):
    """Half-cosine from `start` (pct = 0) to `end` (pct = 1), torch OneCycleLR's 'cos' anneal."""
    return end + (start - end) * 0.5 * (1.0 + np.cos(np.pi * pct))
