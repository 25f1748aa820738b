"""What every reproduced figure shares: its spec, the context it is built in, and how it is saved.

A figure is a function `make(ctx) -> (matplotlib Figure, numbers)`: `numbers` is a JSON-able dict
of exactly what is plotted (curves, fitted values, and fitted exponents under `exponents` where a
figure fits any), so that tests and readers can check a figure without looking at pixels.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.figure import Figure

from analysis.plots import save_figure

PAPER_LOGS = Path(__file__).resolve().parents[2] / "tests" / "data" / "paper_logs"


@dataclass(frozen=True)
class Context:
    """small: reduced settings (fewer horizons, shorter grids) for the tests; logs: where the
    real-data figures read runs (the paper's JSON logs or this project's run directories)."""
    small: bool = False
    logs: Path = PAPER_LOGS


@dataclass(frozen=True)
class FigureSpec:
    name: str                                            # "fig3", "fig11", ... (the --figure argument)
    caption: str                                         # one line: what it shows, in words
    make: Callable[[Context], tuple[Figure, dict]]
    needs_logs: bool = False                             # a real-data figure (reads ctx.logs)


def to_jsonable(value):
    """numpy arrays and scalars -> lists and floats, recursively; NaN/inf -> None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write(spec: FigureSpec, ctx: Context, out: Path) -> list[Path]:
    """Build the figure and write out/<name>.png, .pdf and .json."""
    fig, numbers = spec.make(ctx)
    written = save_figure(fig, out / spec.name)
    path = out / f"{spec.name}.json"
    path.write_text(json.dumps({"figure": spec.name, "caption": spec.caption, **to_jsonable(numbers)}, indent=1))
    return written + [path]
