"""End-to-end tests of the trainer on tiny CPU runs of the real configs: run directory contents,
metrics against independent computations, resume and branching, sweeps, and bad input."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import train as train_module
from analysis.runs import load as load_run
from data.loader import BatchLoader
from tests.conftest import GOLDEN, REFERENCE, ROOT, TINY, compose_config
from training import checkpoint
from training.rundir import read_metrics
from training.optim import param_groups

pytestmark = pytest.mark.slow
COMPARED = ("step", "tokens", "train/loss", "val/loss", "final/val_loss", "lr", "grad_norm")


def comparable(events):
    return [{k: e[k] for k in COMPARED if k in e} for e in events]


def run(cfg, run_dir):
    return train_module.train(cfg, run_dir)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted 20-step run shared by several tests (conftest.REFERENCE)."""
    run_dir = tmp_path_factory.mktemp("reference")
    cfg = compose_config(REFERENCE)
    summary = run(cfg, run_dir)
    return cfg, run_dir, summary


def test_run_directory_contents(reference_run):
    cfg, run_dir, summary = reference_run
    assert (run_dir / "config.yaml").is_file() and (run_dir / "loss.png").stat().st_size > 1000
    assert [p.name for p in checkpoint.list_checkpoints(run_dir)] == ["step_0000010", "step_0000020"]
    events = read_metrics(run_dir)
    train_events = [e for e in events if "train/loss" in e]
    assert [e["step"] for e in train_events] == list(range(1, 21))
    for e in train_events:
        assert e["tokens"] == e["step"] * 8 * 32
        assert set(e) >= {"lr", "grad_norm", "tok_per_s", "mfu"} and e["tok_per_s"] > 0
    assert [e["step"] for e in events if "val/loss" in e] == [0, 5, 10, 15, 20]
    assert events[-1]["final/val_loss"] == pytest.approx(summary["final_val_loss"])


def test_logged_lr_is_peak_times_schedule(reference_run):
    cfg, run_dir, _ = reference_run
    schedule = instantiate(cfg.schedule)
    logged = {e["step"]: e["lr"] for e in read_metrics(run_dir) if "lr" in e}
    steps = np.array(sorted(logged))
    expected = cfg.optimizer.lr * schedule(steps - 1)  # the event at step k carries update k-1's LR
    np.testing.assert_array_equal(np.array([logged[s] for s in steps]), expected)


def test_first_step_loss_and_grad_norm_match_plain_torch(reference_run):
    """Step 1's logged loss and pre-clip grad norm, recomputed independently: same init seed, the
    loader's first two micro-batches, plain autograd, and the norm over all parameter gradients."""
    cfg, run_dir, _ = reference_run
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model)
    data = instantiate(cfg.data)
    loader = BatchLoader(data.train, cfg.trainer.micro_batch_size, cfg.trainer.seq_len, seed=cfg.seed)
    losses = []
    for _ in range(2):
        x, y = loader.next_batch()
        loss = model(x, y)
        (loss / 2).backward()
        losses.append(loss.item())
    grad_norm = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in model.parameters()))
    first = next(e for e in read_metrics(run_dir) if e.get("step") == 1 and "train/loss" in e)
    assert first["train/loss"] == pytest.approx(sum(losses) / 2, rel=1e-5)
    assert first["grad_norm"] == pytest.approx(grad_norm, rel=1e-4)
    assert first["grad_norm"] > cfg.trainer.grad_clip  # logged before clipping


def test_resume_after_crash_gives_identical_metrics(reference_run, tmp_path, monkeypatch):
    cfg, ref_dir, _ = reference_run
    calls = {"n": 0}
    original = BatchLoader.next_batch

    def crashing(self):
        calls["n"] += 1
        if calls["n"] > 2 * 12:  # 2 micro-batches per step: crash inside step 13 (after the step-10 save)
            raise KeyboardInterrupt("simulated crash")
        return original(self)

    monkeypatch.setattr(BatchLoader, "next_batch", crashing)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path)
    monkeypatch.setattr(BatchLoader, "next_batch", original)
    assert checkpoint.latest_checkpoint(tmp_path).name == "step_0000010"
    with open(tmp_path / "metrics.jsonl", "a") as f:  # as if the crash cut a write short
        f.write('{"step": 13, "tokens": 33')
    with pytest.warns(UserWarning, match="not JSON"):
        run(cfg, tmp_path)  # trainer.resume=auto picks up step 10
    assert comparable(read_metrics(tmp_path)) == comparable(read_metrics(ref_dir))


