"""Group runs into sweeps by schedule shape, and say what a schedule is in words.

    from analysis.groups import describe, group_runs, same_shape
    from analysis.runs import load_many
    describe({"_target_": "schedules.WSD", "total_steps": 50000, "cooldown_fraction": 0.2})
        # -> "WSD, 20% linear cooldown"; describe(config, horizon=True) -> "..., T = 50k steps"
    for group in group_runs(load_many("tests/data/paper_logs/*.json")):   # by=("n_layer",): per model too
        print(group.name, group.total_steps, [run.peak_lr for run in group.runs])
CLI (prints the sweeps a glob holds):
    python -m analysis.groups "tests/data/paper_logs/*.json" [--tolerance 0.01] [--by n_layer]

A sweep is the runs of one schedule shape at several peak LRs. Comparing schedule configs key by key
splits the paper's own sweeps: its cosine runs end at an absolute LR of 1e-7, so their recorded
final_fraction differs with every peak LR, and its constant-LR runs record a cooldown kind that
means nothing at cooldown fraction 0. Here two schedules are one shape when the bound would see the
same step sizes: their multiplier arrays (hydra.utils.instantiate(config).multipliers()) have the
same length and, after both are floored at `ignore_below` (1% of the peak: a final LR of 1e-7 or of
1e-5 is invisible in any fitted loss curve), differ by at most `tolerance` at every step.

Why the max norm, and what it merges (the default tolerance 0.01):
- Every member of a group is within `tolerance` of the group's representative (its first run) at
  every step, so the representative's bound describes each member to that precision; a group never
  chains (a run is compared with the representative, not with its nearest member).
- Two WSDs whose linear cooldowns differ by one step (n and n + 1 steps) differ by about 1/n, so
  they are one group once the cooldown has >= 100 steps (a rounding of cooldown_fraction * T, not a
  different sweep); a one-step change of a 1-sqrt cooldown changes the first cooldown step by
  sqrt(1/n), so it merges only from n ~ 10,000 steps (the paper's 20% of 50k). Distinct sweep points
  stay apart: cooldown fractions 0.2 and 0.21 differ by 0.048 at T = 1000, linear vs 1-sqrt by O(1).
  A distance on integrals (sums of step sizes, which the bound is made of) would forgive the 1-sqrt
  step, but also merge 0.2 with 0.21 (their sums differ by 0.5%), which a sweep means to compare.
- What a group merges, the bound cannot tell apart: the five cos-zero runs (final LR 1e-7 at peak
  LRs 1e-4 .. 5e-3, final fractions 1e-3 .. 2e-5) have optimal peak LRs gamma* (analysis.bound)
  within 0.03% of each other. tolerance=0 groups only identical arrays (above the floor): each
  cos-zero run alone.
Different horizons are always different groups (arrays of different lengths); a reactive schedule
(step decay on plateau), whose LRs follow its run, groups only with identical configs."""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field

import numpy as np

from analysis.safe_schedule import build_schedule, check_schedule_config, schedule_class
from schedules.base import fraction_to_steps

HORIZON_KEYS = ("total_steps",)


@dataclass
class RunGroup:
    name: str                    # describe(config), made unique within a group_runs result
    config: dict                 # the representative schedule config (the group's first run's)
    runs: list = field(default_factory=list)   # analysis.runs.Run, in input order
    total_steps: int = 0
    by: dict = field(default_factory=dict)     # the values of group_runs' `by` keys its runs share


