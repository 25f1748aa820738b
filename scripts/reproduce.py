"""Reproduce the figures of the papers this project implements, headless on CPU: Schaipp et al. (ICML 2025,
fig1a..fig21) and Bordelon & Mori (the random-feature model, bm2..bm5 and bm_shapes).

    python -m scripts.reproduce --list                    # the figures, one line each
    python -m scripts.reproduce --figure fig3 --figure bm2 [--out outputs/figures]
    python -m scripts.reproduce --all                     # every figure of both papers
    python -m scripts.reproduce --all --paper bordelon-mori   # one paper's figures
    python -m scripts.reproduce --all --logs outputs/multiruns/2026-11-24_10-00-00   # real-data figures from your runs
    python -m scripts.reproduce --all --small             # reduced settings (what the tests run)

Each figure writes <out>/<name>.png, .pdf and .json (the plotted numbers). The figures themselves
live in scripts/figures/.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scripts.figures import ALL, PAPERS
from scripts.figures.common import PAPER_LOGS, Context, write


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list the figures and exit")
    what.add_argument("--figure", action="append", metavar="NAME", help="a figure to build; repeatable")
    what.add_argument("--all", action="store_true", help="every figure")
    parser.add_argument("--out", default="outputs/figures", help="output folder (default outputs/figures)")
    parser.add_argument("--logs", default=str(PAPER_LOGS),
                        help="logs of the real-data figures: the paper's JSON logs or run directories "
                             "(default: the logs shipped in tests/data/paper_logs)")
    parser.add_argument("--paper", choices=sorted(PAPERS), default=None,
                        help="with --all or --list: only this paper's figures")
    parser.add_argument("--small", action="store_true", help="reduced settings, for a quick check")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    chosen = {spec.name: spec for spec in PAPERS[args.paper]} if args.paper else ALL
    if args.figure and args.paper:
        raise SystemExit("--paper selects the figures of --all or --list; with --figure name the figures instead")
    if args.list:
        for spec in chosen.values():
            print(f"{spec.name:<8} {'[needs logs] ' if spec.needs_logs else ''}{spec.caption}")
        return 0
    names = list(chosen) if args.all else args.figure
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise SystemExit(f"unknown figure(s) {unknown}; `python -m scripts.reproduce --list` names them all")
    logs = Path(args.logs)
    if any(ALL[n].needs_logs for n in names) and not logs.is_dir():
        raise SystemExit(f"--logs {logs} is not a directory; point it at the paper's JSON logs or at run directories")
    ctx, out = Context(small=args.small, logs=logs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    skipped = []
    for name in names:
        tic = time.perf_counter()
        try:
            written = write(ALL[name], ctx, out)
        except ValueError as error:   # the data cannot make this figure: the message says what it needs
            if not (args.all and ALL[name].needs_logs):
                raise SystemExit(f"{name}: {error}") from error
            skipped.append(name)
            print(f"{name:<8} skipped: {error}", flush=True)
            continue
        print(f"{name:<8} {time.perf_counter() - tic:6.1f} s  {', '.join(p.name for p in written)}", flush=True)
    built = len(names) - len(skipped)
    print(f"{built} figure(s) in {time.perf_counter() - start:.1f} s -> {out}"
          + (f"; skipped for want of logs: {', '.join(skipped)}" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
