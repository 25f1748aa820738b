"""Graceful stop on preemption: SIGTERM, SIGUSR1 (SLURM's warning) and SIGUSR2 (submitit's).

The loop wraps training in `StopOnSignal()`; a handler only records the signal, so the current
optimizer step finishes untouched. After each step the loop asks `stop.requested`; if set it writes
a checkpoint and calls `stop.exit()`, which hands the signal to whatever handler was there before
(submitit's: requeue the job) and otherwise exits with `REQUEUE_EXIT_CODE`, which a plain sbatch
script turns into `scontrol requeue` (README, "Multi-GPU, multi-node and SLURM"). The requeued command
resumes from that checkpoint (trainer.resume=auto). Leaving the block restores the previous handlers.

Tested by tests/test_preemption.py (`python -m pytest -q tests/test_preemption.py`), which signals a
real `python train.py` process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry". Distinct from 143 / 138
# (killed by SIGTERM / SIGUSR1 before the handler was installed), so a batch script can tell a clean,
# checkpointed stop from a crash -- though requeueing is right in both cases, the run resumes either way.
REQUEUE_EXIT_CODE = 75

# SIGUSR2 is submitit's default preemption signal (env SUBMITIT_PREEMPT_SIGNAL names another one);
# SIGUSR1 is what `sbatch --signal=USR1@120` sends; SIGTERM is what SLURM, Kubernetes and torchrun
# send before the kill.
DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")


def _signal_numbers(names) -> list[signal.Signals]:
    numbers = [getattr(signal, name) for name in names if hasattr(signal, name)]  # no USR1/2 on Windows
    extra = os.environ.get("SUBMITIT_PREEMPT_SIGNAL")
    if extra and hasattr(signal, "SIG" + extra) and getattr(signal, "SIG" + extra) not in numbers:
        numbers.append(getattr(signal, "SIG" + extra))
    return numbers


class StopOnSignal:
    """Context manager: while active, the listed signals request a stop instead of killing.

    Signal handlers can only be set from the main thread; elsewhere (e.g. a test calling fit from a
    worker thread) this is inert and `requested` stays False.
    """

    def __init__(self, names=DEFAULT_SIGNALS):
        self._names = names
        self._previous: dict[signal.Signals, object] = {}
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.requested else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Runs between bytecodes of the main thread: only record, never raise or do I/O-heavy work.
        if self.signum is None:
            self.signum = signum
        # A repeated signal changes nothing: the checkpoint is coming and its write is atomic anyway.

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for number in _signal_numbers(self._names):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def exit(self, checkpoint, peers: bool = False) -> None:
        """After the checkpoint is written: pass the signal on to the handler that was installed before
        ours (submitit's requeues the job and exits), else exit with REQUEUE_EXIT_CODE. `peers`: one rank
        of several, which all stop at this step (the launcher may SIGTERM the ranks still exiting: ignored)."""
        previous = self._previous.get(self.signum)
        self.restore()
        if peers:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the checkpoint is written; just finish exiting
        log.warning("Stopped by %s; checkpoint %s; rerun the same command to resume (exit code %d).",
                    self.name or "a signal to another rank", checkpoint, REQUEUE_EXIT_CODE)
        if callable(previous):  # a Python handler (submitit's); SIG_DFL / SIG_IGN are ints
            previous(self.signum, None)
        raise SystemExit(REQUEUE_EXIT_CODE)
