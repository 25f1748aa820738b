"""Figures of Schaipp et al. (ICML 2025) from the bound (docs/theory.md; D = G = 1), collected.

    python -m scripts.reproduce --list                 # every figure with its caption
    python -m scripts.reproduce --figure fig11 --small

The figures live in theory_*.py by topic (theory_common.py: the paper's schedules as configs, plot
helpers); this module only lists them, in figure order:
    theory_horizon.py    Figs. 1b, 2, 3, 13, 14, 20   cosine vs WSD over the horizon, no log factor
    theory_cooldown.py   Figs. 4, 5, 6, 11, 15, 16    cooldown length and shape, G_t = t^alpha, LR transfer
    theory_extension.py  Figs. 8, 9                   continued training (analysis.extend)
    theory_pep.py        Fig. 7                       the bound against the subgradient method's worst case (an SDP)
    theory_compare.py    Figs. 17, 18, 19             convex toy problem, six schedules, cosine cycles
Every theory figure of the paper is reproduced (NOT_REPRODUCED, for --list, is empty).
"""
import re

from scripts.figures import theory_compare, theory_cooldown, theory_extension, theory_horizon, theory_pep
from scripts.figures.common import FigureSpec

FIGURES: list[FigureSpec] = sorted(
    [*theory_horizon.FIGURES, *theory_cooldown.FIGURES, *theory_extension.FIGURES, *theory_pep.FIGURES,
     *theory_compare.FIGURES],
    key=lambda spec: int(re.match(r"fig(\d+)", spec.name)[1]))

# Theory figures left out, with the reason (for `--list`); none since Fig. 7's PEP is solved with cvxpy.
NOT_REPRODUCED: dict[str, str] = {}
