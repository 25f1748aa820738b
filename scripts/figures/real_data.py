"""Figures of Schaipp et al. from real training logs."""
from scripts.figures.common import FigureSpec

FIGURES: list[FigureSpec] = []
