"""Figures of Schaipp et al. (ICML 2025) from the bound (THEORY.md section 3; D = G = 1), collected.

    python -m scripts.reproduce --list                 # every figure with its caption
    python -m scripts.reproduce --figure fig11 --small

The figures live in theory_*.py by topic (theory_common.py: the paper's schedules as configs, plot
helpers); this module only lists them, in figure order:
    theory_horizon.py    Figs. 1b, 2, 3, 13, 14, 20   cosine vs WSD over the horizon, no log factor
    theory_cooldown.py   Figs. 4, 5, 6, 11, 15, 16    cooldown length and shape, G_t = t^alpha, LR transfer
    theory_extension.py  Figs. 8, 9                   continued training (analysis.extend)
    theory_compare.py    Figs. 17, 18, 19             convex toy problem, six schedules, cosine cycles
Fig. 7 is not reproduced (NOT_REPRODUCED says why, for --list).
"""
import re

from scripts.figures import theory_compare, theory_cooldown, theory_extension, theory_horizon
from scripts.figures.common import FigureSpec

FIGURES: list[FigureSpec] = sorted(
    [*theory_horizon.FIGURES, *theory_cooldown.FIGURES, *theory_extension.FIGURES, *theory_compare.FIGURES],
    key=lambda spec: int(re.match(r"fig(\d+)", spec.name)[1]))

# Theory figures left out, with the reason (for `--list`). Fig. 7 of the paper's code
# (scripts/lower_bound.py of fabian-sp/lr-scheduling) needs no GPU, but solves a semidefinite program
# per horizon through PEPit and an SDP solver (MOSEK, or cvxpy), none of which the project depends on.
NOT_REPRODUCED = {
    "fig7": "WSD-0.2 at T = 60: Omega_t against the PEP lower bound (worst case over convex G-Lipschitz "
            "functions); not reproduced: needs PEPit and an SDP solver, not project dependencies",
}
