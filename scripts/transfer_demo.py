"""The whole loop on a laptop: train an LR grid on CPU, let the advisor transfer the WSD optimum to
linear decay, and compare the prediction with the measured optimum.

    python -m scripts.transfer_demo                     # the full demo: 15 runs, 5-10 min on 2 shared cores
    python -m scripts.transfer_demo --out outputs/td    # elsewhere; rerunning resumes (finished runs are reused)
    python -m scripts.transfer_demo --smoke             # 3 LRs of a micro model, seconds (what the tests run)

What it does, all under --out (default outputs/transfer_demo/):
1. The grid (configs/experiment/transfer_demo.yaml + one schedule and peak LR per run), per LR:
   a constant-LR run with a checkpoint at T - floor(0.2 T); a WSD run with a linear 20% cooldown
   branched from that checkpoint (trainer.init_from: exact, since WSD's stable part *is* the constant
   run); and a linear decay over the whole run after warmup (schedule=linear: WSD with cooldown
   fraction 1.0 is impossible with a warmup, its cooldown would start inside it; linear decay from the
   end of the warmup is the paper's "~1" fraction). runs/<schedule>_lr<lr>/ is a normal run directory.
2. The advisor (scripts/transfer_demo_report.py): fit final loss = A/lr + B lr + C to the WSD-0.2 runs
   (analysis.fit.fit_lr_sweep), transfer its optimum sqrt(A/B) to linear decay with the bound's
   closed form (analysis.advise.transfer_lr on the runs' own schedules), and compare with the optimum
   of the same fit on the linear-decay runs; the constant runs get the same treatment as a second check.
3. A table of final validation losses, predicted vs measured optimum, transfer_demo.png/.pdf and
   transfer_demo.json (every number printed).

Settings and why (pilot runs on the 2 shared cores of the build machine, load 6-10 from other jobs;
final validation loss in nats as constant / WSD-0.2 / linear decay):
- Speed first. The tiny model of configs/model/tiny.yaml (4 layers, d = 128, 4096 BPE) made 0.25-1.5
  steps/s at 16 x 128 tokens: 15 runs would take hours. On shared cores one torch thread beats two
  (0.40 vs 1.82 CPU-s per step; the second thread mostly spins), hence --threads 1; and a 2-layer,
  d = 64 model on a 1024-token BPE of the same corpus costs 0.074 CPU-s per step of 16 x 128 tokens.
- The cooldown effect. At 16 x 128 tokens, T = 400: LR 4e-3 -> 3.983 / 3.913 / 4.090 (a cooldown
  helps); at T = 300, LR 2e-3 -> 4.145 / 4.159 / 4.529 and 2.83e-3 -> 4.069 / 4.051 / 4.364: the
  runs are still descent-limited (LR area wins), so a cooldown barely helps and linear decay trails
  far behind. The cooldown pays where the loss at constant LR is noise-limited: small, noisy batches
  and many steps. Hence 4 x 128 tokens per step and T = 1200 (the same compute per run as 16 x 128
  at T = 300): LR 1e-3 -> 4.064 / 4.036 / 4.336.
- The LR grid. Above ~1e-2 the model stalls near the unigram loss for ~100 steps (16 x 128, T = 400:
  LR 1.6e-2 -> 4.808 / 4.771 / 4.842; a 60-step warmup does not remove the stall at 1.1e-2), a failure
  the convex theory does not model; the grid stays below it. Theory (analysis.bound at T = 1200,
  warmup 60): gamma*(linear) / gamma*(WSD-0.2) = 1.90, so the grid spans 6.4x to bracket both optima.
Measured with these settings (2026-11-30, nice -n 10; three fresh runs gave identical losses, 5 min 2 s,
7 min 19 s and 9 min 27 s wall at a load of 3, 5-7 and 5-9 from other jobs): WSD-0.2 ends below
constant LR at every LR (by 0.03-0.15 nats); fitted optima (all bracketed) constant 2.19e-3, WSD-0.2
2.98e-3, linear 3.95e-3; linear predicted from WSD-0.2 5.65e-3, predicted / measured 1.43 (1.07-2.02
combining leave-one-LR-out fits); constant predicted 1.97e-3, predicted / measured 0.90.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import train
from scripts.transfer_demo_report import report
from training import checkpoint
from training.rundir import read_metrics
from training.setup import compose

COOLDOWN = 0.2                                    # the WSD cooldown fraction the advisor is tuned on
LRS = (1e-3, 1.6e-3, 2.5e-3, 4e-3, 6.4e-3)    # geometric (factor 1.6); above ~1e-2 the model stalls early
SMOKE_LRS = (3e-3, 3e-2, 3e-1)
# The smoke run: a micro model and a few steps, so that every stage of the pipeline runs in seconds.
SMOKE = ("model.n_layer=1", "model.n_head=2", "model.d_model=32", "trainer.seq_len=32",
         "trainer.batch_size=4", "trainer.micro_batch_size=4", "trainer.max_steps=12", "trainer.warmup_steps=2",
         "trainer.eval_interval=6", "trainer.eval_batches=1", "trainer.eval_batch_size=128",
         "trainer.progress=false")
SCHEDULES = {"constant": ["schedule=constant"],
             "wsd": ["schedule=wsd", f"schedule.cooldown_fraction={COOLDOWN}", "schedule.cooldown_kind=linear"],
             "linear": ["schedule=linear"]}
DIVERGED = "diverged.txt"    # written into a run directory whose loss became non-finite


@dataclass
class Job:
    """One run of the grid: its schedule key (SCHEDULES), peak LR and Hydra overrides."""
    schedule: str
    lr: float
    overrides: list = field(default_factory=list)
    parent: str | None = None       # the run a cooldown branches from

    @property
    def name(self) -> str:
        return f"{self.schedule}_lr{self.lr:.3g}"


def compose_job(job: Job, base: list[str]):
    return compose(["experiment=transfer_demo", *base, *SCHEDULES[job.schedule], f"optimizer.lr={job.lr!r}",
                    *job.overrides])


def plan(lrs, base: list[str], runs_dir: Path) -> list[Job]:
    """Per LR: constant (checkpoint at the branch step), the WSD cooldown branched there, linear decay."""
    if len(set(lrs)) < 3 or min(lrs) <= 0:
        raise ValueError(f"--lrs {lrs}: give at least 3 distinct positive peak LRs (the fit A/lr + B lr + C "
                         "has 3 parameters), e.g. --lrs 1e-3,2e-3,4e-3,8e-3")
    wsd = instantiate(compose_job(Job("wsd", lrs[0]), base).schedule)
    branch = wsd.cooldown_start       # WSD's own first cooldown step: the constant run's checkpoint
    if branch <= wsd.warmup_steps:
        raise ValueError(f"the cooldown starts at step {branch}, inside the warmup of {wsd.warmup_steps} steps; "
                         "raise trainer.max_steps or lower trainer.warmup_steps")
    jobs = []
    for lr in sorted(set(lrs)):
        parent = Job("constant", lr, [f"trainer.checkpoint_interval={branch}"])
        ckpt = checkpoint.checkpoint_dir(runs_dir / parent.name, branch)
        jobs += [parent, Job("wsd", lr, [f"trainer.init_from={ckpt}"], parent=parent.name), Job("linear", lr)]
    if len({job.name for job in jobs}) < len(jobs):
        raise ValueError(f"--lrs {lrs}: two LRs agree to 3 significant digits (run names use 3); space them further")
    return jobs


def finished(run_dir: Path) -> bool:
    if (run_dir / DIVERGED).exists():
        return True
    return (run_dir / "metrics.jsonl").exists() and any("final/val_loss" in e for e in read_metrics(run_dir))


def settings_of(cfg) -> dict:
    """The resolved config without what only changes the display (the progress bar)."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings["trainer"].pop("progress", None)
    return settings


