"""Figures of Schaipp et al. from the bound (THEORY.md section 3)."""
from scripts.figures.common import FigureSpec

FIGURES: list[FigureSpec] = []
