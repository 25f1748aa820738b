"""REX (Chen, Wolfe, Kyrillidis): a profile on progress z plus a sampling rate.

Profile f(z) = (1 - z) / (1 - beta z) on z in [0, 1]; beta = 1/2 is the paper's
(f(0.25) = 0.8571, f(0.5) = 0.6667, f(0.75) = 0.4, f(0.9) = 0.1818, f(1) = 0), beta = 0.9 the
variant of the authors' endorsed code, beta = 0 linear decay. f(z) >= 1 - z for 0 <= beta < 1.
multiplier = final_fraction + (1 - final_fraction) f(z), z = post-warmup progress (s - W)/(T - W),
so without warmup step s uses f(s / T) (the eta_t = f((t-1)/T) of the REX paper, t = s + 1).

Sampling rate: the LR is re-read from the profile every `update_every` steps (counted from the end
of warmup) and held in between; 1 = every step (REX's default), a larger value gives the
"every k steps / epoch" sampling of the paper.

    schedules.REX(total_steps=100)(25) == 0.857142...
"""
import numpy as np

from schedules.base import Schedule, check_fraction, check_int


class REX(Schedule):
    """REX profile (1 - z)/(1 - beta z), sampled every update_every steps."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, beta=0.5, update_every=1, final_fraction=0.0):
        super().__init__(total_steps, warmup_steps, warmup_start)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not -np.inf < beta < 1:
            raise ValueError(f"beta={beta!r} must be < 1 (beta = 1 is a constant LR with a 0/0 at the end); "
                             "use 0.5 (the paper) or 0.9 (the authors' code)")
        self.beta = float(beta)
        self.update_every = check_int(update_every, "update_every", minimum=1)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.0")

    def profile(self, z):
        """f(z) = (1 - z) / (1 - beta z) on progress z in [0, 1]."""
        return (1.0 - z) / (1.0 - self.beta * z)

    def _shape(self, steps):
        k = self.update_every
        sampled = self.warmup_steps + np.floor((steps - self.warmup_steps) / k) * k  # last refresh step
        sampled = np.where(steps >= self.total_steps, steps, sampled)  # the end of the schedule is exact
        f = self.final_fraction
        return f + (1.0 - f) * self.profile(self._progress(sampled))
