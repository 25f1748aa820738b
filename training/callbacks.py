"""Hydra callbacks: a multirun names its failed jobs, with why and where, at the end.

Hydra 1.3's basic launcher runs every job of a sweep even when some raise (hydra.core.utils.run_job
catches the exception into the JobReturn), but then re-raises only the *first* failure and exits,
so a 12-job sweep with three bad jobs shows one traceback and no list. This callback (enabled in
configs/hydra/default.yaml) records each job's outcome in `<sweep dir>/jobs.jsonl` as the job ends
(remote launchers such as submitit call on_job_end on the node, so the file also collects SLURM
jobs on a shared filesystem) and, when the multirun ends or exits with an error, prints:

    2 of 6 jobs failed (outputs/multiruns/lr_sweep/jobs.jsonl):
      job 3  optimizer.lr=-1 schedule=wsd  UserError: optimizer.lr=-1.0 is the peak learning rate ...
             run dir: outputs/multiruns/lr_sweep/3

Nothing to run by hand: `python train.py -m ...` uses it.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from training.rundir import JOBS_FILE

log = logging.getLogger(__name__)


def job_record(config: DictConfig, job_return: JobReturn) -> dict:
    """One line of jobs.jsonl: the job's number, overrides, status, error (type and first line), run dir."""
    record = {"num": int(config.hydra.job.num), "overrides": list(job_return.overrides or []),
              "status": "failed" if job_return.status == JobStatus.FAILED else "completed",
              "run_dir": str(config.hydra.runtime.output_dir)}
    if job_return.status == JobStatus.FAILED:
        err = job_return._return_value  # the exception; .return_value would re-raise it
        first_line = (str(err).strip().splitlines() or [""])[0]
        record["error"] = f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__
    return record


def read_jobs(sweep_dir: str | Path) -> list[dict]:
    path = Path(sweep_dir) / JOBS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def swept(jobs: list[dict]) -> set[str]:
    """The override keys whose values differ between jobs (the rest is common to the sweep)."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for token in job["overrides"]:
            key, _, value = token.partition("=")
            values.setdefault(key, set()).add(value)
    return {key for key, seen in values.items() if len(seen) > 1}


def failure_summary(jobs: list[dict], sweep_dir: str | Path) -> str | None:
    """The text printed at the end of a multirun with failed jobs (None if none failed). Each failed
    job shows only its swept overrides (all of them when nothing varies, e.g. a 1-job multirun)."""
    failed = sorted((j for j in jobs if j["status"] == "failed"), key=lambda j: j["num"])
    if not failed:
        return None
    keys = swept(jobs)
    lines = [f"{len(failed)} of {len(jobs)} jobs failed ({Path(sweep_dir) / JOBS_FILE}):"]
    for job in failed:
        shown = [t for t in job["overrides"] if not keys or t.partition("=")[0] in keys]
        lines.append(f"  job {job['num']}  {' '.join(shown)}  {job['error']}")
        lines.append(f"  {' ' * len(str(job['num']))}     run dir: {job['run_dir']}")
    return "\n".join(lines)


class FailedJobsSummary(Callback):
    """Record every multirun job's outcome; list the failed ones when the multirun ends."""

    def __init__(self) -> None:
        self._sweep_dir: Path | None = None
        self._printed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(config.hydra.sweep.dir)
        (self._sweep_dir / JOBS_FILE).unlink(missing_ok=True)  # this invocation's jobs only
        # Hydra skips on_multirun_end when a job failed (the sweeper re-raises the first error and
        # exits), so the summary is also printed at interpreter exit, after Hydra's own message.
        atexit.register(self._print_summary)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return  # a single run shows its own traceback
        record = job_record(config, job_return)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        with open(sweep_dir / JOBS_FILE, "a") as f:  # one short line per job: appends do not interleave
            f.write(json.dumps(record) + "\n")
        if record["status"] == "failed":
            log.error("job %d failed (%s); the sweep continues. Run dir: %s",
                      record["num"], record["error"], record["run_dir"])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._print_summary()

    def _print_summary(self) -> None:
        if self._printed or self._sweep_dir is None:
            return
        self._printed = True
        text = failure_summary(read_jobs(self._sweep_dir), self._sweep_dir)
        if text:
            print(text, file=sys.stderr, flush=True)
