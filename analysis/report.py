"""What the advisor prints: a run's validation curve for the fits, and terminal tables.

    from analysis.report import curve_of, print_table
"""
from __future__ import annotations

import math

import pandas as pd

from analysis.fit import Curve


def curve_of(run):
    """The run's validation-loss curve, or None with fewer than 4 points (too few to fit the bound)."""
    m = run.metrics.dropna(subset=["val/loss"])
    if len(m) < 4:
        return None
    return Curve(m["step"].to_numpy(), m["val/loss"].to_numpy(), run.lr(), f"lr={run.peak_lr:g}")


def print_table(table: pd.DataFrame, columns, formats):
    shown = table[columns].copy()
    for column, fmt in formats.items():
        shown[column] = shown[column].map(lambda v, f=fmt: "-" if v is None or (isinstance(v, float) and
                                                                                 not math.isfinite(v)) else f.format(v))
    print(shown.to_string(index=False))