def test_branch_from_checkpoint_follows_new_schedule(reference_run, tmp_path):
    """Continued training: B starts from A's step-10 state under another schedule and horizon."""
    _, parent_dir, _ = reference_run
    parent_ckpt = parent_dir / "checkpoints" / "step_0000010"
    cfg = compose_config(TINY + [f"trainer.init_from={parent_ckpt}", "schedule=constant",
                                 "trainer.max_steps=16", "optimizer.lr=5e-4"])
    run(cfg, tmp_path)
    lineage = json.loads((tmp_path / "lineage.json").read_text())
    assert lineage["branch_step"] == 10 and lineage["parent_run"] == str(parent_dir.resolve())
    events = read_metrics(tmp_path)
    parent_val10 = next(e["val/loss"] for e in read_metrics(parent_dir) if e["step"] == 10 and "val/loss" in e)
    first = {k: v for k, v in events[0].items() if k != "time"}  # the wall-clock stamp of the event
    assert first == {"step": 10, "tokens": 10 * 8 * 32, "val/loss": pytest.approx(parent_val10, rel=1e-6)}
    train_events = [e for e in events if "train/loss" in e]
    assert [e["step"] for e in train_events] == list(range(11, 17))
    schedule = instantiate(cfg.schedule)
    assert [e["lr"] for e in train_events] == [5e-4 * schedule(s - 1) for s in range(11, 17)]
    # The analysis sees one curve: the parent's rows up to the branch step, then the child's.
    stitched = load_run(tmp_path).metrics
    lrs = stitched.dropna(subset=["lr"]).set_index("step")["lr"]
    parent_lrs = {e["step"]: e["lr"] for e in read_metrics(parent_dir) if "lr" in e}
    assert list(lrs.index) == list(range(1, 17))
    assert [lrs[s] for s in range(1, 11)] == [parent_lrs[s] for s in range(1, 11)]
    assert [lrs[s] for s in range(11, 17)] == [e["lr"] for e in train_events]


def test_weight_decay_only_on_linear_weights():
    torch.manual_seed(0)
    model = instantiate(compose_config(TINY).model)
    decay, no_decay = param_groups(model, 0.1)
    linear = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    embedding = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    assert {id(p) for p in decay["params"]} == {id(w) for w in linear} - {id(w) for w in embedding}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in no_decay["params"] if id(p) not in {id(w) for w in embedding})
    n_total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == n_total


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=-0.001", "optimizer.lr=-0.001"),
    ("schedule.cooldown_fraction=1.5", "cooldown_fraction"),
    ("model.max_seq_len=16", "trainer.seq_len=32 is above the model's max_seq_len=16"),
    ("trainer.micro_batch_size=3", "micro_batch_size=3"),
    ("trainer.device=tpu", "trainer.device=tpu"),
    ("model.vocab_size=100", "model.vocab_size=100 is below the data's vocab_size=4096"),
    ("trainer.keep_checkpoints=-1", "trainer.keep_checkpoints=-1 is invalid"),
])
def test_bad_values_fail_before_the_model_is_built(override, message, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the bad value was reported")

    monkeypatch.setattr("models.llama.Llama.__init__", no_model)
    cfg = compose_config(TINY + [override])
    with pytest.raises(ValueError, match=re.escape(message)):
        run(cfg, tmp_path)


def test_unknown_config_option_names_the_choices():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="schedule/cosinus"):
        compose_config(["schedule=cosinus"])


