"""Schedules that decay smoothly from the peak over the post-warmup span [W, T].

p = (s - W) / (T - W) is the post-warmup progress (0 at the end of warmup, 1 at step T, just
after the last update; see base.py for the step convention); f = final_fraction is the
multiplier reached at p = 1.

    Constant        1
    Linear          f + (1 - f) (1 - p)
    Cosine          f + (1 - f) (1 + cos(pi p)) / 2
    Polynomial      f + (1 - f) (1 - p)^power
    Exponential     f^p                        (rate set so that the LR reaches f at T)
    InverseSqrt     sqrt(tau / (tau + s - W)), optionally followed by a cooldown
    StepDecay       factor^(number of milestones passed), milestones as fractions of T
    CyclicCosine    Cosine whose half-period is cycle_factor * (T - W) (Schaipp et al. Fig. 19)

Example: `schedules.Cosine(total_steps=1000, warmup_steps=10, final_fraction=0.1).multipliers()`.
"""

import numpy as np

from schedules.base import (Schedule, apply_cooldown, check_cooldown_kind, check_fraction, check_int,
                            check_positive, cooldown_span, fraction_to_steps)


class Constant(Schedule):
    """Warmup, then the peak LR until the end (the WSD "stable" phase without a cooldown)."""

    def _shape(self, steps):
        return np.ones_like(steps)


class Linear(Schedule):
    """Linear decay from the peak to final_fraction at step T (Defazio et al.: worst-case optimal)."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, final_fraction=0.0):
        super().__init__(total_steps, warmup_steps, warmup_start)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.0")

    def _shape(self, steps):
        return self.final_fraction + (1.0 - self.final_fraction) * (1.0 - self._progress(steps))


class Cosine(Schedule):
    """Half-cosine from the peak to final_fraction at step T."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, final_fraction=0.0):
        super().__init__(total_steps, warmup_steps, warmup_start)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.1")

    def _shape(self, steps):
        f = self.final_fraction
        return f + (1.0 - f) * 0.5 * (1.0 + np.cos(np.pi * self._progress(steps)))


class CyclicCosine(Schedule):
    """Cosine with a half-period of cycle_factor x the post-warmup span.

    cycle_factor = 1 is `Cosine`; > 1 stops before reaching final_fraction (the "cycle longer
    than the run" of Chinchilla / Schaipp et al. Fig. 19, which uses 1, 1.5, 2, 4, 5 and final 0.1);
    < 1 reaches final_fraction at cycle_factor * (T - W) and then the cosine continues, rising
    back to the peak after 2 half-periods (a smooth cyclic schedule, no warm-restart jumps).
    """

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, cycle_factor=1.5, final_fraction=0.1):
        super().__init__(total_steps, warmup_steps, warmup_start)
        self.cycle_factor = check_positive(cycle_factor, "cycle_factor",
                                           "the cosine half-period in units of the run length, e.g. 1.5")
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the cosine's minimum, e.g. 0.1")

    def _shape(self, steps):
        f = self.final_fraction
        phase = self._progress(steps) / self.cycle_factor
        return f + (1.0 - f) * 0.5 * (1.0 + np.cos(np.pi * phase))


class Polynomial(Schedule):
    """Polynomial decay f + (1 - f)(1 - p)^power (power 1 = Linear; > 1 decays faster early)."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, power=2.0, final_fraction=0.0):
        super().__init__(total_steps, warmup_steps, warmup_start)
        self.power = check_positive(power, "power", "the decay exponent, e.g. 2.0 (1.0 = linear)")
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.0")

    def _shape(self, steps):
        f = self.final_fraction
        return f + (1.0 - f) * (1.0 - self._progress(steps)) ** self.power


class Exponential(Schedule):
    """Exponential decay f^p: the rate is set so that the multiplier reaches final_fraction at T."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, final_fraction=0.01):
        super().__init__(total_steps, warmup_steps, warmup_start)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.01")
        if self.final_fraction == 0.0:
            raise ValueError("final_fraction=0.0 cannot be reached by an exponential decay; "
                             "set final_fraction > 0, e.g. 0.01")

    def _shape(self, steps):
        return self.final_fraction ** self._progress(steps)


