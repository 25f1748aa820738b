"""Checkpoints that survive hostile files and real faults (training/checkpoint.py): safe loading of a
crafted state.pt, checksums against a real bit flip, a real full disk (RLIMIT_FSIZE in a subprocess),
stale temporary directories, and pruning limited to the run that wrote the checkpoints.

    python -m pytest -q tests/test_checkpoint_safety.py
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import train as train_module
from tests.conftest import ROOT
from training import checkpoint, checkpoint_tool

CFG = OmegaConf.create({"seed": 1})
PATTERN = torch.full((256,), 1.2345)  # a tensor whose bytes are easy to find inside state.pt


def fake_state(step: int, **extra) -> dict:
    """A state with every key `load` requires, the model's weights being PATTERN."""
    return {"model": {"w": PATTERN.clone()}, "optimizer": {"state": {}, "param_groups": []}, "step": step,
            "tokens": 32 * step, "loader": {"epoch": 0, "position": step}, "rng": checkpoint.rng_state(),
            **extra}


def names(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class WritesMarker:
    """Unpickling this runs open(marker, "w"): the code a crafted checkpoint would smuggle in."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_rng_state_is_plain_and_restores_every_generator_exactly(tmp_path):
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    random.random(), np.random.randn(), torch.rand(1)  # also a cached gaussian in numpy's state
    torch.save(checkpoint.rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist())
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist()) == expected


def test_save_refuses_a_value_that_a_safe_load_could_not_read(tmp_path):
    with pytest.raises(TypeError, match=r"state\['loader'\]\['perm'\] is a ndarray"):
        checkpoint.save(tmp_path, fake_state(5, loader={"perm": np.arange(3)}), CFG)
    state = fake_state(5, tokens=np.int64(160))  # numpy scalars are stored as Python numbers
    assert checkpoint.load(checkpoint.save(tmp_path, state, CFG))["tokens"] == 160


def test_crafted_state_pt_is_refused_when_a_run_is_simply_rerun(tmp_path, tiny_cfg):
    marker = tmp_path / "code-ran"
    bad = checkpoint.checkpoint_dir(tmp_path / "run", 10)
    bad.mkdir(parents=True)
    torch.save(fake_state(10, extra=WritesMarker(marker)), bad / "state.pt")
    torch.load(bad / "state.pt", weights_only=False)  # what an unsafe load does: the code runs
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError, match=r"step_0000010/state.pt holds Python objects.*io.open.*upgrade --trust"):
        train_module.train(tiny_cfg(), tmp_path / "run")  # resume=auto picks the crafted checkpoint
    assert not marker.exists()


def test_bit_flip_in_a_tensor_falls_back_to_the_previous_checkpoint(tmp_path, tiny_cfg, caplog):
    good = checkpoint.save(tmp_path, fake_state(5), CFG)
    flipped = checkpoint.save(tmp_path, fake_state(10), CFG)
    raw = bytearray((flipped / "state.pt").read_bytes())
    at = raw.find(PATTERN.numpy().tobytes())
    assert at > 0
    raw[at + 4 * 100 + 2] ^= 0x04  # one bit of the mantissa of element 100
    (flipped / "state.pt").write_bytes(raw)
    silent = torch.load(flipped / "state.pt", weights_only=True)  # torch alone does not notice
    assert torch.equal(silent["model"]["w"][:100], PATTERN[:100]) and silent["model"]["w"][100] != PATTERN[100]

    with caplog.at_level(logging.WARNING, logger="training.checkpoint"):
        assert checkpoint.latest_checkpoint(tmp_path) == good
    assert "Skipping checkpoint" in caplog.text and "step_0000010" in caplog.text
    with pytest.raises(ValueError, match=r"step_0000010/state.pt does not match its checksum"):
        checkpoint.load(flipped)
    with pytest.raises(ValueError, match=r"step_0000010/state.pt does not match its checksum"):
        train_module.train(tiny_cfg(f"trainer.init_from={flipped}"), tmp_path / "branch")
    assert torch.equal(checkpoint.load(good)["model"]["w"], PATTERN)
    (good / "config.yaml").write_text("seed: 2\n")  # the config is checksummed too
    assert "config.yaml does not match" in checkpoint.verify(good)


FULL_DISK = """
import json, resource, signal, sys, torch
from omegaconf import OmegaConf
from training import checkpoint
run_dir, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit write() fails (EFBIG) instead of killing us
state = {"model": {"w": torch.zeros(16)}, "step": 5}
checkpoint.save(run_dir, state, OmegaConf.create({}), keep=1)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    checkpoint.save(run_dir, {"model": {"w": torch.zeros(4 * limit)}, "step": 10}, OmegaConf.create({}), keep=1)
except RuntimeError as err:
    print(json.dumps({"message": str(err), "cause": type(err.__cause__).__name__}))
"""


def test_real_full_disk_cleans_up_and_keeps_the_previous_checkpoint(tmp_path):
    limit = 64 * 1024  # bytes per file: the 5-step checkpoint fits, the 10-step one (1 MiB) does not
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path), str(limit)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cause"] == "RuntimeError"  # torch's error for a failed write, not an OSError
    assert "step_0000010" in result["message"] and "step_0000005 is intact" in result["message"]
    assert names(tmp_path) == ["step_0000005"]  # no partial temporary directory left behind
    assert checkpoint.verify(tmp_path / "checkpoints" / "step_0000005") is None


def test_opening_a_run_dir_removes_what_killed_saves_left(tmp_path):
    root = tmp_path / "checkpoints"
    host = checkpoint._HOST
    dead, live = dead_pid(), os.getppid()
    leftovers = {f".tmp-step_0000010-{host}-{dead}": False, f".tmp-step_0000020-{dead}": False,
                 f".tmp-step_0000030-{host}-{live}": True, f".tmp-step_0000040-otherhost-{dead}": True}
    for name in leftovers:
        (root / name).mkdir(parents=True)
        (root / name / "state.pt").write_bytes(b"partial")
    kept = checkpoint.save(tmp_path, fake_state(50), CFG)
    os.replace(kept, root / f".old-step_0000050-{host}-{dead}")  # killed between a re-save's renames
    checkpoint.open_run_dir(tmp_path)
    survivors = {name for name, keep in leftovers.items() if keep}
    assert set(names(tmp_path)) == survivors | {"step_0000050"}
    assert checkpoint.load(kept)["step"] == 50


def test_keep_checkpoints_is_validated_before_anything_is_written(tmp_path):
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match=f"trainer.keep_checkpoints={bad} is invalid.*0 / null"):
            checkpoint.save(tmp_path, fake_state(5), CFG, keep=bad)
    assert not (tmp_path / "checkpoints").exists()
    for step in (5, 10, 15):
        checkpoint.save(tmp_path, fake_state(step), CFG, keep=2)
    assert names(tmp_path) == ["step_0000010", "step_0000015"]


def test_pruning_deletes_only_checkpoints_of_the_run_that_writes_and_a_rerun_continues_it(tmp_path):
    old = checkpoint.open_run_dir(tmp_path)  # a finished run
    for step in (100, 200):
        checkpoint.save(tmp_path, fake_state(step), CFG, keep=0)
    new = checkpoint.open_run_dir(tmp_path)  # trainer.resume=never into the same directory
    assert new != old
    for step in (10, 20, 30):
        checkpoint.save(tmp_path, fake_state(step), CFG, keep=1)
    assert names(tmp_path) == ["step_0000030", "step_0000100", "step_0000200"]
    assert checkpoint.latest_checkpoint(tmp_path).name == "step_0000030"  # a rerun continues the new run
    # a later process resuming the new run (its own checkpoint) continues its id and its pruning
    checkpoint.open_run_dir(tmp_path)
    checkpoint.load(tmp_path / "checkpoints" / "step_0000030")
    checkpoint.save(tmp_path, fake_state(40), CFG, keep=1)
    assert names(tmp_path) == ["step_0000040", "step_0000100", "step_0000200"]
    assert checkpoint.open_run_dir(tmp_path, resumed_from=tmp_path / "checkpoints" / "step_0000040") == new


def test_a_checkpoint_of_the_older_format_is_refused_then_upgraded(tmp_path):
    ckpt = checkpoint.checkpoint_dir(tmp_path, 10)
    ckpt.mkdir(parents=True)
    np.random.seed(7)
    legacy_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = np.random.rand(3)
    torch.save({**fake_state(10), "rng": legacy_rng}, ckpt / "state.pt")  # numpy arrays and tuples inside
    (ckpt / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(ValueError, match="upgrade --trust"):
        checkpoint.load(ckpt)
    with pytest.raises(SystemExit):
        checkpoint_tool.main(["upgrade", str(ckpt)])  # refuses to unpickle without --trust
    assert checkpoint_tool.main(["upgrade", "--trust", str(ckpt)]) == 0
    assert checkpoint_tool.main(["verify", str(ckpt)]) == 0
    checkpoint.set_rng_state(checkpoint.load(ckpt)["rng"])
    assert np.array_equal(np.random.rand(3), expected)