# Shapes ------------------------------------------------------------------------------------------
def _check_config(config, what="schedule config", built=True) -> dict:
    """The config as a dict with a whole total_steps; built: also one build_schedule accepts (describe
    only reads a config, so it also takes a class outside `schedules`)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    if built:
        check_schedule_config(config, what)
    if not isinstance(config, dict) or "_target_" not in config:
        raise ValueError(f"{what} {config!r} is not a schedule config: it needs `_target_` (e.g. "
                         "'schedules.WSD') and the schedule's arguments, as train.py records them")
    steps = config.get("total_steps")
    if isinstance(steps, bool) or not isinstance(steps, (int, float, np.integer, np.floating)) or steps != int(steps):
        raise ValueError(f"{what} has total_steps={steps!r}; give the horizon as a whole number of updates "
                         "(a '${...}' left unresolved means the config was saved before Hydra resolved it)")
    return config


def _multipliers(config: dict, what="schedule config") -> np.ndarray | str:
    schedule = build_schedule(config, what)     # only a schedules class, plain arguments
    if getattr(schedule, "reactive", False):    # its LRs follow the run's val loss: equal configs, one group
        return json.dumps(config, sort_keys=True, default=str)
    return schedule.multipliers()


def _check_tolerances(tolerance, ignore_below):
    for name, value in (("tolerance", tolerance), ("ignore_below", ignore_below)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name}={value!r} must be a number in [0, 1) (a multiple of the peak LR), "
                             f"e.g. {name}=0.01")


def _close(a: np.ndarray | str, b: np.ndarray | str, tolerance: float, ignore_below: float) -> bool:
    if isinstance(a, str) or isinstance(b, str):  # a reactive schedule (see _multipliers): equal configs
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a.shape != b.shape:
        return False
    return float(np.max(np.abs(np.maximum(a, ignore_below) - np.maximum(b, ignore_below)), initial=0.0)) \
        <= tolerance


def same_shape(a: dict, b: dict, tolerance: float = 0.01, ignore_below: float = 0.01) -> bool:
    """Whether schedule configs a and b are one shape: equal horizons and multipliers within
    `tolerance` at every step once both are floored at `ignore_below` (see the module docstring)."""
    _check_tolerances(tolerance, ignore_below)
    return _close(_multipliers(_check_config(a)), _multipliers(_check_config(b)), tolerance, ignore_below)


# Grouping ----------------------------------------------------------------------------------------
def group_runs(runs, tolerance: float = 0.01, ignore_below: float = 0.01, by=()) -> list[RunGroup]:
    """Runs of one schedule shape (same_shape with the group's first run) form a group.

    by: run-config keys that must also agree within a group, dotted for nested configs: a glob over
    several model sizes or data sets is several sweeps of one shape, e.g. by=("n_layer", "dataset")
    for the paper's logs, by=("model.n_layer", "data.name") for train.py's runs.
    Ordered by horizon, then name; names are describe(config), made unique within the result: the
    horizon where clashing groups differ in it, then the `by` values and the arguments that differ."""
    _check_tolerances(tolerance, ignore_below)
    by = (by,) if isinstance(by, str) else tuple(by)
    shapes = {}     # the config's JSON -> its multipliers: paper grids repeat one config per peak LR
    placed = {}     # (the config's JSON, the by values' JSON) -> the group it joined
    groups: list[tuple[RunGroup, np.ndarray]] = []
    for run in runs:
        what = f"run {run.name!r} ({run.source})"
        if run.schedule_config is None:
            raise ValueError(f"{what} recorded no schedule config (`_target_` + arguments), so it cannot be "
                             "grouped by schedule: leave it out of the glob, or rerun it with train.py")
        config = _check_config(run.schedule_config, f"{what}: schedule config")
        values = {key: _lookup(run, key) for key in by}
        key = json.dumps(config, sort_keys=True, default=str)
        if key not in shapes:
            shapes[key] = _multipliers(config, f"{what}: schedule config")
        shape, where = shapes[key], (key, json.dumps(values, sort_keys=True, default=str))
        if where not in placed:
            placed[where] = next((group for group, representative in groups if group.by == values
                                  and _close(shape, representative, tolerance, ignore_below)), None)
        if placed[where] is None:
            placed[where] = RunGroup(describe(config, ignore_below=ignore_below), dict(config), [],
                                     int(config["total_steps"]), values)
            groups.append((placed[where], shape))
        placed[where].runs.append(run)
    result = [group for group, _ in groups]
    _make_names_unique(result)
    return sorted(result, key=lambda g: (g.total_steps, g.name))


def _lookup(run, dotted: str):
    node = run.config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            keys = sorted(node) if isinstance(node, dict) else []
            raise ValueError(f"run {run.name!r} has no config key {dotted!r} to group by; "
                             f"its keys{' under ' + dotted.rsplit('.', 1)[0] if '.' in dotted else ''} "
                             f"are {keys[:30]}")
        node = node[part]
    return node


def _make_names_unique(groups: list[RunGroup]) -> None:
    for clash in _clashes(groups):
        if len({g.total_steps for g in clash}) > 1:
            for group in clash:
                group.name += f", T = {_steps(group.total_steps)} steps"   # as describe(horizon=True) says it
    for clash in _clashes(groups):
        details = [", ".join(d for d in parts if d) for parts in
                   zip(_differences([g.by for g in clash], "{}={}".format),
                       _differences([{**_defaults(g.config), **g.config} for g in clash], _detail))]
        for group, detail in zip(clash, details):
            group.name += f" ({detail})" if detail else ""
    for clash in _clashes(groups):   # configs that differ only where describe() cannot say (last resort)
        for i, group in enumerate(clash, 1):
            group.name += f" #{i}"


def _clashes(groups):
    by_name = {}
    for group in groups:
        by_name.setdefault(group.name, []).append(group)
    return [clash for clash in by_name.values() if len(clash) > 1]


def _differences(dicts: list[dict], words) -> list[str]:
    """Per dict, its entries whose values differ within `dicts`, each in words(key, value)."""
    keys = [k for k in dict.fromkeys(k for d in dicts for k in d) if k not in HORIZON_KEYS
            and len({json.dumps(d.get(k), sort_keys=True, default=str) for d in dicts}) > 1]
    return [", ".join(words(k, d.get(k)) for k in keys) for d in dicts]


def _detail(key, value) -> str:
    if key == "_target_":
        return str(value).rsplit(".", 1)[-1]
    if key == "warmup_steps":
        return f"warmup {_steps(value)} steps" if value else "no warmup"
    if key == "warmup_start":
        return f"warmup from {_percent(value)}"
    if key == "final_fraction":
        return f"final LR {_percent(value)} of the peak"
    return f"{key}={value}"


# Words -------------------------------------------------------------------------------------------
def _percent(x: float) -> str:
    return f"{100 * float(x):.3g}%"


def _steps(n) -> str:
    n = int(n)
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}"


def _defaults(config: dict) -> dict:
    """The schedule class's default arguments (a recorded config may leave some out)."""
    try:    # looked up, never imported: describing a crafted config must not run its module
        cls = schedule_class(config["_target_"])
    except ValueError:  # a class outside `schedules` is described by its arguments alone
        return {}
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _to(final: float, ignore_below: float) -> str:
    return "to 0" if final < ignore_below else f"to {_percent(final)}"


def _to_nonzero(final: float, ignore_below: float) -> str:
    """A cooldown's end, said only when it is not ~0 (the usual case needs no words)."""
    return "" if final < ignore_below else f" to {_percent(final)}"


def _cooldown_length(args: dict, total_steps: int) -> int:
    """Steps in the cooldown, given (as the classes take it) as cooldown_steps or cooldown_fraction."""
    if args.get("cooldown_steps") is not None:
        return int(args["cooldown_steps"])
    return fraction_to_steps(total_steps, float(args.get("cooldown_fraction") or 0.0))


def _cooldown(args: dict) -> str:
    """In the unit the config chose: "20% linear cooldown" or "2,000-step linear cooldown"."""
    if args.get("cooldown_steps") is not None:
        return f"{int(args['cooldown_steps']):,}-step {args['cooldown_kind']} cooldown"
    return f"{_percent(args['cooldown_fraction'])} {args['cooldown_kind']} cooldown"


def describe(config: dict, horizon: bool = False, warmup: bool = False, ignore_below: float = 0.01) -> str:
    """The schedule config in words, e.g. "WSD, 20% linear cooldown", "cosine to 0".

    Final values below `ignore_below` (of the peak) read as "to 0"; horizon=True appends
    ", T = 50k steps"; warmup=True appends the warmup ("300 warmup steps" or "no warmup")."""
    config = _check_config(config, built=False)
    args = {**_defaults(config), **config}
    kind = str(args["_target_"]).rsplit(".", 1)[-1]
    T = int(args["total_steps"])
    final = float(args.get("final_fraction") or 0.0)
    has_cooldown = _cooldown_length(args, T) > 0
    if kind == "Constant" or (kind == "WSD" and not has_cooldown):
        text = "constant LR"
    elif kind == "WSD":
        text = f"WSD, {_cooldown(args)}{_to_nonzero(final, ignore_below)}"
    elif kind == "TwoStageWSD":
        if args.get("drop_step") is not None:
            where = f"from step {int(args['drop_step']):,}"
        else:   # (a config with neither is invalid; the class says so when it is built)
            where = f"from {_percent(args.get('drop_fraction') or 0)} of the run"
        over = f" over {int(args['transition_steps']):,} steps" if args.get("transition_steps") else ""
        text = f"two-stage WSD, rho {float(args['rho']):.3g} {where}{over}"
        if has_cooldown:
            text += f", {_cooldown(args)}{_to_nonzero(final, ignore_below)}"
    elif kind in ("Linear", "Cosine", "CosinePaper"):
        text = f"{'linear decay' if kind == 'Linear' else 'cosine'} {_to(final, ignore_below)}"
    elif kind == "Polynomial":
        power = float(args["power"])
        text = (f"linear decay {_to(final, ignore_below)}" if power == 1
                else f"polynomial decay (power {power:.3g}) {_to(final, ignore_below)}")
    elif kind == "CyclicCosine":
        factor = float(args["cycle_factor"])
        text = (f"cosine {_to(final, ignore_below)}" if factor == 1
                else f"cyclic cosine, half-period {factor:.3g}x the run, minimum {_percent(final)}")
    elif kind == "Exponential":
        # The final value is the decay rate itself (f^p): 0.1% and 0.01% are different shapes, so it is
        # always spelled out rather than read as "to 0".
        text = f"exponential to {_percent(final)}"
    elif kind == "InverseSqrt":
        tau = args.get("timescale")
        text = "1/sqrt(t)" if tau is None else f"1/sqrt(t), timescale {int(tau):,} steps"
        if has_cooldown:
            text += f", {_cooldown(args)}{_to_nonzero(final, ignore_below)}"
    elif kind == "StepDecay":
        marks = "/".join(f"{100 * float(m):.3g}" for m in args["milestones"])
        text = f"step decay x{float(args['factor']):.3g} at {marks}%"
    elif kind == "StepOnPlateau":
        text = f"step decay x{float(args['factor']):.3g} on plateau (patience {int(args['patience'])} evaluations)"
    elif kind == "REX":
        extras = [] if float(args["beta"]) == 0.5 else [f"beta {float(args['beta']):.3g}"]
        if int(args["update_every"]) > 1:
            extras.append(f"updated every {int(args['update_every']):,} steps")
        text = "REX" + (f" ({', '.join(extras)})" if extras else "") + _to_nonzero(final, ignore_below)
    elif kind == "OneCycle":
        extras = []
        if float(args["pct_start"]) != 0.3:
            extras.append(f"{_percent(args['pct_start'])} ramp")
        if args["anneal_strategy"] != "cos":
            extras.append(f"{args['anneal_strategy']} anneal")
        text = "OneCycle" + (f" ({', '.join(extras)})" if extras else "")
    elif kind == "PiecewiseLinear":
        at = (lambda x: f"{_percent(x)}") if args.get("x_units", "fraction") == "fraction" \
            else (lambda x: f"step {int(x):,}")
        text = "piecewise linear: " + ", ".join(f"{float(v):.3g} at {at(x)}" for x, v in args["points"])
    elif kind == "FromArray":
        source = args["source"]
        text = (f"from {str(source).replace(chr(92), '/').rsplit('/', 1)[-1]}" if isinstance(source, str)
                else f"from an array of {len(source)} values")
    else:   # a schedule class outside schedules/: its name and arguments
        rest = {k: v for k, v in config.items() if k not in ("_target_", "total_steps", "warmup_steps", "warmup_start")}
        text = kind + (f"({', '.join(f'{k}={v}' for k, v in rest.items())})" if rest else "")
    if warmup and kind != "OneCycle":   # OneCycle's ramp is part of its name
        steps = int(args.get("warmup_steps") or 0)
        text += f", {steps:,} warmup steps" if steps else ", no warmup"
    if horizon:
        text += f", T = {_steps(T)} steps"
    return text


def main(argv=None):
    """python -m analysis.groups GLOB [GLOB ...]: the sweeps group_runs finds, one line each."""
    import argparse

    from analysis.runs import load_many

    parser = argparse.ArgumentParser(prog="python -m analysis.groups", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories, paper .json logs or globs of them (quoted)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="max multiplier difference in a group")
    parser.add_argument("--ignore-below", type=float, default=0.01, help="multipliers floored at this value")
    parser.add_argument("--by", action="append", default=[], metavar="KEY",
                        help="run-config key that splits groups too, e.g. n_layer or model.n_layer; repeatable")
    args = parser.parse_args(argv)
    for group in group_runs(load_many(args.runs), args.tolerance, args.ignore_below, args.by):
        lrs = ", ".join(f"{lr:.3g}" for lr in sorted({run.peak_lr for run in group.runs if run.peak_lr}))
        count = f"{len(group.runs)} run{'s' if len(group.runs) > 1 else ''}"
        print(f"{group.name}  [T = {group.total_steps:,}; {count}; peak LRs {lrs}]")


if __name__ == "__main__":
    main()
