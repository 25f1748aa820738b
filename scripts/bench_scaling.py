"""Benchmark: training throughput of the real trainer at several world sizes (DDP, FSDP) and the
scaling efficiency, read from the runs' own metrics.

    python -m scripts.bench_scaling                                   # CPU, gloo: tiny model, world 1 and 2, DDP
    python -m scripts.bench_scaling --parallel ddp fsdp --steps 40 --out outputs/bench_scaling.json
    python -m scripts.bench_scaling --device cuda --model llama124m --world-sizes 1 2 4 8 \
        --micro-batch 16 --seq-len 512 --parallel ddp fsdp           # a GPU node, NCCL
    python -m scripts.bench_scaling --scaling strong --global-batch 32  # fixed global batch instead
    python -m scripts.bench_scaling --parallel ddp fsdp --threads 2 --repeats 3  # a whole 2-core machine

Each measurement launches `python -m torch.distributed.run --standalone --nproc_per_node=W train.py`
(the trainer itself, never a copy of its step) for --steps optimizer updates into a temporary run
directory, then reads `tok_per_s` (tokens of the global batch per second, logged every step) from
its metrics.jsonl and takes the median over the steps after the first --warmup (start-up and, on
CUDA, compilation). The loop already leaves evaluation and checkpoint time out of tok_per_s.

Weak scaling (default): a fixed per-process micro-batch and no accumulation, so the global batch
grows with the world size (batch_size = micro_batch x W). Strong scaling: a fixed global batch,
split over the processes with the same micro-batch (accumulation = global / (micro x W)).
speed-up = tokens/s at W over tokens/s at world size 1 with the same --parallel mode;
efficiency = speed-up / W (1.0 is perfect scaling).

On CPU the ranks are gloo processes sharing the machine's cores, and --threads (OMP_NUM_THREADS per
process) decides what is compared: with 1 (the default) each rank gets one core, the analogue of one
device per rank, so world 2 uses twice the cores of world 1; with as many threads as cores, world 1
already uses the whole machine and world 2 oversubscribes it. Either way CPU numbers, above all on
a small shared machine (use --repeats there: the table shows the median launch and lists every
launch), say nothing about GPUs, where each rank has its own device and NCCL links.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from training.rundir import read_metrics

ROOT = Path(__file__).resolve().parents[1]
MODES = ("ddp", "fsdp")


@dataclass(frozen=True)
class Measurement:
    parallel: str        # ddp | fsdp (the trainer's trainer.parallel)
    world_size: int
    tok_per_s: float     # median tokens of the global batch per second


def scaling_table(measurements: list[Measurement]) -> list[dict]:
    """One row per measurement, ordered by mode then world size, with speed_up over the same mode's
    world-size-1 throughput and efficiency = speed_up / world_size (None without a world-1 row)."""
    base = {m.parallel: m.tok_per_s for m in measurements if m.world_size == 1}
    rows = []
    for m in sorted(measurements, key=lambda m: (m.parallel, m.world_size)):
        speed_up = m.tok_per_s / base[m.parallel] if m.parallel in base else None
        rows.append({**asdict(m), "speed_up": speed_up,
                     "efficiency": speed_up / m.world_size if speed_up is not None else None})
    return rows


def median_throughput(metrics_file: Path, warmup: int) -> float:
    """Median tok_per_s of the train events after the first `warmup` steps."""
    values = [e["tok_per_s"] for e in read_metrics(metrics_file.parent) if e.get("tok_per_s") and e["step"] > warmup]
    if not values:
        raise ValueError(f"{metrics_file} has no tok_per_s after step {warmup}: raise --steps above --warmup.")
    return statistics.median(values)


def overrides_for(args, parallel: str, world_size: int, run_dir: Path) -> list[str]:
    """The trainer's overrides of one measurement: only the throughput matters (no evaluation or
    checkpoints during the timed steps; a constant LR so no warmup or cooldown changes anything)."""
    if args.scaling == "weak":
        batch = args.micro_batch * world_size
    else:
        batch = args.global_batch
        if batch % (args.micro_batch * world_size):
            raise ValueError(f"--global-batch {batch} does not split into micro-batches of {args.micro_batch} "
                             f"over {world_size} processes: pick a multiple of {args.micro_batch * world_size}.")
    return [f"model={args.model}", f"trainer.device={args.device}", f"trainer.parallel={parallel}",
            f"trainer.max_steps={args.steps}", "trainer.warmup_steps=0", "schedule=constant",
            f"trainer.seq_len={args.seq_len}", f"trainer.batch_size={batch}",
            f"trainer.micro_batch_size={args.micro_batch}", "trainer.log_interval=1",
            "trainer.eval_interval=0", "trainer.eval_batches=1", "trainer.checkpoint_interval=0",
            "trainer.keep_checkpoints=1", "trainer.progress=false", "logger=jsonl",
            f"hydra.run.dir={run_dir}", *args.override]


def measure(args, parallel: str, world_size: int, scratch: Path) -> Measurement:
    run_dir = scratch / f"{parallel}_w{world_size}"  # a fresh directory: never a resume
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world_size}",
               str(ROOT / "train.py"), *overrides_for(args, parallel, world_size, run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print(f"[{parallel}, world {world_size}] {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {parallel} run at world size {world_size} failed (status {done.returncode}):\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return Measurement(parallel, world_size, median_throughput(run_dir / "metrics.jsonl", args.warmup))


def print_table(rows: list[dict], title: str) -> None:
    table = Table(title=title)
    for column in ("world size", "parallel", "tokens/s", "speed-up", "efficiency", "runs (tokens/s)"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["world_size"]), r["parallel"], f"{r['tok_per_s']:,.0f}",
                      "-" if r["speed_up"] is None else f"{r['speed_up']:.2f}x",
                      "-" if r["efficiency"] is None else f"{r['efficiency']:.0%}",
                      " ".join(f"{v:,.0f}" for v in r.get("runs_tok_per_s", [])))
    Console().print(table)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="a configs/model entry: tiny, llama124m, llama210m")
    parser.add_argument("--steps", type=int, default=30, help="optimizer updates per run")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the median (start-up, compile)")
    parser.add_argument("--parallel", nargs="+", default=["ddp"], choices=MODES)
    parser.add_argument("--world-sizes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--scaling", default="weak", choices=("weak", "strong"))
    parser.add_argument("--micro-batch", type=int, default=8, help="sequences per process per forward")
    parser.add_argument("--global-batch", type=int, default=None,
                        help="strong scaling's fixed global batch (default: micro batch x the largest world size)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per process (CPU)")
    parser.add_argument("--repeats", type=int, default=1, help="launches per setting (the table shows their median)")
    parser.add_argument("--override", nargs="*", default=[], help="more trainer overrides, e.g. data=slimpajama_6b")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error(f"--steps {args.steps} must exceed --warmup {args.warmup}: nothing would be measured.")
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats} must be at least 1.")
    if min(args.world_sizes) < 1:
        parser.error("--world-sizes must be positive numbers of processes.")
    if args.global_batch is None:
        args.global_batch = args.micro_batch * max(args.world_sizes)
    if args.device == "cuda":
        import torch

        if torch.cuda.device_count() < max(args.world_sizes):
            parser.error(f"--world-sizes up to {max(args.world_sizes)} needs that many GPUs; "
                         f"{torch.cuda.device_count()} visible.")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    runs: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as scratch:
        # Repeats go round-robin over the settings, so that a burst of load elsewhere on the machine
        # hits every setting alike rather than one of them.
        for repeat in range(args.repeats):
            for parallel in args.parallel:
                for world_size in sorted(set(args.world_sizes)):
                    m = measure(args, parallel, world_size, Path(scratch) / f"r{repeat}")
                    runs.setdefault((parallel, world_size), []).append(m.tok_per_s)
    rows = scaling_table([Measurement(p, w, statistics.median(v)) for (p, w), v in runs.items()])
    for row in rows:
        row["runs_tok_per_s"] = runs[(row["parallel"], row["world_size"])]
    repeats = f", median of {args.repeats} launches" if args.repeats > 1 else ""
    print_table(rows, f"{args.scaling} scaling: {args.model}, {args.device}, micro-batch {args.micro_batch} x "
                      f"{args.seq_len} tokens per process, {args.threads} thread(s) per process, median of "
                      f"steps {args.warmup + 1}..{args.steps}{repeats}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                       indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
