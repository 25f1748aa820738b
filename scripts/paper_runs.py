"""List the GPU jobs of the paper's experiments (configs/experiment/schaipp2025/) without launching them:
each job's overrides, run dir, the checkpoint it branches from, the steps and tokens it trains,
and its GPU-hours at a throughput you give.

    python -m scripts.paper_runs --dry-run                                   # every overlay, no GPU-hours
    python -m scripts.paper_runs --dry-run --tokens-per-s 4.0e5              # one job's tokens/s, all models
    python -m scripts.paper_runs --dry-run --experiment 'schaipp2025/210m_*' \
        --tokens-per-s llama210m=2.4e5 --gpus-per-job 2
    python -m scripts.paper_runs --dry-run --experiment schaipp2025/124m_cooldown trainer.max_steps=25000

Jobs come from each overlay's `hydra.sweeper.params` (the jobs `python train.py -m experiment=<name>`
runs), with the extra Hydra overrides given here applied to every job (an override of a swept key
replaces that sweep). A job with `trainer.init_from` trains only max_steps - branch step. Stages
order the overlays by that dependency: a stage-2 job branches from a stage-1 checkpoint, so launch
stage by stage (the commands are printed at the end). GPU-hours = tokens / tokens-per-s / 3600 x
gpus-per-job, training tokens only (evaluation adds about 1% at the paper's settings). The README's
GPU table is not measured yet, so the throughput is yours to give: run
`python train.py experiment=paper_124m trainer.max_steps=300` on your GPU and read tok_per_s.
Nothing is launched: --dry-run only names what this script always does.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import pandas as pd
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.setup import CONFIG_DIR, build, compose  # noqa: E402  (registers the configs' resolvers)

DEFAULT_EXPERIMENTS = "schaipp2025/*"


def experiment_names(pattern: str = DEFAULT_EXPERIMENTS) -> list[str]:
    root = CONFIG_DIR / "experiment"
    names = sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob(f"{pattern}.yaml"))
    if not names:
        available = sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))
        raise ValueError(f"no experiment matches --experiment {pattern!r}; choose from {available}")
    return names


def expand(experiment: str, overrides: list[str] = ()) -> list[list[str]]:
    """The jobs of `python train.py -m experiment=<experiment> <overrides>`: one override list per job,
    the cartesian product of the overlay's hydra.sweeper.params and of any sweep in `overrides`."""
    cfg = compose([f"experiment={experiment}", *overrides], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    parser = OverridesParser.create()
    given = parser.parse_overrides(list(overrides))
    replaced = {o.get_key_element() for o in given}
    swept = parser.parse_overrides([f"{k}={v}" for k, v in params.items() if k not in replaced])
    axes = []
    for o in swept + given:
        key = o.get_key_element()
        if o.is_sweep_override():
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [[f"experiment={experiment}", *job] for job in itertools.product(*axes)]


def describe(job: list[str]) -> dict:
    """What one job trains: composed and resolved as train.py would see it, its schedule built (a
    schedule that cannot be built, e.g. a cooldown inside the warmup, fails here, not on the GPU)."""
    cfg = compose(job, return_hydra_config=True)
    schedule = build(cfg.schedule, "schedule")
    t = cfg.trainer
    init_from = t.init_from
    start = int(Path(init_from).name.removeprefix("step_")) if init_from else 0  # training.checkpoint's naming
    steps = int(t.max_steps) - start
    if steps <= 0:
        raise ValueError(f"{' '.join(job)}: starts at step {start} from {init_from} but trainer.max_steps="
                         f"{t.max_steps}; nothing to train (raise trainer.max_steps)")
    tokens_per_step = int(t.batch_size) * int(t.seq_len)
    return {"experiment": job[0].removeprefix("experiment="), "overrides": " ".join(job[1:]),
            "model": cfg.hydra.runtime.choices.model, "schedule": schedule,
            "run_dir": str(Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)),
            "init_from": init_from, "start_step": start, "max_steps": int(t.max_steps), "steps": steps,
            "tokens": steps * tokens_per_step}


def add_stages(jobs: pd.DataFrame) -> pd.DataFrame:
    """stage 1: starts from scratch (or from a checkpoint no listed job writes); stage k + 1: branches
    from a checkpoint of a stage-k job."""
    by_dir = dict(zip(jobs["run_dir"], range(len(jobs))))
    parents = [by_dir.get(str(Path(p).parent.parent)) if isinstance(p, str) else None for p in jobs["init_from"]]
    stages: dict[int, int] = {}

    def stage(i: int, seen=()) -> int:
        if i in seen:
            raise ValueError(f"circular branching through {jobs['run_dir'][i]}")
        if i not in stages:
            stages[i] = 1 if parents[i] is None else 1 + stage(parents[i], (*seen, i))
        return stages[i]

    jobs = jobs.copy()
    jobs["stage"] = [stage(i) for i in range(len(jobs))]
    jobs["parent_listed"] = [p is not None for p in parents]
    return jobs


