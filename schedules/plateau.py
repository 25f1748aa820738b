"""Step decay on plateau: a reactive schedule that cuts the LR when the validation loss stops improving.

The one schedule whose multipliers follow the run rather than its config (Chen et al. compare it with
REX; torch calls it ReduceLROnPlateau). The trainer calls `observe(step, val_loss)` after every periodic
validation and keeps `state_dict()` in its checkpoints (training/loop.py, training/checkpoint.py):

    sched = schedules.StepOnPlateau(total_steps=1000, warmup_steps=10, patience=2)
    sched(0), sched(5)            # warmup ramp, as every schedule: 0.0, 0.5
    sched.observe(100, 3.2)       # validation after 100 updates; may cut the level for updates 100, 101, ...
    sched(100)                    # the multiplier of update 100 (0-based), a python float

Rule, exactly torch's ReduceLROnPlateau(mode="min", threshold_mode="rel") with lr 1 (tested against it):
an evaluation improves if val_loss < best * (1 - threshold) (best starts at +inf, so the first finite loss
improves); a non-finite loss never improves. When more than `patience` evaluations in a row have not
improved, the level is multiplied by `factor` (never below `min_multiplier`) and the count restarts; for
`cooldown` evaluations after a cut, evaluations that do not improve are not counted. So patience=0 cuts
at the first evaluation without improvement, patience=2 at the third in a row. Like torch (its eps), a
cut that would change the multiplier by 1e-8 or less is skipped, so the level stops near 1e-8 at the latest.

Step convention (schedules/base.py): `observe(k, ...)` after k completed updates sets the level of
updates k, k+1, ... (0-based); multiplier(s) = warmup ramp (s < W, else 1) x level in force at s.

Arrays: the analysis evaluates other schedules on np.arange(T) from the run's recorded config; this
one's multipliers are not a function of its config, so an array call (and `multipliers()`) raises a
ValueError pointing at the LRs the run logged (metrics.jsonl's `lr`), even before any observation: the
object the analysis rebuilds from a config has never observed, and its "no plateau yet" answer would be
wrong for the run without any sign of it. A scalar call answers any step from the levels in force
(the cuts are kept in the state), which is what the trainer needs, before and after a resume; and
`replay(observations)` gives the exact multipliers of all updates from a run's logged validation losses.
"""
import copy
import math

import numpy as np

from schedules.base import Schedule, check_fraction, check_int, check_positive

MIN_CUT = 1e-8  # torch's eps: a smaller cut (at min_multiplier, or a level already ~1e-8) is skipped
STATE_KEYS = ("best", "bad_evaluations", "cooldown_left", "last_step", "cuts")


