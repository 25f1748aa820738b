"""The schedule benchmark's entry point: the Defazio et al. and Chen et al. studies on CPU-sized problems.

    python -m scripts.schedule_benchmark defazio                    # 840 runs: 10 min wall, 3.5 min CPU
    python -m scripts.schedule_benchmark chen                       # 5376 runs: 17 min wall, 8 min CPU
    python -m scripts.schedule_benchmark defazio --llm              # + the tiny Llama, linear vs refined
    python -m scripts.schedule_benchmark defazio --llm-only --out outputs/schedule_benchmark/llm   # that alone
    python -m scripts.schedule_benchmark chen --smoke               # seconds: what the tests run
    python -m scripts.schedule_benchmark chen --problems logreg_cancer mlp_digits --seeds 2 \
        --optimizers sgd --lrs 0.03 0.1 0.3 --steps 300 --out outputs/my_chen

Options: --problems (default: all of problems.PROBLEMS), --optimizers (sgd adamw), --seeds N (seeds
0..N-1), --lrs (absolute peak LRs used for every problem and optimizer; default: each problem's own
grid of 7 LRs, problems.py), --steps T (the horizon; Chen: the full budget), --out DIR (default
outputs/schedule_benchmark/<study>). Writes runs.csv/.json (one row per run), the tuned and ranked
tables, report.md (every table printed here) and the plots into DIR. The times above were measured on
2 CPU cores shared with other jobs (load average 4-10, `nice -n 10`, one torch thread).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from scripts.schedule_benchmark import chen, defazio
from scripts.schedule_benchmark.harness import OPTIMIZER_CONFIGS, make_schedule
from scripts.schedule_benchmark.problems import PROBLEMS, check_names
from scripts.schedule_benchmark.report import markdown, plot_curves, plot_ranks, plot_shapes, write_table

DEFAULT_STEPS = {"defazio": 500, "chen": 400}
# --smoke: seconds, not minutes; the properties the tests check hold at any size.
SMOKE = dict(problems=["logreg_cancer", "mlp_digits"], seeds=2, steps=40, lr_count=2)
SMOKE_CHEN_PROBLEMS = ["logreg_cancer"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m scripts.schedule_benchmark", description=__doc__.split("\n")[0])
    ap.add_argument("study", choices=["defazio", "chen"])
    ap.add_argument("--problems", nargs="+", default=None, help=f"any of {', '.join(PROBLEMS)} (default: all)")
    ap.add_argument("--optimizers", nargs="+", default=list(OPTIMIZER_CONFIGS), help="sgd and/or adamw")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per grid point (default 3)")
    ap.add_argument("--lrs", type=float, nargs="+", default=None,
                    help="peak LRs for every problem (default: per problem)")
    ap.add_argument("--steps", type=int, default=None, help="horizon T (default: defazio 500, chen 400)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default outputs/schedule_benchmark/<study>)")
    ap.add_argument("--smoke", action="store_true", help="a seconds-long version (tests)")
    ap.add_argument("--llm", action="store_true", help="defazio: also the tiny Llama, linear vs refined (minutes)")
    ap.add_argument("--llm-only", action="store_true", help="defazio: the tiny Llama case alone")
    ap.add_argument("--llm-steps", type=int, default=300)
    ap.add_argument("--llm-lrs", type=float, nargs="+", default=[3e-3, 6e-3, 1.2e-2], help="peak LRs of the LLM case")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these tiny models)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar, no printed report")
    args = ap.parse_args(argv)
    args.problems = check_names(args.problems or (SMOKE_CHEN_PROBLEMS if args.smoke and args.study == "chen"
                                                  else SMOKE["problems"] if args.smoke else PROBLEMS),
                                PROBLEMS, "problem(s)")
    args.optimizers = check_names(args.optimizers, OPTIMIZER_CONFIGS, "optimizer(s)")
    if args.smoke:
        args.seeds, args.steps = min(args.seeds, SMOKE["seeds"]), args.steps or SMOKE["steps"]
    args.steps = args.steps or DEFAULT_STEPS[args.study]
    if args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds} must be >= 1 (seeds 0..N-1 are run)")
    if args.steps < (20 if args.study == "chen" else 10):
        raise ValueError(f"--steps={args.steps} is too short (chen: >= 20 so that the 10% budget has 2 updates; "
                         "defazio: >= 10 for the refinement)")
    if args.lrs is not None and not all(0 < lr < float("inf") for lr in args.lrs):
        raise ValueError(f"--lrs {args.lrs} must all be finite and > 0 (e.g. --lrs 0.01 0.1 1)")
    # The peak-LR grid of every (problem, optimizer): the user's, each problem's own, or (smoke) its middle.
    args.lr_table = {(p, o): tuple(args.lrs) if args.lrs is not None
                     else _middle(PROBLEMS[p].lrs(o), SMOKE["lr_count"]) if args.smoke else PROBLEMS[p].lrs(o)
                     for p in args.problems for o in args.optimizers}
    args.out = args.out or Path("outputs/schedule_benchmark") / args.study
    return args


def _middle(grid, n):
    start = (len(grid) - n) // 2
    return grid[start:start + n]


def run_llm_case(args) -> list[str]:
    from scripts.schedule_benchmark.llm import run_llm

    llm, _ = run_llm(args.out, steps=args.llm_steps, lrs=tuple(args.llm_lrs))
    write_table(llm, args.out, "llm")
    return ["## Tiny Llama on the embedded data: linear decay vs refined (from the best linear run's l1 norms)",
            markdown(llm.drop(columns="run_dir"))]


def run_defazio(args) -> str:
    if args.llm_only:
        return "\n\n".join(run_llm_case(args))
    res = defazio.run_study(args.lr_table, args.seeds, args.steps, args.out, progress=not args.quiet)
    for name in ("runs", "ranked", "refined_vs_linear", "mean_rank", "bound"):
        write_table(res[name], args.out, name)
    plot_curves(res["results"], res["ranked"], args.out / "curves", f"tuned runs, T = {args.steps}, mean of seeds")
    if res["refined_paths"]:
        import numpy as np

        shapes = {"linear": make_schedule(defazio.BASELINES[0], args.steps)(np.arange(args.steps))}
        shapes.update({f"refined {p}/{o}": np.load(path) for (p, o), path in res["refined_paths"].items()})
        plot_shapes(shapes, args.out / "refined_shapes", "schedules refined from linear-decay runs' gradient norms")
    cols = ["problem", "optimizer", "schedule", "rank", "lr", "mean", "std", "at_edge"]
    parts = [f"# Defazio et al. study: T = {args.steps}, seeds {args.seeds}, optimizers {' '.join(args.optimizers)}",
             "## Tuned runs (metric: final train objective on convex problems, final val loss otherwise)",
             markdown(res["ranked"][cols]),
             "## Mean rank over problems (1 = best)", markdown(res["mean_rank"]),
             "## Refined vs linear decay", markdown(res["refined_vs_linear"]) if len(res["refined_vs_linear"])
             else "(no refined runs)",
             "## Optimal bound Omega* at D = G = 1 (analysis.bound, T = 100)", markdown(res["bound"])]
    if args.llm:
        parts += run_llm_case(args)
    return "\n\n".join(parts + [f"note: {n}" for n in res["notes"]])


def run_chen(args) -> str:
    res = chen.run_study(args.lr_table, args.seeds, args.steps, progress=not args.quiet)
    for name in ("runs", "ranked"):
        write_table(res[name], args.out, name)
    write_table(res["ranks"].reset_index(), args.out, "mean_ranks")
    plot_ranks(res["ranked"], args.out / "ranks", f"mean rank vs budget, full run T = {args.steps}")
    finals = res["ranked"].pivot_table(index=["problem", "optimizer", "schedule"], columns="budget", values="mean")
    finals.columns = [f"{int(b * 100)}%" for b in finals.columns]
    claims = [f"- {c['claim']}: **{'held' if c['held'] else 'did not hold'}** ({c['evidence']})" for c in res["claims"]]
    parts = [f"# Chen et al. study: full run T = {args.steps}, budgets "
             f"{', '.join(f'{int(b * 100)}%' for b in chen.BUDGETS)}, seeds {args.seeds}",
             "## Mean rank per schedule (1 = best; low = 10, 25%, high = 50, 100%)",
             markdown(res["ranks"], index=True), "## Claims", "\n".join(claims),
             "## Final metric at the tuned LR (mean over seeds)", markdown(finals, index=True)]
    return "\n\n".join(parts + [f"note: {n}" for n in res["notes"]])


def main(argv=None) -> str:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    text = (run_defazio if args.study == "defazio" else run_chen)(args)
    text += f"\n\nwall time: {time.perf_counter() - start:.1f} s"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(text + "\n")
    if not args.quiet:
        print(text)
    return text


if __name__ == "__main__":
    main()
