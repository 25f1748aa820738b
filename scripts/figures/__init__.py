"""The paper figures that `python -m scripts.reproduce` rebuilds.

Each module lists its figures as `FIGURES`, a list of `figures.common.FigureSpec`:
  Schaipp et al. (ICML 2025), the convex bound and LLM runs:
    theory.py             the bound's figures (D = G = 1; docs/theory.md), and the convex toy problem
    real_data.py          figures of real training logs (the paper's JSON logs or this project's run directories)
  Bordelon & Mori, the power-law random-feature model (analysis/random_features.py; THEORY.md section 6):
    bordelon.py           bm2 (optimal schedules and loss exponents, both phases), bm3 (bias/variance)
    bordelon_compute.py   bm4 (compute-optimal scaling)
    bordelon_momentum.py  bm5 (jointly optimal LR and momentum)
    bordelon_shapes.py    bm_shapes (the convex bound's optimal schedule beside the random-feature optima)
"""
from scripts.figures import bordelon, bordelon_compute, bordelon_momentum, bordelon_shapes, real_data, theory

PAPERS = {
    "schaipp": [*theory.FIGURES, *real_data.FIGURES],
    "bordelon-mori": [*bordelon.FIGURES, *bordelon_compute.FIGURES, *bordelon_momentum.FIGURES,
                      *bordelon_shapes.FIGURES],
}
ALL = {spec.name: spec for specs in PAPERS.values() for spec in specs}
