"""The figures of Schaipp et al. (ICML 2025) that `python -m scripts.reproduce` rebuilds.

Each module lists its figures as `FIGURES`, a list of `figures.common.FigureSpec`:
    theory.py      the bound's figures (D = G = 1; docs/theory.md), and the convex toy problem
    real_data.py   figures of real training logs (the paper's JSON logs or this project's run directories)
"""
from scripts.figures import real_data, theory

ALL = {spec.name: spec for spec in [*theory.FIGURES, *real_data.FIGURES]}
