"""Plot learning-rate schedules exactly as the trainer builds them (hydra.compose on configs/).

    python -m schedules plot schedule=wsd schedule.cooldown_fraction=0.2 schedule=cosine \
        trainer.max_steps=5000 --out outputs/lr.png

Every `schedule=NAME` token starts a new curve and the `schedule.*=` tokens after it apply to that
curve (before any `schedule=NAME` they tune config.yaml's default schedule); all other overrides
(trainer.max_steps=..., optimizer.lr=..., experiment=...) apply to every curve. The y-axis is the
actual LR, optimizer.lr x multiplier. PNG, or PDF if --out ends in .pdf.
"""
import argparse
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from matplotlib.figure import Figure

import training.config  # noqa: F401  registers the configs' resolvers (${warmup:...} of trainer.warmup_steps), torch-free

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def split_curves(overrides: list[str]) -> tuple[list[str], list[list[str]]]:
    """Overrides -> (common overrides, one override list per curve)."""
    common, curves = [], []
    for token in overrides:
        key = token.lstrip("+~").split("=", 1)[0]
        if key == "schedule":
            curves.append([token])
        elif key.startswith("schedule."):
            if not curves:
                curves.append([])  # tunes the default schedule of config.yaml
            curves[-1].append(token)
        else:
            common.append(token)
    return common, curves or [[]]


def curve_label(curve: list[str], schedule) -> str:
    if not curve or curve[0].lstrip("+~").split("=", 1)[0] != "schedule":
        curve = [type(schedule).__name__] + curve
    return " ".join(token.removeprefix("schedule=").replace("schedule.", "") for token in curve)


def plot(overrides: list[str], out: str, config_dir: Path = CONFIG_DIR) -> list[np.ndarray]:
    """Compose one config per curve, instantiate its schedule, plot peak LR x multipliers; return the LRs."""
    common, curves = split_curves(overrides)
    fig = Figure(figsize=(6, 3.5), layout="tight")
    ax = fig.add_subplot()
    all_lrs = []
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        for curve in curves:
            cfg = compose(config_name="config", overrides=common + curve)
            schedule = instantiate(cfg.schedule)
            lrs = float(cfg.optimizer.lr) * schedule.multipliers()
            ax.plot(np.arange(schedule.total_steps), lrs, label=curve_label(curve, schedule))
            all_lrs.append(lrs)
    ax.set_xlabel("step (optimizer update)")
    ax.set_ylabel("learning rate")
    ax.set_ylim(bottom=0)
    if common:
        ax.set_title(" ".join(common), fontsize=9)
    ax.grid(lw=0.3, ls="--")
    ax.legend(fontsize=8)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)  # the format follows the suffix (.png, .pdf)
    return all_lrs


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m schedules", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plot", help="plot schedules built from configs/ (see above)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides; schedule=NAME starts a new curve")
    p.add_argument("--out", default="outputs/lr.png", help="output file, .png or .pdf (default: outputs/lr.png)")
    p.add_argument("--config-dir", default=str(CONFIG_DIR), help="config directory (default: the repo's configs/)")
    args = parser.parse_args(argv)
    plot(args.overrides, args.out, Path(args.config_dir))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
