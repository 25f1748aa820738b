"""Step decay on plateau (schedules/plateau.py): the multipliers against torch's ReduceLROnPlateau on
scripted validation losses, the checkpoint state, bad input, the config, and (tiny real runs) the trainer's
observe / checkpoint / resume wiring.

    python -m pytest -q tests/test_plateau.py -p no:cacheprovider
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from schedules import Schedule, StepOnPlateau
from training.setup import compose

NAN, INF = math.nan, math.inf
# Scripted validation losses: improvements, plateaus, gains below a relative 1e-4 (2.0 -> 1.99985),
# a diverged evaluation (NaN, inf) and a recovery after it.
SCRIPT = [3.0, 2.5, 2.5, 2.6, 2.4, 2.4, 2.4, 2.0, 1.99985, 1.9999, 2.1, NAN, 1.9, 1.9, INF, 1.95, 1.89,
          1.89, 1.89, 1.89, 1.5, 1.5, 1.6, 1.7, 1.8, 1.9]


def random_walk(seed: int, n: int = 120) -> list[float]:
    """A loss that mostly creeps down with noise and flat stretches: many plateaus, few big gains."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(-0.002, 0.01, n) * (rng.random(n) < 0.6)
    return list(3.0 + np.cumsum(steps))


def torch_multipliers(losses, factor, patience, threshold, cooldown, min_lr) -> list[float]:
    """The independent reference: torch's ReduceLROnPlateau at lr 1 (so its LR is the multiplier)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=factor, patience=patience, threshold=threshold, threshold_mode="rel",
        cooldown=cooldown, min_lr=min_lr)
    out = []
    for loss in losses:
        reference.step(loss)
        out.append(optimizer.param_groups[0]["lr"])
    return out


def ours(schedule: StepOnPlateau, losses, every: int = 10, start: int = 0) -> list[float]:
    """Observe the losses every `every` updates; the multiplier of the update after each observation."""
    out = []
    for i, loss in enumerate(losses):
        step = (start + i + 1) * every
        schedule.observe(step, loss)
        out.append(schedule(step))
    return out


@pytest.mark.parametrize("factor, patience, threshold, cooldown, min_mult", [
    (0.1, 0, 1e-4, 0, 0.0), (0.1, 1, 1e-4, 0, 0.0), (0.5, 2, 1e-4, 0, 0.0), (0.1, 1, 1e-4, 2, 0.0),
    (0.5, 0, 1e-4, 1, 0.1), (0.3, 3, 0.0, 0, 0.0), (0.5, 1, 0.05, 1, 0.0),
])
@pytest.mark.parametrize("losses", [SCRIPT, random_walk(0), random_walk(1)], ids=["script", "walk0", "walk1"])
def test_multipliers_match_torch_reduce_lr_on_plateau(losses, factor, patience, threshold, cooldown, min_mult):
    expected = torch_multipliers(losses, factor, patience, threshold, cooldown, min_mult)
    schedule = StepOnPlateau(total_steps=10_000, factor=factor, patience=patience, threshold=threshold,
                             cooldown=cooldown, min_multiplier=min_mult)
    assert ours(schedule, losses) == expected    # the same float operations, so bit-identical
    assert len(set(expected)) >= 2               # the sequence does cut (the comparison has teeth)


def test_levels_by_step_and_warmup():
    """Hand-checked: patience 1 cuts at the 2nd evaluation in a row without gain; each cut acts from the
    update right after its evaluation; the warmup ramp multiplies the level; earlier steps keep theirs."""
    s = StepOnPlateau(total_steps=100, warmup_steps=10, warmup_start=0.2, factor=0.5, patience=1)
    assert [s(k) for k in (0, 5, 10, 99)] == pytest.approx([0.2, 0.6, 1.0, 1.0], abs=1e-15)
    for step, loss in [(20, 3.0), (30, 3.0), (40, 3.0), (50, 2.0), (60, NAN), (70, 2.0)]:
        s.observe(step, loss)
    assert s.cuts == [[40, 0.5], [70, 0.25]]
    assert [s(k) for k in (5, 39, 40, 69, 70, 500)] == pytest.approx([0.6, 1.0, 0.5, 0.5, 0.25, 0.25], abs=1e-15)


def test_replay_gives_what_the_observing_object_answers():
    losses = random_walk(5, 40)
    live = StepOnPlateau(total_steps=500, warmup_steps=7, warmup_start=0.1, factor=0.5, patience=1)
    observations = [(10 * (i + 1), loss) for i, loss in enumerate(losses)]
    replayed = live.replay(observations)              # before: the live object stays fresh
    assert live.state_dict() == StepOnPlateau(total_steps=500).state_dict()
    for step, loss in observations:
        live.observe(step, loss)
    np.testing.assert_array_equal(replayed, [live(s) for s in range(500)])
    assert len(live.cuts) >= 2 and live.replay(observations, steps=20).shape == (20,)


def test_arrays_and_multipliers_point_to_the_logged_lrs():
    s = StepOnPlateau(total_steps=50)
    assert isinstance(s, Schedule) and s.reactive
    for call in (lambda: s(np.arange(50)), s.multipliers, lambda: s(np.array([3]))):
        with pytest.raises(ValueError, match=r"reactive.*metrics.jsonl \(key `lr`"):
            call()
    s.observe(10, 1.0)
    with pytest.raises(ValueError, match="metrics.jsonl"):
        s(np.arange(5))


def test_state_dict_round_trip_continues_identically(tmp_path):
    losses = random_walk(3)
    full = StepOnPlateau(total_steps=10_000, factor=0.5, patience=1, cooldown=1)
    expected = ours(full, losses)
    first = StepOnPlateau(total_steps=10_000, factor=0.5, patience=1, cooldown=1)
    ours(first, losses[:57])
    state = first.state_dict()
    # plain Python values: a checkpoint loads them with torch.load(weights_only=True), JSON writes them
    torch.save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert json.loads(json.dumps(state)) == state and loaded == state
    resumed = StepOnPlateau(total_steps=10_000, factor=0.5, patience=1, cooldown=1)
    resumed.load_state_dict(loaded)
    assert ours(resumed, losses[57:], start=57) == expected[57:]
    assert [resumed(k) for k in range(0, 1200, 7)] == [full(k) for k in range(0, 1200, 7)]
    assert any(cut[0] <= 570 for cut in state["cuts"]) and len(full.cuts) > len(state["cuts"])
    fresh = StepOnPlateau(total_steps=10_000, factor=0.5, patience=1, cooldown=1)
    assert ours(fresh, losses[57:], start=57) != expected[57:]   # without the state the run differs


@pytest.mark.parametrize("kwargs, message", [
    ({"factor": 1.0}, r"factor=1.0 is outside \(0, 1\)"),
    ({"factor": 0}, r"factor=0 is outside \(0, 1\)"),
    ({"patience": -1}, r"patience=-1 is not an integer >= 0"),
    ({"patience": 1.5}, r"patience=1.5 is not an integer"),
    ({"threshold": 1.0}, r"threshold=1.0 is outside \[0, 1\)"),
    ({"threshold": -1e-4}, r"threshold=-0.0001 is outside"),
    ({"cooldown": -2}, r"cooldown=-2 is not an integer >= 0"),
    ({"min_multiplier": 2.0}, r"min_multiplier=2.0 is outside \[0, 1\]"),
    ({"warmup_steps": 200}, r"warmup_steps=200 exceeds total_steps=100"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_bad_parameters_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StepOnPlateau(total_steps=100, **kwargs)


def test_bad_observations_and_state():
    s = StepOnPlateau(total_steps=100)
    s.observe(20, 2.0)
    with pytest.raises(ValueError, match=r"observe\(step=10\) comes after an observation at step 20"):
        s.observe(10, 1.0)
    with pytest.raises(ValueError, match=r"val_loss='x' is not a number"):
        s.observe(30, "x")
    with pytest.raises(ValueError, match=r"step=-1 is not an integer >= 0"):
        s(-1)
    with pytest.raises(ValueError, match=r"exactly the keys .*got \['best'\]"):
        s.load_state_dict({"best": 1.0})


def test_config_instantiates_through_compose():
    cfg = compose(["schedule=plateau", "trainer.max_steps=300", "trainer.warmup_steps=30",
                   "schedule.patience=4"])
    s = instantiate(cfg.schedule)
    assert type(s) is StepOnPlateau and (s.total_steps, s.warmup_steps, s.patience) == (300, 30, 4)
    assert (s.factor, s.threshold, s.cooldown, s.min_multiplier) == (0.1, 1e-4, 0, 0.0)
    assert s(15) == 0.5 and s(299) == 1.0


# ---------------------------------------------------------------- the trainer: observe, checkpoint, resume
# Evaluations every 3 updates (steps 3, 6, ..., 18); threshold 0.5 asks each one to halve the best loss,
# which a 20-step run never does, so every evaluation after the first is a plateau and patience 1 cuts at
# steps 9 and 15; the step-10 checkpoint sits between the two cuts. One small validation batch: the
# evaluations, not the updates, are most of a tiny run's time.
PLATEAU_RUN = ["schedule=plateau", "schedule.patience=1", "schedule.threshold=0.5", "trainer.warmup_steps=2",
               "trainer.eval_interval=3", "trainer.eval_batches=1", "trainer.eval_batch_size=32"]


@pytest.fixture(scope="module")
def plateau_run(tmp_path_factory):
    from tests.conftest import TINY
    from train import train

    cfg = compose(TINY + PLATEAU_RUN)
    run_dir = tmp_path_factory.mktemp("plateau")
    train(cfg, run_dir)
    return cfg, run_dir


@pytest.mark.slow
def test_trainer_cuts_the_logged_lr_after_a_plateau(plateau_run):
    """The logged LRs against torch's ReduceLROnPlateau fed the run's own periodic validation losses."""
    from training.rundir import read_metrics

    cfg, run_dir = plateau_run
    events = read_metrics(run_dir)
    observed = [(e["step"], e["val/loss"]) for e in events if "val/loss" in e and 0 < e["step"] < 20]
    assert [s for s, _ in observed] == [3, 6, 9, 12, 15, 18]
    after = dict(zip([s for s, _ in observed], torch_multipliers([v for _, v in observed], 0.1, 1, 0.5, 0, 0.0)))
    peak = cfg.optimizer.lr
    for e in (e for e in events if "lr" in e):
        update = e["step"] - 1                       # the event at step k carries update k-1's LR
        level = next((after[s] for s in sorted(after, reverse=True) if s <= update), 1.0)
        ramp = update / 2 if update < 2 else 1.0     # warmup over 2 updates from 0
        assert e["lr"] == pytest.approx(peak * ramp * level, rel=1e-12), e
    logged = {e["step"]: e["lr"] for e in events if "lr" in e}
    replayed = instantiate(cfg.schedule).replay(observed)   # the analysis' way: from the logged val losses
    np.testing.assert_allclose(peak * replayed, [logged[k] for k in range(1, 21)], rtol=1e-12)
    assert logged[9] == peak and logged[10] == pytest.approx(0.1 * peak) and logged[16] == pytest.approx(0.01 * peak)


@pytest.mark.slow
def test_resume_continues_with_the_checkpointed_plateau_state(plateau_run, tmp_path, monkeypatch):
    """Crash inside step 13, resume from the step-10 checkpoint: the level 0.1 and the evaluation count
    come back from the checkpoint, so the cut at step 15 happens as in the uninterrupted run (a fresh
    schedule would train updates 10-14 at the peak and cut only at step 18)."""
    from data.loader import BatchLoader
    from tests.conftest import TINY
    from train import train
    from training import checkpoint
    from training.rundir import read_metrics

    cfg, ref_dir = plateau_run
    state = checkpoint.load(ref_dir / "checkpoints" / "step_0000010")
    assert state["schedule"]["cuts"] == [[9, pytest.approx(0.1)]] and state["schedule"]["last_step"] == 9
    original, calls = BatchLoader.next_batch, {"n": 0}

    def crashing(self):
        calls["n"] += 1
        if calls["n"] > 2 * 12:  # 2 micro-batches per update: crash inside update 13, after the step-10 save
            raise KeyboardInterrupt("simulated crash")
        return original(self)

    monkeypatch.setattr(BatchLoader, "next_batch", crashing)
    with pytest.raises(KeyboardInterrupt):
        train(compose(TINY + PLATEAU_RUN), tmp_path)
    monkeypatch.setattr(BatchLoader, "next_batch", original)
    assert checkpoint.latest_checkpoint(tmp_path).name == "step_0000010"
    train(compose(TINY + PLATEAU_RUN), tmp_path)   # trainer.resume=auto

    def lrs_and_losses(run_dir):
        return [(e["step"], e.get("lr"), e.get("val/loss")) for e in read_metrics(run_dir)
                if "lr" in e or "val/loss" in e]

    assert lrs_and_losses(tmp_path) == lrs_and_losses(ref_dir)
