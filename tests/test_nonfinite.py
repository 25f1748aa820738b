"""A non-finite gradient never reaches a checkpoint (training/nonfinite.py, trainer.on_nonfinite).

The fault is injected where it happens in practice: a NaN in the backward pass of one update (the
forward loss stays finite, so a loss check alone, as the trainer once had, saves the NaN weights).
`python -m pytest -q tests/test_nonfinite.py`
"""

from __future__ import annotations

import math

import pytest
import torch

import train as train_module
from models.llama import Llama
from tests.conftest import TINY, compose_config
from training import checkpoint
from training.nonfinite import params_finite
from training.rundir import read_metrics

pytestmark = pytest.mark.slow
ACCUM = 2  # TINY: batch_size 8 / micro_batch_size 4


def inject_nan_gradient(monkeypatch, updates: set[int]) -> None:
    """Make the gradient of every parameter NaN in the given (1-based) optimizer updates; the forward
    values stay finite. Counts the forwards that build a graph (evaluation runs under no_grad)."""
    forward = Llama.forward
    calls = {"n": 0}

    def patched(self, tokens, targets=None):
        out = forward(self, tokens, targets)
        if torch.is_grad_enabled() and targets is not None:
            calls["n"] += 1
            if (calls["n"] - 1) // ACCUM + 1 in updates:
                out.register_hook(lambda grad: torch.full_like(grad, math.nan))
        return out

    monkeypatch.setattr(Llama, "forward", patched)


def config(*extra):
    return compose_config(TINY + ["trainer.checkpoint_interval=5", "trainer.log_interval=4", *extra])


def test_nan_gradient_at_a_checkpoint_step_stops_before_the_save(tmp_path, monkeypatch):
    inject_nan_gradient(monkeypatch, {10})  # update 10 ends at step 10, a checkpoint step
    with pytest.raises(FloatingPointError, match=r"step 10 .*gradient norm was non-finite.*step_0000005"):
        train_module.train(config(), tmp_path)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_0000005"]
    state = checkpoint.load(checkpoint.latest_checkpoint(tmp_path))
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_nan_between_log_events_is_caught_at_the_next_one_without_a_per_step_sync(tmp_path, monkeypatch):
    inject_nan_gradient(monkeypatch, {6})  # logged at step 8: the device flag carries it there
    with pytest.raises(FloatingPointError, match=r"step 8 .*step_0000005"):
        train_module.train(config(), tmp_path)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_0000005"]


def test_skip_policy_drops_exactly_the_bad_update_and_goes_on(tmp_path, monkeypatch):
    inject_nan_gradient(monkeypatch, {10})
    summary = train_module.train(config("trainer.on_nonfinite=skip"), tmp_path)
    assert summary["step"] == 20 and math.isfinite(summary["final_val_loss"])
    state = checkpoint.load(checkpoint.latest_checkpoint(tmp_path))
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # AdamW counts the updates it applied: 19 of 20, every parameter alike.
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {19.0}
    events = read_metrics(tmp_path)
    # train events at log steps (4, 8, 12, ...) and checkpoint steps (5, 10, ...) carry the count from step 10 on
    assert [(e["step"], e["skipped_updates"]) for e in events if "skipped_updates" in e] == \
        [(10, 1), (12, 1), (15, 1), (16, 1), (20, 1)]
    # the checkpoint written at step 10 (right after the skipped update) holds the step-9 weights
    ten = checkpoint.load(checkpoint.checkpoint_dir(tmp_path, 10))
    assert {float(s["step"]) for s in ten["optimizer"]["state"].values()} == {9.0}


def test_skips_are_bounded(tmp_path, monkeypatch):
    inject_nan_gradient(monkeypatch, set(range(7, 21)))
    cfg = config("trainer.on_nonfinite=skip", "trainer.max_nonfinite_skips=3")
    with pytest.raises(FloatingPointError, match=r"4 updates .*update 10.*max_nonfinite_skips=3"):
        train_module.train(cfg, tmp_path)


def test_params_finite_sees_one_bad_element():
    params = [torch.zeros(3, 4), torch.ones(5)]
    assert bool(params_finite(params))
    for bad in (math.inf, -math.inf, math.nan):
        params[1][2] = bad
        assert not bool(params_finite(params))


@pytest.mark.parametrize("override, message", [
    ("trainer.on_nonfinite=ignore", "trainer.on_nonfinite=ignore: use stop or skip"),
    ("trainer.max_nonfinite_skips=-1", "trainer.max_nonfinite_skips=-1 must be an integer >= 0"),
])
def test_bad_policy_values_fail_before_training(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        train_module.train(config(override), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()