def test_missing_data_directory_names_the_prepare_command(tmp_path, monkeypatch):
    monkeypatch.setattr("models.llama.Llama.__init__", lambda *a, **k: pytest.fail("model built"))
    cfg = compose_config(TINY + ["data=slimpajama_6b", "model.vocab_size=50304", f"paths.data_dir={tmp_path}"])
    with pytest.raises((ValueError, FileNotFoundError), match="python -m data.prepare data=slimpajama_6b"):
        run(cfg, tmp_path / "run")


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, monkeypatch):
    cfg = compose_config(TINY)
    original = BatchLoader.next_batch
    calls = {"n": 0}

    def counting(self):  # counts training micro-batches (evaluation does not use the loader)
        calls["n"] += 1
        return original(self)

    from models.llama import Llama
    forward = Llama.forward

    def nan_after_step_11(self, tokens, targets=None):
        out = forward(self, tokens, targets)
        return out * float("nan") if calls["n"] > 2 * 11 and targets is not None else out

    monkeypatch.setattr(BatchLoader, "next_batch", counting)
    monkeypatch.setattr(Llama, "forward", nan_after_step_11)
    with pytest.raises(FloatingPointError, match="step 12.*step_0000010"):
        run(cfg, tmp_path)
    state = checkpoint.load(checkpoint.latest_checkpoint(tmp_path))
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_corrupt_checkpoint_is_reported(tmp_path):
    bad = tmp_path / "checkpoints" / "step_0000010"
    bad.mkdir(parents=True)
    (bad / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        checkpoint.load(bad)
    with pytest.raises(FileNotFoundError, match="trainer.init_from"):
        checkpoint.load(tmp_path / "nowhere")


def test_full_disk_keeps_previous_checkpoint(reference_run, tmp_path, monkeypatch):
    cfg, _, _ = reference_run
    good = checkpoint.save(tmp_path, {"step": 5, "x": torch.ones(3)}, cfg)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(RuntimeError, match="No space left.*step_0000005 is intact"):
        checkpoint.save(tmp_path, {"step": 10}, cfg, keep=1)
    assert checkpoint.list_checkpoints(tmp_path) == [good]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000005"]


def test_multirun_runs_one_directory_per_job_and_lists_the_failed_ones(tmp_path):
    """A sweep with a bad value: the good jobs still run (one numbered dir each, with their own
    config), the command fails, and the end of its output names each failed job with its overrides,
    the first line of its error and its run dir (training/callbacks.py), also in jobs.jsonl.
    The jobs are 20-step runs with the default warmup (10% of the horizon: 2 steps); before it scaled,
    its fixed 40 steps made every run under 50 steps fail."""
    overrides = [o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.checkpoint_interval",
                                                      "trainer.warmup_steps"))]
    cmd = [sys.executable, "train.py", "-m", "optimizer.lr=1e-3,-1", "schedule=constant,wsd",
           "trainer.max_steps=20", "trainer.checkpoint_interval=0", *overrides, f"hydra.sweep.dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and (p / "metrics.jsonl").exists())
    assert [p.name for p in jobs] == ["0", "1"]  # lr=1e-3 with both schedules; the lr=-1 jobs build nothing
    seen = set()
    for job in jobs:
        recorded = OmegaConf.load(job / "config.yaml")
        seen.add((recorded.optimizer.lr, recorded.schedule._target_))
        assert read_metrics(job)[-1]["step"] == 20 and recorded.trainer.warmup_steps == 2
        lrs = [e["lr"] for e in read_metrics(job) if "lr" in e]
        assert lrs[:3] == [0.0, 1e-3 / 2, 1e-3]   # linear warmup over 2 steps, then the peak
    assert seen == {(1e-3, "schedules.Constant"), (1e-3, "schedules.WSD")}
    summary = done.stderr[done.stderr.index("2 of 4 jobs failed"):]
    error = "UserError: optimizer.lr=-1.0 is the peak learning rate and must be > 0"
    for num, schedule in ((2, "constant"), (3, "wsd")):
        assert f"job {num}  optimizer.lr=-1 schedule={schedule}  {error}" in summary
        assert f"run dir: {tmp_path / str(num)}" in summary
    records = [json.loads(line) for line in (tmp_path / "jobs.jsonl").read_text().splitlines()]
    assert [(r["num"], r["status"]) for r in sorted(records, key=lambda r: r["num"])] == [
        (0, "completed"), (1, "completed"), (2, "failed"), (3, "failed")]


def test_losses_match_the_golden_file(reference_run):
    """Catches numerical drift of the seeded tiny run (model, data, loop). Regenerate deliberately
    with `python scripts/update_golden.py` after an intended change, and say why in the commit."""
    _, run_dir, _ = reference_run
    golden = json.loads(GOLDEN.read_text())
    if (golden["torch"], golden["python"]) != (torch.__version__, sys.version.split()[0]):
        pytest.skip(f"golden file made with torch {golden['torch']} / Python {golden['python']}; "
                    "the embedded corpus and CPU kernels differ across versions")
    events = comparable(read_metrics(run_dir))
    assert [e["step"] for e in events] == [e["step"] for e in golden["events"]]
    for got, want in zip(events, golden["events"]):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (got["step"], key)


def test_truncated_shard_fails_before_the_model_is_built(tmp_path, monkeypatch):
    cfg = compose_config(TINY)
    built = Path(instantiate(cfg.data).tokenizer_path).parent  # the cached embedded corpus
    copy = tmp_path / "cache" / "embedded" / built.name
    shutil.copytree(built, copy)
    with open(copy / "val.bin", "r+b") as f:
        f.truncate(1000)
    monkeypatch.setattr("models.llama.Llama.__init__", lambda *a, **k: pytest.fail("model built"))
    cfg = compose_config(TINY + [f"paths.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ValueError, match=r"val\.bin.*(truncated|size)"):
        run(cfg, tmp_path / "run")


def test_wandb_offline_mirrors_the_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_config(TINY + ["logger=wandb", "trainer.max_steps=3", "trainer.warmup_steps=1", "trainer.checkpoint_interval=0"])
    run(cfg, tmp_path)
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))
    assert read_metrics(tmp_path)[-1]["step"] == 3
