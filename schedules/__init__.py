"""Learning-rate schedules: one source of truth for the trainer and the analysis.

A schedule maps 0-indexed optimizer-update indices to a multiplier of the peak LR (which lives
in the optimizer config); it is vectorized and knows nothing of optimizers, plots or bounds.
Step convention, warmup and clamping: see schedules/base.py. Build one from a config:

    sched = hydra.utils.instantiate(cfg.schedule)   # configs/schedule/wsd.yaml -> schedules.WSD
    sched(123) -> float; sched(np.arange(10)) -> array; sched.multipliers() -> all T updates

One schedule is reactive (`reactive = True`): StepOnPlateau cuts the LR when the validation loss stops
improving (the trainer calls its observe(); its state is checkpointed); its LRs are read from the run's
metrics.jsonl, not computed from its config, so it answers scalar steps only (schedules/plateau.py).

Plot schedules as the trainer would build them:
    python -m schedules plot schedule=wsd schedule.cooldown_fraction=0.2 schedule=cosine \
        trainer.max_steps=5000 --out lr.png
"""
from schedules.base import Schedule
from schedules.custom import FromArray, PiecewiseLinear
from schedules.decay import (Constant, Cosine, CyclicCosine, Exponential, InverseSqrt, Linear, Polynomial,
                             StepDecay)
from schedules.onecycle import CosinePaper, OneCycle
from schedules.plateau import StepOnPlateau
from schedules.rex import REX
from schedules.wsd import WSD, TwoStageWSD

__all__ = [
    "Schedule", "Constant", "Linear", "Cosine", "CosinePaper", "CyclicCosine", "WSD", "TwoStageWSD",
    "InverseSqrt", "Polynomial", "StepDecay", "Exponential", "OneCycle", "REX", "PiecewiseLinear", "FromArray",
    "StepOnPlateau",
]
