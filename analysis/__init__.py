"""Analysis of runs with the convex-optimization bound (docs/theory.md).

    bound.py   the last-iterate bound: one horizon, every horizon (fast), closed-form optimal LR
    runs.py    run readers: run directories, wandb (online/offline), the paper's JSON logs (paper_logs.py);
               gradient norms; a reactive schedule's LRs from its log
               (safe_schedule.py: the only builder of a recorded schedule config; wandb_log.py: offline logs)
    groups.py  runs -> LR sweeps by schedule shape (and model, data), schedules named in words
    fit.py     loss curves ~ C + M * bound; final loss vs peak LR -> optimal LR and its status
               (bracketed / extrapolated / undetermined) with the LRs to run next
    advise.py  sweeps (diverged runs left out), LR transfer across schedules, sweep vs theory
    extend.py  extension of a finished run to a longer horizon (`advise extend`)
    refine.py  schedules refined from a run's gradient norms (Defazio et al.): `python -m analysis refine`
    plots.py   PNG/PDF figures;  report.py: tables and notes;  cli.py: `python -m analysis advise ...`
Usage: python -m analysis advise {transfer,extend,sweep} --help;  python -m analysis refine --help
"""
