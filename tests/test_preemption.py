"""Preemption: SIGTERM / SIGUSR1 / SIGUSR2 stop the trainer after the step in flight, with a checkpoint
at that step and exit code 75, and rerunning the same command resumes to metrics identical to an
uninterrupted run. Also the launcher configs (hydra/launcher=submitit_slurm) against the plugin.

    python -m pytest -q tests/test_preemption.py -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from hydra import compose, initialize_config_dir
from submitit.slurm.slurm import _make_sbatch_string

import train as train_module
from data.loader import BatchLoader
from tests.conftest import CONFIG_DIR, REFERENCE, ROOT, compose_config
from training import checkpoint, preemption
from training.rundir import read_metrics

pytestmark = pytest.mark.slow
COMPARED = ("step", "tokens", "train/loss", "val/loss", "final/val_loss", "lr", "grad_norm")


def comparable(run_dir):
    """The metrics that must not depend on an interruption (throughput and MFU do)."""
    return [{k: e[k] for k in COMPARED if k in e} for e in read_metrics(run_dir)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 20-step run (conftest.REFERENCE) that every interrupted run must reproduce."""
    run_dir = tmp_path_factory.mktemp("reference")
    train_module.train(compose_config(REFERENCE), run_dir)
    return comparable(run_dir)


def _train_steps_logged(run_dir) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()
             if line.endswith("}") and "train/loss" in line]
    return max(steps, default=0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_signal_checkpoints_exits_75_and_the_rerun_resumes_exactly(signum, reference, tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "train.py", *REFERENCE, f"hydra.run.dir={run_dir}"]
    log_file = tmp_path / "train.out"  # a file, not a pipe: nobody reads a pipe while we poll
    with open(log_file, "w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 300
            while _train_steps_logged(run_dir) < 2:  # the loop (and so the handler) is running
                assert proc.poll() is None, log_file.read_text()[-3000:]
                assert time.monotonic() < deadline, "no training step logged in 300 s"
                time.sleep(0.05)
            proc.send_signal(signum)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:  # a failed assertion must not leave a trainer running
                proc.kill()
    output = log_file.read_text()
    assert proc.returncode == preemption.REQUEUE_EXIT_CODE, output[-3000:]
    stopped = _train_steps_logged(run_dir)
    assert 2 <= stopped < 20, output[-3000:]  # stopped mid-run, not at the end
    assert checkpoint.latest_checkpoint(run_dir) == checkpoint.checkpoint_dir(run_dir, stopped)
    assert checkpoint.load(checkpoint.latest_checkpoint(run_dir))["step"] == stopped
    assert f"Stopped by {signum.name}" in output and not (run_dir / "loss.png").exists()

    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert comparable(run_dir) == reference


def test_a_previous_handler_gets_the_signal_after_the_checkpoint(reference, tmp_path, monkeypatch):
    """Under submitit its own handler (checkpoint + requeue) is installed before ours: it must still
    run, after our checkpoint is on disk, and be back in place afterwards. Deterministic: the signal
    is sent from inside step 13's first micro-batch."""
    seen = []

    def submitit_like(signum, frame):
        seen.append((signum, [p.name for p in checkpoint.list_checkpoints(tmp_path)]))

    calls = {"n": 0}
    original = BatchLoader.next_batch

    def signalling(self):
        calls["n"] += 1
        if calls["n"] == 2 * 12 + 1:  # 2 micro-batches per step: the first of step 13
            os.kill(os.getpid(), signal.SIGUSR2)
        return original(self)

    monkeypatch.setattr(BatchLoader, "next_batch", signalling)
    term_before = signal.getsignal(signal.SIGTERM)
    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with pytest.raises(SystemExit) as stopped:
            train_module.train(compose_config(REFERENCE), tmp_path)
        assert signal.getsignal(signal.SIGUSR2) is submitit_like  # restored on the way out
        assert signal.getsignal(signal.SIGTERM) == term_before
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert stopped.value.code == preemption.REQUEUE_EXIT_CODE
    assert seen == [(signal.SIGUSR2, ["step_0000010", "step_0000013"])]
    assert calls["n"] == 2 * 13  # step 13 finished, step 14 never started

    monkeypatch.setattr(BatchLoader, "next_batch", original)
    train_module.train(compose_config(REFERENCE), tmp_path)
    assert comparable(tmp_path) == reference


def test_outside_the_main_thread_nothing_is_installed():
    result = {}

    def worker():
        with preemption.StopOnSignal() as stop:
            result["installed"] = signal.getsignal(signal.SIGTERM)
            result["requested"] = stop.requested

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert result == {"installed": signal.getsignal(signal.SIGTERM), "requested": False}


def test_slurm_launcher_config_requeues_and_sends_a_caught_signal_early():
    """hydra/launcher=slurm composes with the plugin's schema (a misspelt key fails), requeues on
    timeout, and the sbatch script submitit writes from it asks SLURM for a signal the trainer catches,
    signal_delay_s before the time limit."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
        with pytest.raises(Exception, match="signal_delay"):
            compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.signal_delay=60"],
                    return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.max_num_timeout >= 1 and launcher.tasks_per_node == 1
    sbatch = _make_sbatch_string(command="python train.py", folder="/tmp/x", time=launcher.timeout_min,
                                 signal_delay_s=launcher.signal_delay_s)
    sent = re.search(r"#SBATCH --signal=(\w+)@(\d+)", sbatch)
    assert sent and int(sent.group(2)) == launcher.signal_delay_s >= 60
    assert "SIG" + sent.group(1) in preemption.DEFAULT_SIGNALS
