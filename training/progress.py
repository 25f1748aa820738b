"""Training progress for a terminal and for batch logs: one reporter, two renderings.

On a terminal (bar=True and the stream is a TTY): a tqdm bar with loss / lr / tok_s in its postfix;
log records printed meanwhile go through tqdm.write (tqdm.contrib.logging), so they do not tear it.
Anywhere else (SLURM logs, pipes, trainer.progress=false): no carriage returns, one plain line per
train event of the loop (every trainer.log_interval steps) through the "train" logger, which Hydra's
job logging prints to the console and to the run's train.log:

    step 120/400 | loss 4.5123 | lr 1.20e-03 | 12,345 tok/s | MFU 31.2% | ETA 3m12s

Validation results are a line in both renderings. ETA = the steps left / the wall-clock rate of the
steps done by this process (a resumed run's earlier steps are not its own), evaluations included.

    with Progress(total=t.max_steps, initial=step, log_interval=t.log_interval, bar=t.progress) as progress:
        ...; progress.update(step); progress.report(event)        # event: a metrics.jsonl event
        for batch in progress.evaluating(batches, total=len(batches), desc="val"): ...

Tested by tests/test_progress.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("train")

QUIET_EVAL_BATCHES = 10   # an evaluation of at most this many batches adds no line in batch logs
EVAL_TENTHS_ABOVE = 50    # longer ones also log a line every ~10% of their batches


def duration(seconds: float) -> str:
    """45s, 3m12s, 2h05m07s: the ETA / elapsed-time format of the log lines."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _console_logging() -> bool:
    """Whether the root logger prints to the console (Hydra's job logging does); tqdm.contrib.logging
    redirects exactly those handlers."""
    return any(isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr)
               for h in logging.root.handlers)


class Progress:
    """Progress of steps `initial`..`total` (see the module docstring). `log_interval`: the loop's
    trainer.log_interval; in batch logs a train event prints when its step is a multiple of it or the
    last step (not the extra events at off-interval checkpoint steps). `stream`: where the bar is drawn
    (default sys.stderr); `clock`: seconds, monotonic (tests pass a fake one)."""

    def __init__(self, total: int, initial: int = 0, log_interval: int = 1, bar: bool = True, stream=None,
                 clock: Callable[[], float] = time.monotonic):
        if total < 0 or not 0 <= initial or log_interval < 1:
            raise ValueError(f"Progress(total={total}, initial={initial}, log_interval={log_interval}): expected "
                             "total >= 0, initial >= 0 and log_interval >= 1 (trainer.log_interval)")
        self.total, self.initial, self.log_interval = total, initial, log_interval
        self.step = initial
        self._clock = clock
        self._start = clock()
        self._stream = sys.stderr if stream is None else stream
        self._exit = contextlib.ExitStack()
        self._bar = None
        if bar and getattr(self._stream, "isatty", lambda: False)():
            self._bar = tqdm(total=total, initial=initial, desc="train", unit="step", file=self._stream,
                             dynamic_ncols=True)
            self._exit.callback(self._bar.close)
            if _console_logging():  # log records printed above the bar, not through it
                self._exit.enter_context(logging_redirect_tqdm())

    # --- per step and per log event ------------------------------------------------------------
    def update(self, step: int) -> None:
        """Called after every update with the number of updates completed: cheap, no I/O in batch mode."""
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
        self.step = step

    def eta(self) -> float | None:
        """Seconds until `total` at this process's rate so far; None before its first step."""
        done, elapsed = self.step - self.initial, self._clock() - self._start
        if done <= 0 or elapsed <= 0:
            return None
        return (self.total - self.step) * elapsed / done

    def report(self, event: dict) -> None:
        """A metrics.jsonl event: a train event (train/loss, lr, tok_per_s, mfu) updates the bar's postfix
        or prints a line; a val/loss or final/val_loss event prints a line in both renderings."""
        step = int(event.get("step", self.step))
        for key, what in (("val/loss", ""), ("final/val_loss", " (whole validation split)")):
            if event.get(key) is not None:
                self.message(f"step {step}/{self.total} | {key} {event[key]:.4f}{what}")
        if "train/loss" not in event and "lr" not in event:
            return
        if self._bar is not None:
            self._bar.set_postfix(self._postfix(event), refresh=True)
        elif step % self.log_interval == 0 or step == self.total:
            log.info(self.line(event))

    def line(self, event: dict) -> str:
        """The batch-log line of a train event; absent values are left out."""
        parts = [f"step {int(event.get('step', self.step))}/{self.total}"]
        if event.get("train/loss") is not None:
            parts.append(f"loss {event['train/loss']:.4f}")
        if event.get("lr") is not None:
            parts.append(f"lr {event['lr']:.2e}")
        if event.get("tok_per_s") is not None:
            parts.append(f"{event['tok_per_s']:,.0f} tok/s")
        if event.get("mfu") is not None:
            parts.append(f"MFU {100 * event['mfu']:.1f}%")
        if event.get("skipped_updates"):
            parts.append(f"{event['skipped_updates']} updates skipped")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        return " | ".join(parts)

    @staticmethod
    def _postfix(event: dict) -> dict:
        shown = {"loss": ("train/loss", "{:.3f}"), "lr": ("lr", "{:.2e}"), "tok_s": ("tok_per_s", "{:,.0f}")}
        return {name: fmt.format(event[key]) for name, (key, fmt) in shown.items() if event.get(key) is not None}

    def message(self, text: str) -> None:
        """A line for the user: a log record (above the bar on a terminal)."""
        if self._bar is not None and not _console_logging():  # nobody prints the record: write it by the bar
            self._bar.write(text, file=self._stream)
        log.info(text)

    # --- evaluations ------------------------------------------------------------------------------
    def evaluating(self, batches: Iterable, total: int | None = None, desc: str = "eval") -> Iterator:
        """`batches`, passed through with progress: a transient bar on a terminal; in batch logs a line
        at the start and one at the end of an evaluation of more than QUIET_EVAL_BATCHES batches (or an
        unknown number), and one every ~10% of more than EVAL_TENTHS_ABOVE."""
        if total is None and hasattr(batches, "__len__"):
            total = len(batches)
        if self._bar is not None:
            yield from tqdm(batches, total=total, desc=desc, leave=False, file=self._stream, dynamic_ncols=True)
            return
        if total is not None and total <= QUIET_EVAL_BATCHES:
            yield from batches
            return
        every = math.ceil(total / 10) if total is not None and total > EVAL_TENTHS_ABOVE else None
        start = self._clock()
        log.info("%s: %s batches", desc, "an unknown number of" if total is None else f"{total:,}")
        done = 0
        for batch in batches:
            yield batch
            done += 1  # the consumer asked for the next one: this one is evaluated
            if every and done % every == 0 and done < total:
                log.info("%s: %d/%d batches (%d%%), %s", desc, done, total, 100 * done // total,
                         duration(self._clock() - start))
        log.info("%s: %d batches in %s", desc, done, duration(self._clock() - start))

    # --- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._exit.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
