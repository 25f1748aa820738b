"""The schedule benchmark: learning-rate schedules from configs/schedule/ compared on problems that run in
minutes on a CPU (scikit-learn's bundled data sets, and optionally the tiny Llama through the trainer),
with the studies of Defazio et al. (linear decay vs refined schedules) and Chen et al. (REX, budgets).

    python -m scripts.schedule_benchmark {defazio,chen} [--smoke] [--problems ...] [--seeds N] [--steps T]

Modules: problems (data, models, objectives), harness (one run, the grid, LR tuning, ranks), defazio,
chen (the two studies), llm (the tiny-Llama case), report (tables and plots), __main__ (the CLI).
"""
