"""The real-data figures of `python -m scripts.reproduce` (scripts/figures/real_data.py, real_sweep.py).

    python -m pytest tests/test_reproduce_real.py -p no:cacheprovider

On the shipped paper logs (tests/data/paper_logs): each figure builds and writes PNG + PDF + JSON, and
the JSON's numbers say what the paper says. On run directories written here (config.yaml +
metrics.jsonl, as train.py leaves them; the losses generated from the bound itself, so the fits have
a known answer): `--logs DIR` builds the same figures from this project's runs.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import yaml
from scipy.optimize import curve_fit

from analysis.bound import bound, bound_curve, optimal_lr
from scripts.figures import ALL
from scripts.figures.common import Context, write
from scripts.reproduce import main

PAPER = Context(small=True)
WSD = {"_target_": "schedules.WSD", "warmup_steps": 0, "warmup_start": 0.0, "cooldown_kind": "linear",
       "final_fraction": 0.0}


@pytest.fixture(scope="module")
def paper_figures(tmp_path_factory):
    """fig1a, fig12 and fig21 of the shipped logs, small settings: {name: (written paths, JSON)}."""
    out = tmp_path_factory.mktemp("figures")
    built = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("fig1a", "fig12", "fig21"):
            written = write(ALL[name], PAPER, out)
            built[name] = (written, json.loads((out / f"{name}.json").read_text()))
    return built


@pytest.mark.parametrize("name", ["fig1a", "fig12", "fig21"])
def test_each_real_figure_writes_png_pdf_and_json(paper_figures, name):
    written, numbers = paper_figures[name]
    assert sorted(p.suffix for p in written) == [".json", ".pdf", ".png"]
    assert all(p.stat().st_size > 1000 for p in written)
    assert numbers["figure"] == name and ALL[name].needs_logs


def test_fig12_fitted_optima_grow_with_the_cooldown_and_follow_the_transfer(paper_figures):
    numbers = paper_figures["fig12"][1]
    assert numbers["reference"] == "WSD, 20% linear cooldown" and numbers["total_steps"] == 50_000
    linear = {g["config"]["cooldown_fraction"]: g for g in numbers["groups"]
              if g["config"]["_target_"] == "schedules.WSD" and g["config"]["cooldown_kind"] == "linear"
              and g["config"]["cooldown_fraction"] > 0}
    assert sorted(linear) == [0.1, 0.2, 0.4, 0.6, 0.8, 0.9]
    fractions = sorted(linear)
    optima = [linear[c]["fitted_optimal_lr"] for c in fractions]
    assert np.all(np.diff(optima) > 0), optima                       # longer cooldowns take larger LRs
    bracketed = [c for c in fractions if linear[c]["bracketed"]]
    assert len(bracketed) >= 3
    for c in bracketed:
        assert 1 / 1.5 < linear[c]["transferred_over_fitted"] < 1.5, (c, linear[c]["transferred_over_fitted"])
    for g in linear.values():   # the plotted optimum is that of an independent fit (scipy's curve_fit)
        (a, b, _), _ = curve_fit(lambda x, a, b, c: a / x + b * x + c, np.array(g["lrs"]) / 1e-3,
                                 g["final_losses"], bounds=([0, 0, -np.inf], np.inf))
        assert g["fitted_optimal_lr"] == pytest.approx(1e-3 * np.sqrt(a / b), rel=1e-3)


def test_fig12_leaves_the_diverged_cosine_run_out_of_its_fit(paper_figures):
    (cosine,) = [g for g in paper_figures["fig12"][1]["groups"] if g["schedule"] == "cosine to 0"]
    assert cosine["diverged_lrs"] == [0.005] and 0.005 not in cosine["lrs"]


def test_fig1a_wsd_matches_cosine_at_every_horizon_and_the_bound_tracks_both(paper_figures):
    numbers = paper_figures["fig1a"][1]
    finals = numbers["final_val_loss"]
    wsd, cosine = finals["WSD, 20% linear cooldown"], finals["cosine to 10%"]
    assert sorted(map(int, wsd)) == sorted(map(int, cosine)) == [22_222, 33_333, 44_444]
    for T in wsd:
        # The logs: WSD (peak 5e-4) ends 0.001 and 0.004 nats below cosine (peak 1e-3) at 22k and 44k,
        # and 0.0006 above at 33k: within 0.002 nats or below everywhere, as the paper's Fig. 1a shows.
        assert wsd[T] < cosine[T] + 0.002, (T, wsd[T], cosine[T])
    assert np.all(np.diff([wsd[T] for T in sorted(wsd, key=int)]) < 0)      # longer runs end lower
    # One bound fitted to all six curves tracks each to its end, and ends lower the longer the run.
    assert numbers["fit"]["r2"] > 0.95 and all(c["r2"] > 0.9 for c in numbers["curves"])
    for schedule in ("WSD", "cosine to 10%"):
        curves = sorted((c for c in numbers["curves"] if c["label"].split(",")[0] == schedule),
                        key=lambda c: c["total_steps"])
        assert [c["total_steps"] for c in curves] == [22_222, 33_333, 44_444]
        assert all(abs(c["bound"][-1] - c["loss"][-1]) < 0.04 for c in curves)
        assert np.all(np.diff([c["bound"][-1] for c in curves]) < 0)


def test_fig10_names_the_logs_it_needs():
    with pytest.raises(ValueError, match="extend-50k.*trainer.init_from"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ALL["fig10"].make(PAPER)


# ---------------------------------------------------------------------------------------------------
# This project's run directories through --logs.
# ---------------------------------------------------------------------------------------------------
G, D, C, M = 0.5, 0.2, 2.0, 10.0     # the "problem" the synthetic runs are generated from (gamma* ~ 0.01)


def _write_run(path, schedule, lr, steps=None, lineage=None):
    """A run directory as train.py leaves it: loss_t = C + M * Omega_t(G, D) of its own step sizes."""
    from hydra.utils import instantiate

    step_sizes = lr * instantiate(schedule).multipliers()
    steps = np.arange(20, schedule["total_steps"] + 1, 20) if steps is None else steps
    val = C + M * bound_curve(step_sizes, G=G, D=D, horizons=steps)
    path.mkdir(parents=True)
    config = {"schedule": schedule, "optimizer": {"lr": lr}, "model": {"n_layer": 2, "d_model": 64},
              "data": {"name": "synthetic"}, "trainer": {"max_steps": schedule["total_steps"]}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"step": int(s), "val/loss": float(v)} for s, v in zip(steps, val)]
    rows.append({"step": int(steps[-1]), "final/val_loss": float(val[-1])})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if lineage:
        (path / "lineage.json").write_text(json.dumps(lineage))


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A multirun folder: WSD with cooldown 0.2 and 0.6 x 4 peak LRs at T = 400, and both at T = 300."""
    root = tmp_path_factory.mktemp("multirun") / "2026-11-30" / "12-00-00"
    job = 0
    for T, lrs in ((400, (0.004, 0.008, 0.016, 0.032)), (300, (0.016,))):
        for c in (0.2, 0.6):
            for lr in lrs:
                _write_run(root / str(job), {**WSD, "total_steps": T, "cooldown_fraction": c}, lr)
                job += 1
    return root.parent.parent