def parse_throughput(values: list[str] | None) -> dict[str, float]:
    """--tokens-per-s 4e5 (every model) or MODEL=4e5 (per model config, e.g. llama210m=2.4e5)."""
    out = {}
    for value in values or []:
        model, _, number = value.rpartition("=")
        try:
            rate = float(number)
        except ValueError:
            raise ValueError(f"--tokens-per-s {value!r}: give a number (4e5) or MODEL=NUMBER (llama124m=4e5)")
        if rate <= 0:
            raise ValueError(f"--tokens-per-s {value!r} must be > 0 tokens per second")
        out[model or "*"] = rate
    return out


def gpu_hours(tokens: float, tokens_per_s: float, gpus_per_job: int = 1) -> float:
    """Wall-clock hours of a job times the GPUs it holds."""
    return tokens / tokens_per_s / 3600.0 * gpus_per_job


def list_jobs(pattern: str = DEFAULT_EXPERIMENTS, overrides: list[str] = (), throughput: dict | None = None,
              gpus_per_job: int = 1) -> pd.DataFrame:
    rows = [describe(job) for name in experiment_names(pattern) for job in expand(name, list(overrides))]
    jobs = add_stages(pd.DataFrame(rows))
    if throughput:
        rates = [throughput.get(m, throughput.get("*")) for m in jobs["model"]]
        missing = sorted({m for m, r in zip(jobs["model"], rates) if r is None})
        if missing:
            raise ValueError(f"no --tokens-per-s for model {missing}: add e.g. --tokens-per-s {missing[0]}=4e5")
        jobs["tokens_per_s"] = rates
        jobs["gpu_hours"] = [gpu_hours(n, r, gpus_per_job) for n, r in zip(jobs["tokens"], rates)]
    return jobs.sort_values(["stage", "experiment"], kind="stable").reset_index(drop=True)


def report(jobs: pd.DataFrame) -> str:
    shown = ["stage", "experiment", "overrides", "start_step", "steps", "tokens"]
    shown += ["gpu_hours"] if "gpu_hours" in jobs else []
    lines = [jobs[shown].to_string(index=False, formatters={"tokens": "{:.3e}".format,
                                                             "gpu_hours": "{:.1f}".format})]
    totals = jobs.groupby(["stage", "experiment"], sort=False).agg(jobs=("steps", "size"), tokens=("tokens", "sum"),
                                                                   **({"gpu_hours": ("gpu_hours", "sum")}
                                                                      if "gpu_hours" in jobs else {}))
    lines += ["", "per experiment:", totals.to_string(formatters={"tokens": "{:.3e}".format,
                                                                  "gpu_hours": "{:.1f}".format})]
    total = f"total: {len(jobs)} jobs, {jobs['tokens'].sum():.3e} training tokens"
    if "gpu_hours" in jobs:
        total += f", {jobs['gpu_hours'].sum():.1f} GPU-hours"
    else:
        total += (" (GPU-hours: give --tokens-per-s; the README's GPU throughput is not measured yet, "
                  "measure it with `python train.py experiment=paper_124m trainer.max_steps=300`)")
    lines += ["", total]
    missing = jobs[~jobs["parent_listed"] & jobs["init_from"].notna()]
    for path in sorted({p for p in missing["init_from"] if not Path(p).exists()}):
        lines.append(f"note: {path} is written by no listed job and does not exist yet")
    lines += ["", "launch stage by stage (each stage needs the previous one's checkpoints):"]
    for stage, group in jobs.groupby("stage"):
        for name in dict.fromkeys(group["experiment"]):
            lines.append(f"  stage {stage}: python train.py -m experiment={name}")
    return "\n".join(lines)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(prog="python -m scripts.paper_runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every job")
    parser.add_argument("--dry-run", action="store_true", help="list only (what this script always does)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENTS,
                        help=f"glob under configs/experiment/ (default: {DEFAULT_EXPERIMENTS})")
    parser.add_argument("--tokens-per-s", action="append", metavar="[MODEL=]N",
                        help="training tokens/s of one job (repeat as MODEL=N per model config)")
    parser.add_argument("--gpus-per-job", type=int, default=1, help="GPUs one job holds at that throughput")
    args = parser.parse_args(argv)
    if args.gpus_per_job < 1:
        parser.error(f"--gpus-per-job {args.gpus_per_job} must be >= 1")
    try:
        jobs = list_jobs(args.experiment, args.overrides, parse_throughput(args.tokens_per_s), args.gpus_per_job)
    except ValueError as err:
        parser.error(str(err))
    pd.set_option("display.width", 250)
    print(report(jobs))
    return jobs


if __name__ == "__main__":
    main()
