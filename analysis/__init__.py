"""Analysis of runs with the convex-optimization bound (THEORY.md sections 1-3).

    bound.py   the last-iterate bound: one horizon, every horizon (fast), closed-form optimal LR
    runs.py    run readers: run directories, wandb (online/offline), the paper's JSON logs
    fit.py     loss curves ~ C + M * bound; final loss vs peak LR -> empirical optimal LR
    advise.py  LR transfer across schedules, extension to a longer horizon, sweep vs theory
    plots.py   PNG/PDF figures;  cli.py: `python -m analysis advise {transfer,extend,sweep} ...`
"""
