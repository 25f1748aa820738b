"""Benchmark: the cost of logging every update's gradient norms (trainer.log_grad_norms, grad_norms.bin).

    python -m scripts.bench_grad_norms                        # tiny model, 200 steps, 6 repeats of each
    python -m scripts.bench_grad_norms --steps 60 --repeats 3 model.n_layer=4 model.n_head=4 model.d_model=128 \
        trainer.seq_len=128 trainer.batch_size=32 trainer.micro_batch_size=32   # the default run's model and batch

Runs the real trainer in this process (train.train on configs composed as `python train.py` would:
the tests' tiny model and loop on the embedded data, CPU) with trainer.log_grad_norms=false and =true,
alternating (off, on, on, off, ...) so that a drift of the machine's speed hits both alike. Throughput
is the trainer's own: each train event's `tok_per_s` covers the updates since the previous event,
evaluation and checkpoints excluded, the norms' device-side l1 and their write at log events included;
the first event of each run (allocation, first-touch costs) is dropped and a run's rate is the median
over its events. Prints steps/s of every run, the ratio on/off of each repeat (its two runs are back to
back, so they share the machine's load), their median and range (1.00 = free, < 1 = slower with the
norms). On a shared machine that ratio is as noisy as the load, so the script also times what the switch
adds alone (the recorder on the model's real gradients, best of 5) and states it as a share of an update.
Extra arguments are Hydra overrides for both settings.
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
    """Updates per second: the median over the run's train events after the first of the event's own rate
    (tok_per_s / tokens per update). The median, not the total, so that a burst of other load on a shared
    machine, which hits a few events, does not decide the number."""
    rates = [e["tok_per_s"] / tokens_per_step for e in read_metrics(run_dir) if e.get("tok_per_s")][1:]
    if not rates:
        raise ValueError(f"{run_dir}: fewer than two train events; use more --steps or a smaller trainer.log_interval")
    return statistics.median(rates)


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


def recorder_cost(overrides: list[str], log_interval: int, workdir: Path, updates: int = 500) -> float:
    """Seconds per update of what the switch adds, timed alone on the model's real gradients: the loop's
    GradNormRecorder.record (the l1 norm on the device) every update and its flush (stack, copy, append
    to grad_norms.bin) every `log_interval`. Best of 5: the least disturbed by other load."""
    from hydra.utils import instantiate
    from training.distributed import World
    from training.loop import GradNormRecorder

    cfg = compose(overrides)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    tokens = torch.randint(0, cfg.model.vocab_size, (cfg.trainer.micro_batch_size, cfg.trainer.seq_len + 1))
    model(tokens[:, :-1], tokens[:, 1:]).backward()
    l2 = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    recorder = GradNormRecorder(True, Path(tempfile.mkdtemp(dir=workdir)), World())
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for step in range(1, updates + 1):
            recorder.record(step, l2, model.parameters())
            if step % log_interval == 0:
                recorder.flush()
        best = min(best, (time.perf_counter() - start) / updates)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="optimizer updates per run (trainer.max_steps)")
    parser.add_argument("--repeats", type=int, default=6, help="runs per setting, alternating (>= 1)")
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
    results, ratios = {False: [], True: []}, []
    with tempfile.TemporaryDirectory(prefix="bench_grad_norms_") as workdir:
        measure(warmup, False, Path(workdir))  # untimed: tokenizer/data caches, first-call costs
        for i in range(args.repeats):
            for log_norms in ((False, True) if i % 2 == 0 else (True, False)):
                rate, wall = measure(overrides, log_norms, Path(workdir))
                results[log_norms].append(rate)
                print(f"repeat {i}  log_grad_norms={str(log_norms).lower():5}  {rate:8.2f} steps/s  "
                      f"(train() wall {wall:.1f} s)", flush=True)
            ratios.append(results[True][-1] / results[False][-1])
        alone = recorder_cost(overrides, args.log_interval, Path(workdir))
    off, on, ratio = statistics.median(results[False]), statistics.median(results[True]), statistics.median(ratios)
    print(f"\n{args.repeats} repeats of {args.steps} steps, median steps/s: without {off:.2f}, with {on:.2f}")
    print(f"ratio with/without per repeat: {' '.join(f'{r:.3f}' for r in ratios)}")
    print(f"median ratio {ratio:.3f} (range {min(ratios):.3f}-{max(ratios):.3f}): the norms cost "
          f"{100 * (1 - ratio):+.1f}% of the throughput")
    print(f"the recorder alone: {1e6 * alone:.0f} us per update = {100 * alone * off:.2f}% of an update at "
          f"{off:.2f} steps/s")
    return off, on, ratios, alone


if __name__ == "__main__":
    main()
