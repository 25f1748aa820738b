"""No non-finite value reaches a checkpoint: `trainer.on_nonfinite = stop | skip`.

Every update's pre-clip gradient norm is checked on the device. Under `stop` (the default) the check
costs no synchronisation: a flag accumulates on the device and is read at the next log event or
save, where the loop synchronises anyway; before any save the parameters themselves are checked too
(one fused reduction). A non-finite value stops the run *before* anything is written, naming the
last good checkpoint. Under `skip` a non-finite update is dropped (no parameter or optimizer-state
change; the step, its data and its LR are consumed) at the price of one device sync per update,
at most `trainer.max_nonfinite_skips` times per process run; a skipped update is logged as
`skipped_updates` (the running count) in metrics.jsonl.

    guard = NonFiniteGuard(cfg.trainer, device, world, run_dir)
    if guard.admit(grad_norm, step): optimizer.step()
    guard.check(step, lr, params=model.parameters())   # before a save: raises FloatingPointError

Tested by tests/test_nonfinite.py (a NaN injected into a gradient at a checkpoint step).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from training import checkpoint
from training.distributed import World, any_rank

log = logging.getLogger(__name__)

POLICIES = ("stop", "skip")


def params_finite(params) -> torch.Tensor:
    """One device boolean: every parameter (this rank's shard under FSDP) is finite."""
    tensors = [p.to_local() if hasattr(p, "to_local") else p for p in params]
    tensors = [t.detach() for t in tensors if t.numel()]
    if not tensors:
        return torch.ones((), dtype=torch.bool)
    # The sum of |p| is inf or nan exactly when some element is (or the sum overflows, which a
    # trained network's parameters never approach); the norms come from one fused kernel.
    return torch.isfinite(torch.stack(torch._foreach_norm(tensors, 1.0)).sum())


class NonFiniteGuard:
    def __init__(self, t, device: torch.device, world: World, run_dir: str | Path):
        self.policy, self.max_skips = t.on_nonfinite, int(t.max_nonfinite_skips)
        if self.policy not in POLICIES:
            raise ValueError(f"trainer.on_nonfinite={self.policy}: use stop or skip.")
        self.device, self.world, self.run_dir = device, world, Path(run_dir)
        self.seen = torch.zeros((), dtype=torch.bool, device=device)  # a non-finite norm since the last check
        self.first_bad: int | None = None
        self.skipped = 0

    def admit(self, grad_norm: torch.Tensor, step: int) -> bool:
        """Whether the update of (0-based) `step` may be applied. The norm is the all-reduced global one,
        the same on every rank, so every rank decides alike."""
        finite = torch.isfinite(grad_norm)
        if self.policy == "stop":
            self.seen |= ~finite
            return True
        if bool(finite.item()):
            return True
        self.skipped += 1
        log.warning("Non-finite gradient norm at update %d: update skipped (%d of at most %d, "
                    "trainer.max_nonfinite_skips).", step + 1, self.skipped, self.max_skips)
        if self.skipped > self.max_skips:
            self._raise(f"{self.skipped} updates had a non-finite gradient norm (the last at update {step + 1}), "
                        f"more than trainer.max_nonfinite_skips={self.max_skips}")
        return False

    def check(self, step: int, lr: float, loss: float | None = None, params=None) -> None:
        """Raise FloatingPointError, before anything is written, if a non-finite gradient norm was seen
        since the last check, `loss` is non-finite, or (given `params`) a parameter is non-finite."""
        bad = [f"the training loss is {loss}"] if loss is not None and not math.isfinite(loss) else []
        if any_rank(self.seen, self.device, self.world):
            bad.append("a gradient norm was non-finite since the previous log event")
        if params is not None and any_rank(~params_finite(params).to(self.device), self.device, self.world):
            bad.append("the parameters hold non-finite values")
        if bad:
            self._raise(f"at step {step} (lr {lr:.3g}) {' and '.join(bad)}")

    def _raise(self, what: str) -> None:
        good = checkpoint.latest_checkpoint(self.run_dir)
        raise FloatingPointError(
            f"Training diverged: {what}; stopped before saving anything. Last good checkpoint: {good or '(none)'}. "
            f"Lower optimizer.lr or warm up longer (trainer.warmup_steps) and branch from that checkpoint "
            f"(trainer.init_from=...), or let rare bad batches pass with trainer.on_nonfinite=skip.")