def test_fig12_on_run_directories_recovers_the_bound_optimum(sweep_dir, tmp_path):
    assert main(["--figure", "fig12", "--figure", "fig21", "--small", "--logs", str(sweep_dir),
                 "--out", str(tmp_path)]) == 0
    numbers = json.loads((tmp_path / "fig12.json").read_text())
    assert numbers["model"] == "Llama 2x64, synthetic" and numbers["total_steps"] == 400
    assert [g["schedule"] for g in numbers["groups"]] == ["WSD, 20% linear cooldown", "WSD, 60% linear cooldown"]
    for g in numbers["groups"]:
        # Final losses are C + M * Omega_T(gamma), exactly A/gamma + B gamma + C: the fit's optimum is
        # the bound's closed-form gamma* with this G and D, and the theory's transfer is exact.
        from hydra.utils import instantiate

        shape = instantiate(g["config"]).multipliers()
        assert g["fitted_optimal_lr"] == pytest.approx(optimal_lr(shape, G=G, D=D)[0], rel=1e-6)
        assert g["transferred_over_fitted"] == pytest.approx(1.0, rel=1e-6)
        assert g["final_losses"][0] == pytest.approx(C + M * bound(g["lrs"][0] * shape, G=G, D=D), rel=1e-12)
    curves = json.loads((tmp_path / "fig21.json").read_text())
    assert curves["fit"]["r2"] > 0.9999 and curves["fit"]["C"] == pytest.approx(C, abs=1e-3)
    assert all(c["r2"] > 0.999 for c in curves["curves"])
    assert (tmp_path / "fig21.png").is_file() and (tmp_path / "fig12.pdf").is_file()


def test_fig1a_on_run_directories_needs_two_horizons(sweep_dir, tmp_path):
    fig, numbers = ALL["fig1a"].make(Context(small=True, logs=sweep_dir))
    assert {name: sorted(map(int, h)) for name, h in numbers["final_val_loss"].items()} == \
        {"WSD, 20% linear cooldown": [300, 400], "WSD, 60% linear cooldown": [300, 400]}
    one_horizon = tmp_path / "runs"
    _write_run(one_horizon / "0", {**WSD, "total_steps": 400, "cooldown_fraction": 0.2}, 0.01)
    with pytest.raises(ValueError, match=">= 2 horizons"):
        ALL["fig1a"].make(Context(small=True, logs=one_horizon))


def test_fig10_on_an_extended_run(tmp_path):
    parent = {**WSD, "total_steps": 300, "cooldown_fraction": 0.2}
    _write_run(tmp_path / "parent", parent, 0.01)
    same_lr = {**WSD, "total_steps": 600, "cooldown_fraction": 0.2}
    two_stage = {**same_lr, "_target_": "schedules.TwoStageWSD", "drop_step": 240, "rho": 0.6}
    lineage = {"parent_run": str(tmp_path / "parent"), "branch_step": 240}
    for name, schedule in (("same", same_lr), ("rho", two_stage)):
        _write_run(tmp_path / name, schedule, 0.01, steps=np.arange(260, 601, 20), lineage=lineage)
    fig, numbers = ALL["fig10"].make(Context(small=True, logs=tmp_path))
    assert numbers["parent"] == "parent" and len(numbers["curves"]) == 3
    (name, gain), = numbers["minus_same_lr"]["600"].items()
    assert name.startswith("two-stage WSD, rho 0.6")
    # the bound of a lower second plateau ends lower (at this G, D the LR 0.01 is above gamma*)
    assert gain < 0