class StepOnPlateau(Schedule):
    """Warmup, then the peak LR, multiplied by `factor` whenever the validation loss plateaus."""

    reactive = True  # the trainer calls observe() after each validation and checkpoints state_dict()

    def __init__(self, total_steps, warmup_steps=0, warmup_start=0.0, factor=0.1, patience=2, threshold=1e-4,
                 cooldown=0, min_multiplier=0.0):
        super().__init__(total_steps, warmup_steps, warmup_start)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.0 < factor < 1.0:
            raise ValueError(f"factor={factor!r} is outside (0, 1); set factor to the multiplier applied to the LR "
                             "at each plateau, e.g. 0.1")
        self.factor = float(factor)
        self.patience = check_int(patience, "patience", minimum=0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold={threshold!r} is outside [0, 1); set threshold to the relative improvement "
                             "of the best validation loss that counts as progress, e.g. 1e-4")
        self.threshold = float(threshold)
        self.cooldown = check_int(cooldown, "cooldown", minimum=0)
        self.min_multiplier = check_fraction(min_multiplier, "min_multiplier",
                                             "the lowest level the cuts may reach, e.g. 0.0 or 1e-3")
        self.load_state_dict(self._initial_state())

    @staticmethod
    def _initial_state() -> dict:
        return {"best": math.inf, "bad_evaluations": 0, "cooldown_left": 0, "last_step": None, "cuts": []}

    # ----- what the trainer calls -----
    def observe(self, step: int, val_loss: float) -> None:
        """The validation loss after `step` completed updates; may cut the level of updates step, step+1, ..."""
        step = check_int(step, "step", minimum=0)
        if self.last_step is not None and step < self.last_step:
            raise ValueError(f"observe(step={step}) comes after an observation at step {self.last_step}; "
                             "observations must follow the run forward (a resumed run loads the state of its "
                             "checkpoint with load_state_dict, which holds only earlier observations)")
        if isinstance(val_loss, bool) or not isinstance(val_loss, (int, float, np.integer, np.floating)):
            raise ValueError(f"val_loss={val_loss!r} is not a number; pass the validation loss as a float")
        loss = float(val_loss)
        self.last_step = step
        if math.isfinite(loss) and loss < self.best * (1.0 - self.threshold):
            self.best, self.bad_evaluations = loss, 0
        else:  # NaN/inf: a diverged evaluation is never progress
            self.bad_evaluations += 1
        if self.cooldown_left > 0:  # evaluations right after a cut are not held against the new level
            self.cooldown_left -= 1
            self.bad_evaluations = 0
        if self.bad_evaluations > self.patience:
            level = max(self.level * self.factor, self.min_multiplier)
            if self.level - level > MIN_CUT:
                self.cuts.append([step, level])
            self.cooldown_left, self.bad_evaluations = self.cooldown, 0

    @property
    def level(self) -> float:
        """The plateau level in force now (1.0 before the first cut)."""
        return self.cuts[-1][1] if self.cuts else 1.0

    def __call__(self, steps):
        """A step index -> its multiplier (python float); arrays raise (see the module docstring)."""
        arr = np.asarray(steps)
        if arr.ndim != 0:
            raise ValueError(
                f"{type(self).__name__} is reactive: its LRs follow the validation losses of the run and cannot "
                "be computed from its config for an array of steps; read the LR every logged step used from the "
                "run's metrics.jsonl (key `lr`; in the analysis: analysis.runs.Run.multipliers())")
        step = check_int(arr.item() if arr.dtype.kind in "iuf" else steps, "step", minimum=0)
        level = 1.0
        for cut_step, cut_level in self.cuts:  # a handful of cuts per run: a scan is clearest
            if cut_step <= step:
                level = cut_level
        ramp = self._warmup(np.float64(step)) if step < self.warmup_steps else 1.0
        return float(ramp * level)

    def multipliers(self) -> np.ndarray:
        return self(np.arange(self.total_steps))  # raises: a reactive schedule has no precomputed multipliers

    def replay(self, observations, steps: int | None = None) -> np.ndarray:
        """The exact multipliers of updates 0..steps-1 (default total_steps) of a run whose periodic
        validations gave `observations`, [(step, val_loss), ...] in the order of the run (from metrics.jsonl:
        the `val/loss` events with 0 < step < trainer.max_steps; the first and the final one are not
        observed), observed afresh by a copy of this schedule; this object is left as it is."""
        fresh = copy.deepcopy(self)
        fresh.load_state_dict(self._initial_state())
        for step, val_loss in observations:
            fresh.observe(step, val_loss)
        n = self.total_steps if steps is None else check_int(steps, "steps", minimum=0)
        return np.array([fresh(s) for s in range(n)], dtype=np.float64)

    # ----- checkpoint state: plain Python values (torch.load(weights_only=True) and JSON friendly) -----
    def state_dict(self) -> dict:
        return {"best": float(self.best), "bad_evaluations": int(self.bad_evaluations),
                "cooldown_left": int(self.cooldown_left), "last_step": self.last_step,
                "cuts": [[int(s), float(v)] for s, v in self.cuts]}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or set(state) != set(STATE_KEYS):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{type(self).__name__} state must have exactly the keys {list(STATE_KEYS)}, got {got}; "
                             "pass what state_dict() returned (a checkpoint of another schedule does not fit)")
        self.best = float(state["best"])
        self.bad_evaluations = check_int(state["bad_evaluations"], "bad_evaluations", minimum=0)
        self.cooldown_left = check_int(state["cooldown_left"], "cooldown_left", minimum=0)
        last = state["last_step"]
        self.last_step = None if last is None else check_int(last, "last_step", minimum=0)
        self.cuts = [[check_int(s, "cut step", minimum=0), check_positive(v, "cut level", "a multiplier in (0, 1]")]
                     for s, v in state["cuts"]]
