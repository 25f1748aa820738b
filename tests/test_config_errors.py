"""Errors at the door: a mistyped or misspelled override fails before anything is built, with one
short message naming the key and the expected type or the closest existing key (training/schema.py,
train.py's entry). Run: python -m pytest -q tests/test_config_errors.py

The command-line tests run `python train.py` in a subprocess (about 2 s each: they must fail before
any data or model is touched, and a hydra.run.dir that is never created proves it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import ROOT, TINY, compose_config
from training.schema import ConfigError, TrainerSettings, check_command_line, validate
from training.setup import check_config


def run_train(*overrides: str, run_dir, full_error: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run([sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("override, expected", [
    ("trainer.max_steps=abc", ["trainer.max_steps=abc", "expected an integer", "string 'abc'"]),
    ("optimizer.lr=fast", ["optimizer.lr=fast", "expected a number", "string 'fast'"]),
    ("optimizer.lr=true", ["optimizer.lr=true", "expected a number", "boolean"]),  # not a run at lr 1.0
    ("optimizer.lrr=1e-3", ["optimizer.lrr", "did you mean optimizer.lr?"]),
    ("trainer.max_stpes=5", ["trainer.max_stpes", "did you mean trainer.max_steps?"]),
    ("schedul=cosine", ["schedul", "did you mean schedule?"]),
])
def test_bad_override_fails_at_once_with_one_short_message(override, expected, tmp_path):
    result = run_train(override, run_dir=tmp_path / "run")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 3, result.stderr  # the message and where the traceback is; no traceback
    assert all(part in result.stderr for part in expected), result.stderr
    assert "Traceback" not in result.stderr and "+optimizer" not in result.stderr  # not Hydra's "add it with +"
    assert not (tmp_path / "run").exists()  # failed before Hydra made the run directory


def test_full_error_env_gives_the_traceback(tmp_path):
    result = run_train("optimizer.lrr=1e-3", run_dir=tmp_path / "run", full_error=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
    assert "did you mean optimizer.lr?" in result.stderr


def test_a_value_error_inside_the_job_is_one_message_too(tmp_path):
    """A check that needs the composed job (trainer.device has no choice type in the schema)."""
    result = run_train("trainer.device=tpu", run_dir=tmp_path / "run")
    assert result.returncode == 1
    assert "trainer.device=tpu: use auto, cpu or cuda." in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 5, result.stderr


def test_data_prepare_help_prints_usage():
    result = subprocess.run([sys.executable, "-m", "data.prepare", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m data.prepare")
    configs = sorted(p.stem for p in (ROOT / "configs" / "data").glob("*.yaml"))
    assert f"data configs: {', '.join(configs)}" in result.stdout


def test_schema_lists_exactly_the_trainer_keys_of_the_yaml():
    """The YAML is the reference: a key added there without the schema (or the reverse) fails here."""
    keys = yaml.safe_load((ROOT / "configs" / "trainer" / "default.yaml").read_text()).keys()
    assert {f.name for f in fields(TrainerSettings)} == set(keys)


def test_good_overrides_compose_and_are_converted():
    cfg = check_command_line(["schedule=cosine", "optimizer.lr=3e-3", "trainer.max_steps=20",
                              "trainer.grad_clip=null", "trainer.progress=false"])
    assert cfg.schedule._target_ == "schedules.Cosine" and cfg.optimizer.lr == 3e-3
    assert cfg.trainer.warmup_steps == 2 and cfg.trainer.grad_clip is None  # the interpolation still resolves
    quoted = compose_config(TINY + ["trainer.max_steps='12'", "optimizer.lr='2e-3'"])  # strings in the config
    assert isinstance(quoted.trainer.max_steps, str)
    check_config(quoted)  # converts what the schema accepts, then checks ranges on real numbers
    assert type(quoted.trainer.max_steps) is int and quoted.trainer.max_steps == 12
    assert type(quoted.optimizer.lr) is float and quoted.optimizer.lr == 2e-3
    assert OmegaConf.is_interpolation(quoted.trainer, "eval_batch_size") is False  # TINY sets it; untouched


def test_multirun_checks_the_first_job_and_leaves_other_flags_to_hydra():
    assert check_command_line(["-m", "optimizer.lr=1e-3,3e-3", "schedule=wsd,cosine"]).schedule._target_ \
        == "schedules.WSD"
    with pytest.raises(ConfigError, match="optimizer.lr=fast: expected a number"):
        check_command_line(["-m", "optimizer.lr=fast,1e-3"])
    for argv in (["--help"], ["--cfg", "job", "optimizer.lrr=1"], ["optimizer.lr=1e-3,3e-3"]):
        assert check_command_line(argv) is None  # Hydra answers these itself


@pytest.mark.parametrize("overrides, message", [
    (["optimizer.foo=1"], "optimizer has: _target_, _partial_, lr, betas, eps, weight_decay); "
                          "a new key needs a + prefix: +optimizer.foo=..."),  # no match through the prefix
    (["optimiser.lr=1"], "did you mean optimizer.lr?"),
    (["experimnt=transfer_demo"], "did you mean experiment?"),  # a group that is off by default
    (["trainer.max_stpes=5", "optimizer.lrr=1"], "trainer.max_stpes is not a setting of this config: did you mean "
                                                  "trainer.max_steps?\noptimizer.lrr"),  # both at once
    (["~trainer.warmup_step"], "did you mean trainer.warmup_steps?"),
    (["+trainer.max_stpes=5"], "trainer.max_stpes is not a trainer setting: did you mean trainer.max_steps?"),
    (["optimizer.betas=[0.9,x]"], "optimizer.betas[1]=x: expected a number, got the string 'x'"),
    (["trainer.grad_clip=big"], "trainer.grad_clip=big: expected a number or null"),
])
def test_messages_name_the_key_and_the_fix(overrides, message):
    with pytest.raises(ConfigError) as err:
        check_command_line(overrides)
    assert message in str(err.value)


@pytest.mark.parametrize("group", ["schedule", "experiment", "model", "data", "optimizer"])
def test_every_shipped_config_passes_the_schema(group):
    """The schema types what the configs hold: every option of these groups validates as shipped."""
    options = sorted(p.relative_to(ROOT / "configs" / group).with_suffix("").as_posix()
                     for p in (ROOT / "configs" / group).rglob("*.yaml"))
    assert options
    for option in options:
        validate(compose_config([f"{group}={option}"]))