class InverseSqrt(Schedule):
    """Inverse square root decay sqrt(tau / (tau + s - W)), 1 at the end of warmup.

    tau = timescale (default: warmup_steps, or 1 without warmup), which gives the usual
    sqrt(W / s) of fairseq/T5 after a warmup of W steps. An optional cooldown over the last
    floor(cooldown_fraction * T) steps (or cooldown_steps; exactly one of the two) takes the LR from
    its current value to final_fraction (inverse-sqrt + cooldown, an alternative to WSD for runs
    without a fixed horizon). cooldown_start / cooldown_length: as in WSD.
    """

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, timescale=None,
                 cooldown_fraction=0.0, cooldown_kind="linear", final_fraction=0.0, cooldown_steps=None):
        super().__init__(total_steps, warmup_steps, warmup_start)
        self.timescale = None if timescale is None else check_int(timescale, "timescale", minimum=1)
        self.cooldown_start, self.cooldown_length = cooldown_span(self.total_steps, self.warmup_steps,
                                                                  cooldown_fraction, cooldown_steps)
        self.cooldown_fraction = None if cooldown_fraction is None else float(cooldown_fraction)
        self.cooldown_steps = None if cooldown_steps is None else self.cooldown_length
        self.cooldown_kind = check_cooldown_kind(cooldown_kind)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the multiplier after the cooldown")
        self._tau = self.timescale or max(self.warmup_steps, 1)

    def _rsqrt(self, steps):
        return np.sqrt(self._tau / (self._tau + steps - self.warmup_steps))

    def _shape(self, steps):
        if not self.cooldown_length:   # no cooldown: 1/sqrt up to and past T (final_fraction unused)
            return self._rsqrt(steps)
        level = self._rsqrt(np.float64(self.cooldown_start))
        return apply_cooldown(steps, self._rsqrt(steps), self.cooldown_start, self.cooldown_length,
                              self.cooldown_kind, level, self.final_fraction)


class StepDecay(Schedule):
    """Multiply by `factor` at each milestone: multiplier = factor^(#milestones with s >= floor(m T)).

    Milestones are fractions of T (e.g. [0.3, 0.6, 0.9] x 0.1, the REX paper's baseline).
    """

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, milestones=(0.3, 0.6, 0.9), factor=0.1):
        super().__init__(total_steps, warmup_steps, warmup_start)
        try:
            m = np.asarray(list(milestones), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"milestones={milestones!r} must be a list of fractions of total_steps, "
                             "e.g. [0.3, 0.6, 0.9]") from None
        if m.ndim != 1 or m.size == 0 or np.any(m <= 0) or np.any(m >= 1) or np.any(np.diff(m) <= 0):
            raise ValueError(f"milestones={list(milestones)} must be strictly increasing fractions in (0, 1) "
                             "of total_steps; use e.g. [0.3, 0.6, 0.9]")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
            raise ValueError(f"factor={factor!r} is outside (0, 1]; set it to the LR multiplier applied "
                             "at each milestone, e.g. 0.1")
        self.milestones = [float(x) for x in m]
        self.factor = float(factor)
        self._milestone_steps = np.array([fraction_to_steps(self.total_steps, x) for x in m], dtype=np.float64)
        if self._milestone_steps[0] < self.warmup_steps:
            raise ValueError(f"the first milestone {self.milestones[0]} falls at step "
                             f"{int(self._milestone_steps[0])}, inside the warmup of {self.warmup_steps} steps; "
                             "use a later milestone or a shorter warmup")

    def _shape(self, steps):
        passed = np.searchsorted(self._milestone_steps, steps, side="right")  # #milestones <= s
        return self.factor ** passed.astype(np.float64)
