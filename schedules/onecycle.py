"""OneCycle (torch.optim.lr_scheduler.OneCycleLR) and the paper runs' cosine, which was built with it.

Both are two phases, written as in torch (multipliers of max_lr = the peak LR):
- ramp: steps 0 .. e, from warmup_start up to 1, reaching the peak AT step e (torch's phase-1 end);
- anneal: steps e .. T - 1, from 1 down to final_fraction, reached AT step T - 1 (torch's
  convention, unlike the rest of the package where the final value comes at step T; the value is
  held from there on, so steps >= T are clamped as everywhere).
The ramp is the schedule's warmup: warmup_steps = floor(e) + 1 steps (0 .. e), anneal 'cos' or 'linear'.

OneCycle(T)    torch defaults: e = 0.3 T - 1, warmup_start = 1/25, final = 1/(25 * 1e4).
CosinePaper(T, W): the paper's `cos` runs (llm-baselines trainer): OneCycleLR with
               pct_start = W / T, div_factor 100, cosine anneal to lr/10 (Fig. 1), so e = W - 1,
               warmup_start = 0.01, final_fraction = 0.1 (or 1e-4 for the `cos-zero` runs).
"""
import math

import numpy as np

from schedules.base import Schedule, check_fraction, check_int, check_positive, cosine_interp


class _TwoPhase(Schedule):
    """Shared math of OneCycle and CosinePaper; subclasses set _ramp_end, final_fraction, anneal_strategy."""

    _ramp_end: float
    final_fraction: float
    anneal_strategy: str

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return cosine_interp(start, end, pct)
        return start + (end - start) * pct

    def _warmup(self, steps):
        pct = np.clip(steps / max(self._ramp_end, 1.0), 0.0, 1.0)
        return self._anneal(self.warmup_start, 1.0, pct)

    def _shape(self, steps):
        start = max(self._ramp_end, 0.0)  # without a ramp the anneal starts at step 0
        pct = np.clip((steps - start) / max(self.total_steps - 1 - start, 1.0), 0.0, 1.0)
        return self._anneal(1.0, self.final_fraction, pct)


class OneCycle(_TwoPhase):
    """torch.optim.lr_scheduler.OneCycleLR (two phases, no momentum cycling) as a multiplier of max_lr.

    pct_start of the run ramps from max_lr/div_factor to max_lr, then anneals to
    max_lr/(div_factor * final_div_factor). Its warmup is the ramp, so it takes no warmup_steps.
    """

    def __init__(self, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4, anneal_strategy="cos"):
        total_steps = check_int(total_steps, "total_steps", minimum=1)
        self.pct_start = check_fraction(pct_start, "pct_start", "the fraction of the run spent ramping up, e.g. 0.3")
        self.div_factor = check_positive(div_factor, "div_factor", "max_lr / initial_lr, e.g. 25")
        self.final_div_factor = check_positive(final_div_factor, "final_div_factor", "initial_lr / min_lr, e.g. 1e4")
        if self.div_factor < 1:
            raise ValueError(f"div_factor={div_factor!r} < 1 would start above the peak; use div_factor >= 1, e.g. 25")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy={anneal_strategy!r} is unknown; use 'cos' or 'linear'")
        self.anneal_strategy = anneal_strategy
        self._ramp_end = float(self.pct_start * total_steps) - 1  # torch's phase-1 end_step, same float math
        ramp_steps = max(math.floor(self._ramp_end) + 1, 0)       # steps 0 .. ramp_end
        super().__init__(total_steps, warmup_steps=min(ramp_steps, total_steps), warmup_start=1.0 / self.div_factor)
        self.final_fraction = 1.0 / (self.div_factor * self.final_div_factor)
        if self.final_fraction > 1.0:
            raise ValueError(f"div_factor * final_div_factor = {1 / self.final_fraction:.4g} < 1 would end above "
                             "the peak; use a larger final_div_factor")


class CosinePaper(_TwoPhase):
    """The paper runs' cosine: cosine warmup from warmup_start to the peak over warmup_steps (peak at
    step W - 1), then cosine to final_fraction at step T - 1 (torch OneCycleLR, pct_start = W / T)."""

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.01, final_fraction=0.1):
        super().__init__(total_steps, warmup_steps, warmup_start)
        self.final_fraction = check_fraction(final_fraction, "final_fraction", "the final multiplier, e.g. 0.1")
        self.anneal_strategy = "cos"
        self._ramp_end = float(self.warmup_steps - 1)
