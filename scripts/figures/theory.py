"""Figures of Schaipp et al. (ICML 2025) from the bound (THEORY.md section 3; D = G = 1), collected.

    python -m scripts.reproduce --list                 # every figure with its caption
    python -m scripts.reproduce --figure fig11 --small

The figures live in theory_*.py by topic; this module only lists them:
    theory_horizon.py    Figs. 1b, 2, 3, 13, 14, 20   cosine vs WSD over the horizon, no log factor
Fig. 7 (the PEP lower bound against Omega_t) is not reproduced: it solves a semidefinite program
(PEPit with an SDP solver), which the project does not depend on.
"""
from scripts.figures import theory_horizon
from scripts.figures.common import FigureSpec

FIGURES: list[FigureSpec] = [*theory_horizon.FIGURES]