def run_jobs(jobs: list[Job], base: list[str], runs_dir: Path) -> int:
    """Train every job not finished yet; an interrupted run resumes from its latest checkpoint.
    Returns how many runs were reused (finished by an earlier call)."""
    reused = 0
    for i, job in enumerate(jobs, 1):
        run_dir, cfg = runs_dir / job.name, compose_job(job, base)
        if finished(run_dir):
            if settings_of(OmegaConf.load(run_dir / "config.yaml")) != settings_of(cfg):
                raise ValueError(f"{run_dir} was trained with other settings than this call's; give a new --out "
                                 "(or delete that folder) to train the grid with these settings")
            print(f"[{i}/{len(jobs)}] {job.name}: finished earlier, reused", flush=True)
            reused += 1
            continue
        if job.parent and (runs_dir / job.parent / DIVERGED).exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            (run_dir / DIVERGED).write_text(f"not trained: its parent {job.parent} diverged\n")
            print(f"[{i}/{len(jobs)}] {job.name}: not trained, its parent diverged (left out of the fits)", flush=True)
            continue
        if run_dir.exists() and checkpoint.latest_checkpoint(run_dir) is None:
            shutil.rmtree(run_dir)    # interrupted before its first checkpoint: its partial log would mix in
        tic = time.perf_counter()
        try:
            summary = train.train(cfg, run_dir)
            result = f"final val loss {summary['final_val_loss']:.4f}"
        except FloatingPointError as err:   # a diverged run is a result of the sweep, not a failure of the demo
            (run_dir / DIVERGED).write_text(str(err) + "\n")
            result = "diverged (left out of the fits)"
        print(f"[{i}/{len(jobs)}] {job.name}: {result} ({time.perf_counter() - tic:.0f} s)", flush=True)
    return reused


def parse_lrs(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--lrs {text!r}: give comma-separated numbers, e.g. 1e-3,2e-3,4e-3") from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.transfer_demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/transfer_demo", help="output folder (default outputs/transfer_demo)")
    parser.add_argument("--lrs", type=parse_lrs, default=None,
                        help=f"peak LRs, comma-separated (default {','.join(f'{x:g}' for x in LRS)})")
    parser.add_argument("--smoke", action="store_true", help="a micro model for a few steps: the pipeline in seconds")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: a model this small gains little from a second thread "
                             "and loses much when other processes share the cores)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. trainer.max_steps=400")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        raise SystemExit(f"--threads {args.threads}: give a positive number of CPU threads, e.g. 1")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run_demo(args, argv)
    finally:
        torch.set_num_threads(threads)    # main() is also called in-process (tests)


def run_demo(args, argv) -> dict:
    out = Path(args.out)
    base = [*(SMOKE if args.smoke else ()), *args.overrides]
    lrs = args.lrs or list(SMOKE_LRS if args.smoke else LRS)
    tic = time.perf_counter()
    jobs = plan(lrs, base, out / "runs")
    print(f"{len(jobs)} runs under {out / 'runs'} ({len(set(lrs))} LRs x constant, WSD-{COOLDOWN} branched, linear)")
    reused = run_jobs(jobs, base, out / "runs")
    settings = {"lrs": sorted(lrs), "cooldown_fraction": COOLDOWN, "overrides": ["experiment=transfer_demo", *base],
                "command": " ".join(["python -m scripts.transfer_demo", *(argv if argv is not None else sys.argv[1:])])}
    return report(jobs, out, settings, wall_s=time.perf_counter() - tic, reused=reused)


if __name__ == "__main__":
    main()
