"""Benchmark: the cost of logging every update's gradient norms (trainer.log_grad_norms, grad_norms.bin).

    python -m scripts.bench_grad_norms                        # tiny model, 300 steps, 4 repeats of each
    python -m scripts.bench_grad_norms --steps 200 --repeats 6 model.n_layer=4 model.d_model=128

Runs the real trainer in this process (train.train on configs composed as `python train.py` would:
the tests' tiny model and loop on the embedded data, CPU) with trainer.log_grad_norms=false and =true,
alternating (off, on, on, off, ...) so that a drift of the machine's speed hits both alike. Throughput
is the trainer's own: each train event's `tok_per_s` covers the updates since the previous event,
evaluation and checkpoints excluded, the norms' device-side l1 and their write at log events included;
the first event of each run (allocation, first-touch costs) is dropped. Prints steps/s of every run, the
median per setting and the ratio on/off (1.00 = free). Extra arguments are Hydra overrides for both.
--threads sets torch's intra-op threads (default 1: on a shared or small machine, more threads than free
cores make the timing wait on the scheduler rather than measure the work).
"""
import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

from train import train
from training.rundir import read_grad_norms, read_metrics
from training.setup import compose

# The tests' tiny model and loop (tests/conftest.py TINY), without evaluation or intermediate checkpoints.
TINY = ["model.n_layer=2", "model.n_head=2", "model.d_model=64", "trainer.seq_len=32", "trainer.batch_size=8",
        "trainer.micro_batch_size=4", "trainer.warmup_steps=10", "trainer.eval_interval=0",
        "trainer.eval_batches=2", "trainer.eval_batch_size=128", "trainer.checkpoint_interval=0",
        "trainer.keep_checkpoints=0", "trainer.progress=false", "trainer.device=cpu", "logger=jsonl"]


def steps_per_second(run_dir: Path, tokens_per_step: int) -> float:
    """Updates per second over the run's train events after the first: sum of steps / sum of their times."""
    events = [e for e in read_metrics(run_dir) if e.get("tok_per_s")]
    steps = [e["step"] for e in events]
    spans = [(b - a, e["tok_per_s"]) for a, b, e in zip(steps, steps[1:], events[1:])]
    if not spans:
        raise ValueError(f"{run_dir}: fewer than two train events; use more --steps or a smaller trainer.log_interval")
    seconds = sum(n * tokens_per_step / rate for n, rate in spans)
    return sum(n for n, _ in spans) / seconds


def measure(overrides: list[str], log_norms: bool, workdir: Path) -> tuple[float, float]:
    """One run -> (steps/s from the logged throughput, wall seconds of train())."""
    cfg = compose(overrides + [f"trainer.log_grad_norms={str(log_norms).lower()}"])
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    start = time.perf_counter()
    train(cfg, run_dir)
    wall = time.perf_counter() - start
    logged = len(read_grad_norms(run_dir))
    assert logged == (cfg.trainer.max_steps if log_norms else 0), f"{logged} grad-norm records"  # the switch works
    return steps_per_second(run_dir, cfg.trainer.batch_size * cfg.trainer.seq_len), wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="optimizer updates per run (trainer.max_steps)")
    parser.add_argument("--repeats", type=int, default=4, help="runs per setting, alternating (>= 1)")
    parser.add_argument("--log-interval", type=int, default=10,
                        help="trainer.log_interval: the norms are written at these events (default: the trainer's)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both settings, after the tiny ones")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.steps < 2 * args.log_interval:
        parser.error(f"--repeats={args.repeats} must be >= 1 and --steps={args.steps} at least twice "
                     f"--log-interval={args.log_interval} (two train events)")
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)  # the trainer's per-run INFO lines would bury the table
    overrides = TINY + [f"trainer.max_steps={args.steps}", f"trainer.log_interval={args.log_interval}"] + args.overrides
    warmup = TINY + ["trainer.max_steps=20", "trainer.log_interval=5"] + args.overrides
    results = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="bench_grad_norms_") as workdir:
        measure(warmup, False, Path(workdir))  # untimed: tokenizer/data caches, first-call costs
        for i in range(args.repeats):
            for log_norms in ((False, True) if i % 2 == 0 else (True, False)):
                rate, wall = measure(overrides, log_norms, Path(workdir))
                results[log_norms].append(rate)
                print(f"repeat {i}  log_grad_norms={str(log_norms).lower():5}  {rate:8.2f} steps/s  "
                      f"(train() wall {wall:.1f} s)", flush=True)
    off, on = statistics.median(results[False]), statistics.median(results[True])
    print(f"\nmedian steps/s over {args.repeats} runs of {args.steps} steps: without {off:.2f}, with {on:.2f}; "
          f"ratio with/without = {on / off:.3f} (overhead {100 * (1 - on / off):+.1f}%)")
    return off, on


if __name__ == "__main__":
    main()
