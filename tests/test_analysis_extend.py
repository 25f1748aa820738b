"""analysis.extend and `advise extend`: continuing a finished run to a longer horizon
(THEORY.md section 2 (i)), checked against the closed-form optimal LR of the bound."""
from pathlib import Path

import pytest

from analysis import advise
from analysis.bound import optimal_lr
from analysis.cli import main
from analysis.extend import extension_options

PAPER = Path(__file__).parent / "data" / "paper_logs"


def test_extension_options():
    T1, T2 = 4000, 8000
    wsd = {"_target_": "schedules.WSD", "total_steps": T1, "warmup_steps": 0, "warmup_start": 0.0,
           "cooldown_fraction": 0.2, "cooldown_kind": "linear", "final_fraction": 0.0}
    gamma_1 = optimal_lr(advise.shape_of(wsd))[0]
    table = extension_options(wsd, gamma_1, T2).set_index("option")
    two_stage = table.loc["two-stage WSD (rho)"]
    assert two_stage["config"]["drop_step"] == 3200 and 0.2 < two_stage["config"]["rho"] < 1.0
    # rho keeps the optimal LR of the new schedule equal to the one in use (within 1%).
    assert optimal_lr(advise.shape_of(two_stage["config"]))[0] == pytest.approx(gamma_1, rel=0.01)
    assert two_stage["lr"] == gamma_1 and two_stage["init_step"] == 3200
    cooldown = table.loc["adapted cooldown fraction"]
    assert optimal_lr(advise.shape_of(cooldown["config"]))[0] == pytest.approx(gamma_1, rel=0.01)
    # Keeping the LR is clearly worse in the bound than either option; gamma*(T) ~ T^-1/2.
    same = table.loc["same LR (baseline)", "bound"]
    assert two_stage["bound"] < 0.97 * same and cooldown["bound"] < 0.97 * same
    rescaled = table.loc["same schedule, LR rescaled"]
    assert rescaled["lr"] / gamma_1 == pytest.approx((T2 / T1) ** -0.5, rel=0.15)
    assert rescaled["bound"] == pytest.approx(optimal_lr(advise.shape_of(rescaled["config"]))[1], rel=1e-12)
    with pytest.raises(ValueError, match="must exceed"):
        extension_options(wsd, 1e-3, T1)


def test_cli_extend_writes_plots(tmp_path, capsys):
    run = next(PAPER.glob("ann124-0.2_*_lr0.001_*decay_linear_0.2_iter50000_*.json"))
    table = main(["advise", "extend", "--run", str(run), "--steps", "100000", "--g-model", "constant",
                  "--out", str(tmp_path / "extend")])
    assert {"two-stage WSD (rho)", "adapted cooldown fraction"} <= set(table["option"])
    assert "schedule=two_stage_wsd" in capsys.readouterr().out
    for suffix in (".png", ".pdf"):
        assert (tmp_path / "extend" / f"extension{suffix}").stat().st_size > 0
