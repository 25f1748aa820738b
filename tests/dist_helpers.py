"""Helpers of tests/test_distributed.py: launch the real trainer as one plain process or under
`torchrun` in a subprocess, signal a running launch, and compare the metrics of two run directories.

Nothing here trains in the test process: every run is `python train.py ...` or
`python -m torch.distributed.run --standalone --nproc_per_node=N train.py ...`, exactly what a user
types, with the output in a log file (a pipe nobody reads while a test polls could block the trainer).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from training.rundir import METRICS_FILE, read_metrics

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "train.py"

# Keys that differ between any two runs, even two identical ones: wall clock and throughput.
VOLATILE = ("time", "tok_per_s", "mfu")
# Keys that are counts or set by the schedule, not computed from data: equal to the last bit.
EXACT = ("step", "tokens", "lr")


def trainer_command(overrides, nproc: int | None = None) -> list[str]:
    """`python train.py <overrides>` (nproc None: one process, no launcher) or the same under torchrun
    with `nproc` local processes. --standalone picks a free rendezvous port, so launches of parallel
    test sessions do not collide."""
    if nproc is None:
        return [sys.executable, str(TRAIN), *overrides]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(TRAIN), *overrides]


def _env() -> dict:
    # One thread per process: two ranks on two cores, and torchrun would set it anyway (with a warning).
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run(command, log_file: Path, cwd: Path = ROOT, timeout: float = 300) -> tuple[int, str]:
    """Run a launch to its end; (exit status, its stdout + stderr)."""
    with open(log_file, "w") as out:
        proc = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=_env(),
                              timeout=timeout)
    return proc.returncode, Path(log_file).read_text()


def start(command, log_file: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """Start a launch in the background (stop it with `finish`)."""
    with open(log_file, "w") as out:  # the child holds its own copy of the descriptor
        return subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=_env())


def finish(proc: subprocess.Popen, timeout: float = 300) -> int:
    """Wait for a started launch; kill it (and its workers) if it outlives `timeout` or the test."""
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            for pid in children(proc.pid):
                _kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (torchrun's workers), from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # it ended on its own meanwhile
        pass


def last_train_step(run_dir: Path) -> int:
    """The highest step with a logged train/loss in run_dir's metrics (0 when none yet). Tolerates a
    half-written last line: the trainer may be appending while we read."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()
             if line.endswith("}") and '"train/loss"' in line]
    return max(steps, default=0)


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, log_file: Path, timeout: float = 300) -> int:
    """Poll until train/loss of `step` (or later) is logged; the step reached. Fails if the launch ends first."""
    deadline = time.monotonic() + timeout
    while (reached := last_train_step(run_dir)) < step:
        assert proc.poll() is None, f"launch ended (status {proc.returncode}) before step {step}:\n" \
                                    + Path(log_file).read_text()[-4000:]
        assert time.monotonic() < deadline, f"step {step} not logged in {timeout} s"
        time.sleep(0.02)
    return reached


def events(run_dir: Path, after: int = -1) -> list[dict]:
    """run_dir's metric events with step > `after`, without the VOLATILE keys."""
    return [{k: v for k, v in e.items() if k not in VOLATILE}
            for e in read_metrics(Path(run_dir)) if e["step"] > after]


def curve_mismatches(got: list[dict], want: list[dict], rtol: dict[str, float]) -> list[str]:
    """Differences between two event lists: the same events with the same keys in the same order,
    EXACT keys equal, every other number within its key's relative tolerance `rtol[key]`. Empty when
    they agree."""
    if [(e["step"], sorted(e)) for e in got] != [(e["step"], sorted(e)) for e in want]:
        return [f"different events:\n got  {[(e['step'], sorted(e)) for e in got]}\n"
                f" want {[(e['step'], sorted(e)) for e in want]}"]
    bad = []
    for g, w in zip(got, want):
        for key in w:
            a, b = g[key], w[key]
            same = a == b if key in EXACT or not isinstance(b, float) else \
                math.isclose(a, b, rel_tol=rtol[key], abs_tol=0.0)
            if not same:
                bad.append(f"step {w['step']} {key}: {a!r} vs {b!r} (rel {abs(a - b) / abs(b):.2e})"
                           if isinstance(b, float) and b else f"step {w['step']} {key}: {a!r} vs {b!r}")
    return bad


def max_relative_difference(got: list[dict], want: list[dict], key: str) -> float:
    """Largest |a - b| / |b| of `key` over two matching event lists (how a tolerance was measured)."""
    return max((abs(g[key] - w[key]) / abs(w[key]) for g, w in zip(got, want) if w.get(key)), default=0.0)


def state_mismatches(got, want, rtol: float, where: str = "") -> list[str]:
    """Differences between two checkpoint states (nested dicts / lists of tensors and plain values):
    the same structure, plain values equal, each tensor within `rtol` of its own scale,
    max|a - b| <= rtol * max|b| (Adam's moments span decades, so element-wise relative errors of the
    tiny ones say nothing)."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or got.keys() != want.keys():
            return [f"{where or 'state'}: keys {sorted(map(str, got))} vs {sorted(map(str, want))}"]
        return [m for k in want for m in state_mismatches(got[k], want[k], rtol, f"{where}.{k}")]
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return [f"{where}: {got!r} vs {want!r}"]
        return [m for i, (g, w) in enumerate(zip(got, want)) for m in state_mismatches(g, w, rtol, f"{where}[{i}]")]
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            return [f"{where}: {getattr(got, 'shape', got)} vs {want.shape} {want.dtype}"]
        scale = want.abs().max().item() if want.numel() else 0.0
        diff = (got - want).abs().max().item() if want.numel() else 0.0
        return [] if diff <= rtol * scale else [f"{where}: max diff {diff:.2e} vs scale {scale:.2e}"]
    return [] if got == want else [f"{where}: {got!r} vs {want!r}"]


def signal_workers(proc: subprocess.Popen, signum: int) -> list[int]:
    """Send `signum` to every worker of a torchrun launch (not to torchrun itself), as a cluster's
    scheduler does when it signals every process of a job step; the workers' pids."""
    workers = children(proc.pid)
    assert workers, "the launch has no worker processes"
    for pid in workers:
        _kill(pid, signum)
    return workers
