"""What the advisor prints: a run's validation curve for the fits, the setup of a set of runs in words,
notes, and terminal tables that fit in 120 columns.

    from analysis.report import curve_of, note, print_table, say, setup_of
    print_table(table, ["schedule", "lr"], {"lr": "{:.4g}"})   # a rich table, long cells wrapped

Used by analysis/cli.py and analysis/extend.py (`python -m analysis advise ...`).
"""
from __future__ import annotations

import math
import shutil

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from analysis.fit import Curve

MAX_WIDTH = 120       # columns of every table the advisor prints


def curve_of(run):
    """The run's validation-loss curve, or None with fewer than 4 points (too few to fit the bound)."""
    m = run.metrics.dropna(subset=["val/loss"])
    if len(m) < 4:
        return None
    return Curve(m["step"].to_numpy(), m["val/loss"].to_numpy(), run.lr(), f"lr={run.peak_lr:g}")


def _cell(value, fmt=None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value) if fmt else str(value)


def print_table(table: pd.DataFrame, columns, formats, title=None):
    """The columns of `table`, formatted (`formats`: column -> format string; NaN/None print as '-'),
    as a table at most MAX_WIDTH columns wide: rich wraps the longest cells (labels) to fit."""
    width = min(MAX_WIDTH, shutil.get_terminal_size((MAX_WIDTH, 24)).columns)
    console = Console(width=width, highlight=False, soft_wrap=False)
    shown = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for i, column in enumerate(columns):
        # The first column (a name in words) wraps at spaces; the others keep their values whole.
        shown.add_column(column, justify="right" if column in formats else "left", overflow="fold",
                         no_wrap=i > 0 and column in formats, ratio=None)
    for _, row in table.iterrows():
        shown.add_row(*(Text(_cell(row[c], formats.get(c))) for c in columns))
    console.print(shown)


def say(text: str):
    """Text on stdout, wrapped at spaces to MAX_WIDTH columns."""
    Console(width=MAX_WIDTH, highlight=False).print(Text(text))


def note(text: str):
    """A note about the data (a run skipped or left out, a fit not made), on stdout beside the tables."""
    say(f"note: {text}")


def setup_of(runs) -> str:
    """The model and data of runs in words when their configs say so, e.g. 'Llama 12x768, slimpajama'."""
    parts = set()
    for run in runs:
        config = run.config or {}
        model = config.get("model") if isinstance(config.get("model"), dict) else config
        layers, width = model.get("n_layer"), model.get("d_model", model.get("n_embd"))
        data = config.get("data")
        data = data.get("name") if isinstance(data, dict) else config.get("dataset")
        model_text = f"Llama {layers}x{width}" if layers and width else None
        parts.add(", ".join(p for p in (model_text, data) if p))
    parts.discard("")
    return "; ".join(sorted(parts))
