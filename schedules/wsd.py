"""Warmup-stable-decay (WSD) and the two-stage WSD of continued training (Schaipp et al. 2025).

WSD: warmup, the peak LR, then a cooldown over the last n = floor(cooldown_fraction * T) steps.
Convention (exactly the paper's trainer): the cooldown occupies steps T0 = T - n .. T with
cooldown progress u = (s - T0) / n, so step T0 still uses the peak (u = 0), step T - 1 uses
1 - 1/n for a linear cooldown, and the final value is reached at step T, just after the last
update. Cooldown kinds g(u): linear 1 - u, 1-sqrt 1 - sqrt(u), cosine (1 + cos(pi u)) / 2;
multiplier = f + (1 - f) g(u) with f = final_fraction. A cooldown run branched from a
constant-LR run at step T0 therefore continues it seamlessly.

    python -m schedules plot schedule=wsd schedule.cooldown_fraction=0.2 schedule=wsd_sqrt --out wsd.png
"""
import numpy as np

from schedules.base import (Schedule, check_cooldown_kind, check_fraction, check_int, check_positive,
                            cooldown_profile, fraction_to_steps)


class WSD(Schedule):
    """Warmup, constant peak, cooldown over the last floor(cooldown_fraction * T) steps."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, cooldown_fraction=0.2,
                 cooldown_kind="linear", final_fraction=0.0):
        super().__init__(total_steps, warmup_steps, warmup_start)
        self.cooldown_fraction = check_fraction(cooldown_fraction, "cooldown_fraction",
                                                "the fraction of total_steps spent in the cooldown, e.g. 0.2")
        self.cooldown_kind = check_cooldown_kind(cooldown_kind)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.0")
        self.cooldown_steps = fraction_to_steps(self.total_steps, self.cooldown_fraction)
        self.cooldown_start = self.total_steps - self.cooldown_steps  # first step of the cooldown (still the peak)
        if self.cooldown_start < self.warmup_steps:
            raise ValueError(
                f"cooldown_fraction={cooldown_fraction} starts the cooldown at step {self.cooldown_start}, inside "
                f"the warmup of {self.warmup_steps} steps; use cooldown_fraction <= "
                f"{1 - self.warmup_steps / self.total_steps:.4g} (or schedules.Linear for a decay over the whole run)")

    def _shape(self, steps):
        n, f = self.cooldown_steps, self.final_fraction
        if n == 0:  # no cooldown: the peak until the end, final_fraction at step T (past the last update)
            return np.where(steps >= self.total_steps, f, 1.0)
        u = np.clip((steps - self.cooldown_start) / n, 0.0, 1.0)
        return f + (1.0 - f) * cooldown_profile(u, self.cooldown_kind)


class TwoStageWSD(Schedule):
    """WSD with a second, lower plateau: the continued-training schedule ("WSSD") of Schaipp et al.

    peak until `drop` (given as drop_step, or as drop_fraction of T), then a linear transition
    over transition_steps down to rho, rho until the cooldown, then the cooldown over the last
    floor(cooldown_fraction * T) steps from rho to final_fraction (same convention as WSD).
    Extending a WSD-0.2 run of T1 steps to T2: drop_step = 0.8 * T1 (where its cooldown began),
    total_steps = T2, and rho chosen by the analysis so that the optimal LR stays the one in use.
    """

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, drop_step=None, drop_fraction=None,
                 transition_steps=0, rho=0.5, cooldown_fraction=0.2, cooldown_kind="linear", final_fraction=0.0):
        super().__init__(total_steps, warmup_steps, warmup_start)
        if (drop_step is None) == (drop_fraction is None):
            raise ValueError(f"give exactly one of drop_step={drop_step!r} (a step index) and "
                             f"drop_fraction={drop_fraction!r} (a fraction of total_steps); set the other to null")
        self.drop_step = None if drop_step is None else check_int(drop_step, "drop_step")
        self.drop_fraction = None if drop_fraction is None else check_fraction(
            drop_fraction, "drop_fraction", "the fraction of total_steps where the LR drop starts, e.g. 0.4")
        self.transition_steps = check_int(transition_steps, "transition_steps")
        self.rho = check_positive(rho, "rho", "the second plateau as a multiple of the peak, e.g. 0.5")
        self.cooldown_fraction = check_fraction(cooldown_fraction, "cooldown_fraction",
                                                "the fraction of total_steps spent in the cooldown, e.g. 0.2")
        self.cooldown_kind = check_cooldown_kind(cooldown_kind)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.0")

        self.drop_start = (self.drop_step if drop_step is not None
                           else fraction_to_steps(self.total_steps, self.drop_fraction))
        self.cooldown_steps = fraction_to_steps(self.total_steps, self.cooldown_fraction)
        self.cooldown_start = self.total_steps - self.cooldown_steps
        if self.drop_start < self.warmup_steps:
            raise ValueError(f"the drop starts at step {self.drop_start}, inside the warmup of {self.warmup_steps} "
                             "steps; move the drop (drop_step / drop_fraction) after the warmup")
        if self.drop_start + self.transition_steps > self.cooldown_start:
            raise ValueError(
                f"the drop (step {self.drop_start} + transition_steps={self.transition_steps}) ends after the cooldown "
                f"starts (step {self.cooldown_start} = T - floor(cooldown_fraction * T)); drop earlier, shorten the "
                "transition or use a smaller cooldown_fraction")

    def _shape(self, steps):
        rho, f = self.rho, self.final_fraction
        if self.transition_steps:
            v = np.clip((steps - self.drop_start) / self.transition_steps, 0.0, 1.0)
        else:
            v = (steps >= self.drop_start).astype(np.float64)
        out = 1.0 + (rho - 1.0) * v  # peak -> rho, linear over the transition
        n = self.cooldown_steps
        if n == 0:
            return np.where(steps >= self.total_steps, f, out)
        u = np.clip((steps - self.cooldown_start) / n, 0.0, 1.0)
        cool = f + (rho - f) * cooldown_profile(u, self.cooldown_kind)
        return np.where(steps >= self.cooldown_start, cool, out)
