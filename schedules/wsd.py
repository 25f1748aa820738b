"""Warmup-stable-decay (WSD) and the two-stage WSD of continued training (Schaipp et al. 2025).

WSD: warmup, the peak LR, then a cooldown over the last n = floor(cooldown_fraction * T) steps
(or n = cooldown_steps, the length in steps; exactly one of the two).
Convention (exactly the paper's trainer): the cooldown occupies steps T0 = T - n .. T with
cooldown progress u = (s - T0) / n, so step T0 still uses the peak (u = 0), step T - 1 uses
1 - 1/n for a linear cooldown, and the final value is reached at step T, just after the last
update. Cooldown kinds g(u): linear 1 - u, 1-sqrt 1 - sqrt(u), cosine (1 + cos(pi u)) / 2;
multiplier = f + (1 - f) g(u) with f = final_fraction. A cooldown run branched from a
constant-LR run at step T0 therefore continues it seamlessly.

    python -m schedules plot schedule=wsd schedule.cooldown_fraction=0.2 schedule=wsd_sqrt --out wsd.png
"""
import numpy as np

from schedules.base import (Schedule, apply_cooldown, check_cooldown_kind, check_fraction, check_int, check_positive,
                            cooldown_span, fraction_to_steps)


class WSD(Schedule):
    """Warmup, constant peak, cooldown over the last n steps: n = floor(cooldown_fraction * T), or
    n = cooldown_steps (give exactly one; the other None). cooldown_start = T - n and cooldown_length
    = n are the effective values (the effective fraction is cooldown_length / total_steps)."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, cooldown_fraction=0.2,
                 cooldown_kind="linear", final_fraction=0.0, cooldown_steps=None):
        super().__init__(total_steps, warmup_steps, warmup_start)
        # first step of the cooldown (still the peak) and its length; checks the two arguments
        self.cooldown_start, self.cooldown_length = cooldown_span(self.total_steps, self.warmup_steps,
                                                                  cooldown_fraction, cooldown_steps)
        self.cooldown_fraction = None if cooldown_fraction is None else float(cooldown_fraction)
        self.cooldown_steps = None if cooldown_steps is None else self.cooldown_length
        self.cooldown_kind = check_cooldown_kind(cooldown_kind)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.0")

    def _shape(self, steps):
        return apply_cooldown(steps, np.ones_like(steps), self.cooldown_start, self.cooldown_length,
                              self.cooldown_kind, 1.0, self.final_fraction)


class TwoStageWSD(Schedule):
    """WSD with a second, lower plateau: the continued-training schedule ("WSSD") of Schaipp et al.

    peak until `drop` (given as drop_step, or as drop_fraction of T), then a linear transition
    over transition_steps down to rho, rho until the cooldown, then the cooldown over the last
    floor(cooldown_fraction * T) (or cooldown_steps) steps from rho to final_fraction (as in WSD).
    Extending a WSD-0.2 run of T1 steps to T2: drop_step = 0.8 * T1 (where its cooldown began),
    total_steps = T2, and rho chosen by the analysis so that the optimal LR stays the one in use.
    """

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, drop_step=None, drop_fraction=None,
                 transition_steps=0, rho=0.5, cooldown_fraction=0.2, cooldown_kind="linear", final_fraction=0.0,
                 cooldown_steps=None):
        super().__init__(total_steps, warmup_steps, warmup_start)
        if (drop_step is None) == (drop_fraction is None):
            raise ValueError(f"give exactly one of drop_step={drop_step!r} (a step index) and "
                             f"drop_fraction={drop_fraction!r} (a fraction of total_steps); set the other to null")
        self.drop_step = None if drop_step is None else check_int(drop_step, "drop_step")
        self.drop_fraction = None if drop_fraction is None else check_fraction(
            drop_fraction, "drop_fraction", "the fraction of total_steps where the LR drop starts, e.g. 0.4")
        self.transition_steps = check_int(transition_steps, "transition_steps")
        self.rho = check_positive(rho, "rho", "the second plateau as a multiple of the peak, e.g. 0.5")
        self.cooldown_start, self.cooldown_length = cooldown_span(self.total_steps, self.warmup_steps,
                                                                  cooldown_fraction, cooldown_steps)
        self.cooldown_fraction = None if cooldown_fraction is None else float(cooldown_fraction)
        self.cooldown_steps = None if cooldown_steps is None else self.cooldown_length
        self.cooldown_kind = check_cooldown_kind(cooldown_kind)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.0")

        self.drop_start = (self.drop_step if drop_step is not None
                           else fraction_to_steps(self.total_steps, self.drop_fraction))
        if self.drop_start < self.warmup_steps:
            raise ValueError(f"the drop starts at step {self.drop_start}, inside the warmup of {self.warmup_steps} "
                             "steps; move the drop (drop_step / drop_fraction) after the warmup")
        if self.drop_start + self.transition_steps > self.cooldown_start:
            raise ValueError(
                f"the drop (step {self.drop_start} + transition_steps={self.transition_steps}) ends after the cooldown "
                f"starts (step {self.cooldown_start} = T - {self.cooldown_length}); drop earlier, shorten the "
                "transition or the cooldown (cooldown_fraction / cooldown_steps)")

    def _shape(self, steps):
        if self.transition_steps:
            v = np.clip((steps - self.drop_start) / self.transition_steps, 0.0, 1.0)
        else:
            v = (steps >= self.drop_start).astype(np.float64)
        plateaus = 1.0 + (self.rho - 1.0) * v  # peak -> rho, linear over the transition
        return apply_cooldown(steps, plateaus, self.cooldown_start, self.cooldown_length, self.cooldown_kind,
                              self.rho, self.final_fraction)
