"""Multi-process training on CPU (gloo): two `torchrun` processes give one process's losses at the
same global batch, with DDP and with FSDP; checkpoints move between world sizes; a signalled world-2
run resumes exactly; the ranks share one run directory; a global batch that does not split fails.

    python -m pytest -q tests/test_distributed.py -p no:cacheprovider

Every run is the real trainer launched in a subprocess (`python train.py` for one process,
`python -m torch.distributed.run --standalone --nproc_per_node=2 train.py` for two), shared by the
tests through module fixtures: 10 launches of a 30-step tiny model (one by `accelerate launch`), ~100 s on 2 cores.
If torchrun or gloo is missing these tests fail; they are not skipped.

Tolerances (RTOL below). Two ranks and one process see the same 16 sequences per update
(data/loader.py) but add them up in another order: DDP all-reduces the two ranks' gradients where one
process accumulates its micro-batches, FSDP reduce-scatters shards, the logged losses are
all-reduced. fp32 addition is not associative, so the numbers agree to rounding, which AdamW then
carries through 30 updates. Measured on this machine (torch 2.13 CPU, fp32), largest relative
difference over the 30 steps:

    key             DDP      FSDP     tolerance
    train/loss      1.3e-7   4.5e-7   1e-5
    val/loss        3.9e-8   3.0e-7   1e-5
    final/val_loss  2.7e-10  3.1e-7   1e-5
    grad_norm       1.2e-7   5.4e-5   2e-4

grad_norm under FSDP is the outlier, and not a bug: it is the root of a sum of 394k squares, and
torch's fp32 CPU norm of the 4096 x 64 embedding gradient is itself off by ~4e-5 against float64
(one process: 0.497518, FSDP's two half-norms: 0.497529, float64: 0.497537, same gradient). The
clip at 0.5 carries that difference into the updates, hence checkpoint tensors within 2e-4 of their
scale (measured 5e-5). Each tolerance is 4x or more above what was measured, and the loss tolerance
is 37x below the smallest step-to-step change of the 1-process run's loss (relative 3.7e-4; median 4e-3).
Within one world size (kill and resume) nothing is reordered and the curves are compared exactly.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from scripts.bench_scaling import Measurement, overrides_for, scaling_table
from tests.dist_helpers import (TRAIN, curve_mismatches, events, finish, run, signal_workers, start, state_mismatches,
                                trainer_command, wait_for_step)
from training import checkpoint, preemption
from training.rundir import checkpoint_dir

RTOL = {"train/loss": 1e-5, "val/loss": 1e-5, "final/val_loss": 1e-5, "grad_norm": 2e-4}  # see the docstring
STATE_RTOL = 2e-4  # checkpoint tensors: max |difference| / max |value|, per tensor
STEPS = 30
# A 2-layer model, 16 sequences of 32 tokens per update, every step logged, evaluation on 3 fixed
# batches of 16 (3 batches over 2 ranks: an uneven split) every 10 steps and a checkpoint every 10.
# The clip at 0.5 sits below the early grad norms (~0.66), so the all-reduced norm scales the update.
BASE = [
    "model.n_layer=2", "model.n_head=2", "model.d_model=64", "trainer.seq_len=32",
    "trainer.batch_size=16", f"trainer.max_steps={STEPS}", "trainer.warmup_steps=4",
    "trainer.eval_interval=10", "trainer.eval_batches=3", "trainer.eval_batch_size=16",
    "trainer.log_interval=1", "trainer.checkpoint_interval=10", "trainer.keep_checkpoints=0",
    "trainer.progress=false", "trainer.device=cpu", "trainer.grad_clip=0.5",
]
ONE = BASE + ["trainer.micro_batch_size=8"]                             # 1 process, 2 micro-batches
DDP = BASE + ["trainer.micro_batch_size=4", "trainer.parallel=ddp"]     # 2 x 2 micro-batches (no_sync)
FSDP = BASE + ["trainer.micro_batch_size=8", "trainer.parallel=fsdp"]   # 2 x 1 micro-batch
# Hydra's default run dir is outputs/runs/${now:%Y-%m-%d_%H-%M-%S}; with microseconds, two ranks
# resolve different directories for certain, so the FSDP launch proves they still share rank 0's.
NOW_MICROSECONDS = "hydra.run.dir=outputs/runs/${now:%Y-%m-%d_%H-%M-%S-%f}"


@dataclass
class Launch:
    run_dir: Path
    output: str
    cwd: Path


def _launch(tmp: Path, overrides, nproc=None, cwd: Path | None = None) -> Launch:
    """One successful launch; the run dir is hydra.run.dir when given, else the one with metrics
    under cwd/outputs/runs (a `${now:}` directory)."""
    cwd = cwd or tmp
    status, output = run(trainer_command(overrides, nproc), tmp / "launch.log", cwd=cwd)
    assert status == 0, output[-4000:]
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")]
    if given and "${" not in given[0]:
        return Launch(Path(given[0]), output, cwd)
    with_metrics = sorted(p.parent for p in cwd.glob("outputs/runs/*/metrics.jsonl"))
    assert len(with_metrics) == 1, f"expected one run dir with metrics, found {with_metrics}\n{output[-3000:]}"
    return Launch(with_metrics[0], output, cwd)


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    return _launch(tmp, ONE + [f"hydra.run.dir={tmp / 'run'}"])


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """World 2, DDP, Hydra's default `${now:}` run dir under the fixture's own cwd."""
    return _launch(tmp_path_factory.mktemp("ddp"), DDP, nproc=2)


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory):
    return _launch(tmp_path_factory.mktemp("fsdp"), FSDP + [NOW_MICROSECONDS], nproc=2)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_log_the_one_process_curve(parallel, one, request):
    """(a, b) train/loss, grad_norm, lr, val/loss at every logged step and final/val_loss."""
    two = request.getfixturevalue(parallel)
    got, want = events(two.run_dir), events(one.run_dir)
    assert {"train/loss", "grad_norm", "val/loss", "final/val_loss"} <= set().union(*want)
    assert len(want) == STEPS + 4 + 1  # every step, val/loss at 0, 10, 20 and 30, final/val_loss
    assert curve_mismatches(got, want, RTOL) == []


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_a_two_process_checkpoint_holds_the_one_process_state(parallel, one, request):
    """The state gathered to rank 0 is today's unsharded format: the same names (no "module." or FSDP
    prefixes), shapes, data position and, to the tolerance of the docstring, values."""
    two = request.getfixturevalue(parallel)
    got, want = (checkpoint.load(checkpoint_dir(run.run_dir, STEPS)) for run in (two, one))
    assert got["model"].keys() == want["model"].keys()
    assert state_mismatches({k: v for k, v in got.items() if k != "rng"},
                            {k: v for k, v in want.items() if k != "rng"}, STATE_RTOL) == []


@pytest.mark.slow
def test_checkpoints_move_between_world_sizes(one, ddp, tmp_path):
    """(c) 2 -> 1: one process branched from the DDP run's step 10 continues like the DDP run's own
    steps 11..30; 1 -> 2: two DDP processes branched from the 1-process run continue like it."""
    to_one = _launch(tmp_path, ONE + [f"trainer.init_from={checkpoint_dir(ddp.run_dir, 10)}",
                                      f"hydra.run.dir={tmp_path / 'to_one'}"])
    to_two = _launch(tmp_path, DDP + [f"trainer.init_from={checkpoint_dir(one.run_dir, 10)}",
                                      f"hydra.run.dir={tmp_path / 'to_two'}"], nproc=2)
    for branch, parent in ((to_one, ddp), (to_two, one)):
        got = events(branch.run_dir)
        assert got[0] == {"step": 10, "tokens": 10 * 16 * 32, "val/loss": pytest.approx(
            next(e["val/loss"] for e in events(parent.run_dir) if e["step"] == 10 and "val/loss" in e),
            rel=RTOL["val/loss"])}  # the branch's first point: the parent's weights at step 10
        assert curve_mismatches(got[1:], events(parent.run_dir, after=10), RTOL) == []


@pytest.mark.slow
def test_a_signalled_world_2_run_checkpoints_and_resumes_exactly(ddp, tmp_path):
    """(d) SIGTERM to torchrun (it forwards it to the workers), then SIGUSR1 to the workers alone
    (what a scheduler that signals every process of a job does): each time every rank finishes its
    step and rank 0 checkpoints that step. torchrun itself exits 1 either way; signalled directly, the
    workers exit 75, and torchrun's failure report shows the first one's 75 (it then SIGTERMs the
    others, which by then have their checkpoint). The third launch finishes, and its metrics equal the
    uninterrupted run's to the last bit: same world size, same summation order."""
    run_dir = tmp_path / "run"
    command = trainer_command(DDP + [f"hydra.run.dir={run_dir}"], nproc=2)
    stops = []
    for signum, to_workers in ((signal.SIGTERM, False), (signal.SIGUSR1, True)):
        log_file = tmp_path / f"{signum.name}.log"
        proc = start(command, log_file, cwd=tmp_path)
        try:
            wait_for_step(proc, run_dir, (stops[-1] if stops else 0) + 2, log_file)
            if to_workers:
                signal_workers(proc, signum)
            else:
                proc.send_signal(signum)
        finally:
            status = finish(proc)
        output = log_file.read_text()
        latest = checkpoint.latest_checkpoint(run_dir)
        assert status != 0 and f"Stopped by {signum.name}" in output, output[-4000:]
        if to_workers:  # torchrun's failure report names each worker's status
            assert output.count(f"exitcode  : {preemption.REQUEUE_EXIT_CODE}") >= 1, output[-4000:]
        stops.append(int(checkpoint.load(latest)["step"]))
        assert latest == checkpoint_dir(run_dir, stops[-1]), output[-4000:]
        assert max(e["step"] for e in events(run_dir)) == stops[-1]  # nothing logged past the stop
    assert 2 <= stops[0] < stops[1] < STEPS, stops  # two stops mid-run
    status, output = run(command, tmp_path / "rerun.log", cwd=tmp_path)
    assert status == 0, output[-4000:]
    assert events(run_dir) == events(ddp.run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_both_ranks_write_one_run_directory(parallel, request):
    """(e) Launched without a fixed hydra.run.dir (ddp: Hydra's `${now:}` default; fsdp: the same to
    the microsecond, so that the two ranks resolve different names): one run directory, rank 0's,
    holds everything, and no other directory is left behind under outputs/runs."""
    two = request.getfixturevalue(parallel)
    assert sorted((two.cwd / "outputs" / "runs").iterdir()) == [two.run_dir]
    assert {"config.yaml", "metrics.jsonl", "checkpoints"} <= {p.name for p in two.run_dir.iterdir()}


@pytest.mark.slow
def test_a_global_batch_that_does_not_split_over_the_ranks_fails_by_name(tmp_path):
    """(f) 12 sequences in micro-batches of 4 is accumulation 3 in one process, but no whole number at
    world size 2 (12 / (4 x 2)): one message naming the values (train.py prints a user's error alone,
    not a traceback), before any run directory is written."""
    overrides = BASE + ["trainer.batch_size=12", "trainer.micro_batch_size=4", "trainer.parallel=ddp",
                        f"hydra.run.dir={tmp_path / 'run'}"]
    status, output = run(trainer_command(overrides, nproc=2), tmp_path / "launch.log", cwd=tmp_path)
    assert status != 0
    errors = [line for line in output.splitlines() if line.startswith("trainer.batch_size=12 ")]
    assert errors and all("batch_size=12" in e and "micro_batch_size=4" in e and "2" in e for e in errors), \
        output[-4000:]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_the_scaling_table_computes_speed_up_and_efficiency():
    """scripts/bench_scaling.py's arithmetic on made-up throughputs: speed-up = tok/s over the same
    parallel mode's world-1 tok/s, efficiency = speed-up / world size."""
    rows = scaling_table([Measurement("ddp", 1, 1000.0), Measurement("ddp", 2, 1500.0),
                          Measurement("fsdp", 2, 900.0), Measurement("fsdp", 1, 1200.0),
                          Measurement("ddp", 4, 3600.0)])
    assert [(r["parallel"], r["world_size"]) for r in rows] == [("ddp", 1), ("ddp", 2), ("ddp", 4),
                                                                 ("fsdp", 1), ("fsdp", 2)]
    assert [r["speed_up"] for r in rows] == pytest.approx([1.0, 1.5, 3.6, 1.0, 0.75])
    assert [r["efficiency"] for r in rows] == pytest.approx([1.0, 0.75, 0.9, 1.0, 0.375])
    without_baseline = scaling_table([Measurement("ddp", 2, 1500.0)])
    assert without_baseline[0]["speed_up"] is None and without_baseline[0]["efficiency"] is None


def test_the_benchmark_grows_the_global_batch_only_for_weak_scaling(tmp_path):
    """Weak scaling: the per-process micro-batch stays and the global batch is micro x W; strong:
    the global batch stays, and one that does not split over W processes is refused by name."""
    def batch_sizes(scaling, world_size, global_batch=24):
        args = SimpleNamespace(scaling=scaling, micro_batch=4, global_batch=global_batch, model="tiny",
                               device="cpu", steps=10, seq_len=32, override=[])
        given = dict(o.split("=", 1) for o in overrides_for(args, "ddp", world_size, tmp_path))
        return int(given["trainer.batch_size"]), int(given["trainer.micro_batch_size"])

    assert [batch_sizes("weak", w) for w in (1, 2, 4)] == [(4, 4), (8, 4), (16, 4)]
    assert [batch_sizes("strong", w) for w in (1, 2, 3)] == [(24, 4), (24, 4), (24, 4)]
    with pytest.raises(ValueError, match="--global-batch 24 does not split into micro-batches of 4 over 4"):
        batch_sizes("strong", 4)


@pytest.mark.slow
def test_accelerate_launch_runs_the_same_ddp_job(ddp, tmp_path):
    """`accelerate launch` (what requirements.txt keeps accelerate for) starts the same two gloo ranks
    as torchrun: the same world size and engine, so the very same curve, compared exactly."""
    import socket

    with socket.socket() as s:  # a free rendezvous port: parallel test sessions must not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), str(TRAIN), *DDP, f"hydra.run.dir={tmp_path / 'run'}"]
    status, output = run(command, tmp_path / "launch.log", cwd=tmp_path)
    assert status == 0, output[-4000:]
    assert "x 2 processes (ddp)" in output
    assert events(tmp_path / "run") == events(ddp.run_dir)
