"""Guards for continuing a run in its own directory: one process at a time, same run, same maths.

    with run_dir_lock(run_dir):                       # a second trainer there fails at once
        check_resume(recorded_config, cfg, step)      # before anything in run_dir is written

`run_dir_lock` holds an exclusive `fcntl.flock` on `<run dir>/.lock` for the life of the training
call: the kernel drops it when the process exits or is killed (SIGKILL included), so a crash never
leaves the directory locked. `check_resume` compares the config of a resumed checkpoint with the new
one and refuses any change that would make the continued run a different run (model, data,
optimizer, seed, batch, schedule), naming the keys; a new horizon is accepted when the LRs of the
steps already trained stay the same. `with_new_hyperparameters` makes a branch (trainer.init_from)
use its own optimizer settings rather than the parent's.
Tested by tests/test_resume_guard.py (python -m pytest -q tests/test_resume_guard.py).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

LOCK_FILE = ".lock"

# Keys that say where or how fast a run goes, not what it computes: free to change on a resume.
# An entry ending in "." covers a whole section. Everything else must stay as recorded.
OPERATIONAL = (
    "paths.", "logger.", "data.cache_dir", "data.dir", "data.prepare.cache_dir", "model.kernels",
    "trainer.resume", "trainer.device", "trainer.compile", "trainer.parallel", "trainer.micro_batch_size",
    "trainer.on_nonfinite", "trainer.max_nonfinite_skips", "trainer.peak_flops", "trainer.progress",
    "trainer.log_interval", "trainer.log_grad_norms", "trainer.checkpoint_interval", "trainer.keep_checkpoints",
    "trainer.eval_interval", "trainer.eval_batches", "trainer.eval_batch_size",
)
# Keys that a new horizon changes by interpolation (schedules read trainer.max_steps and the default
# warmup is a fraction of it): checked through the LRs they produce instead of one by one.
HORIZON = ("trainer.max_steps", "trainer.warmup_steps", "schedule.")
_ABSENT = "<absent>"


class RunDirInUse(RuntimeError):
    """Another live process holds the run directory's lock."""


@contextmanager
def run_dir_lock(run_dir: str | Path):
    """Hold `<run_dir>/.lock` exclusively until the block ends; RunDirInUse if another process has it.
    Under torchrun only global rank 0 takes it (the ranks of one job share the directory)."""
    run_dir = Path(run_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise RunDirInUse(
            f"{run_dir} is being trained by another process ({holder}). Wait for it to finish or stop "
            f"it, or train into another directory (hydra.run.dir=...)."
        ) from None
    # Who holds it, for the message above; the lock itself is the flock, not this text.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def flatten(config: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values (betas is one setting)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _covered(key: str, entries: tuple[str, ...]) -> bool:
    return any(key == e or (e.endswith(".") and key.startswith(e)) for e in entries)


def config_diff(old: dict, new: dict) -> dict[str, tuple]:
    """{dotted key: (old value, new value)} for every key that differs or exists on one side only."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(a.keys() | b.keys())
            if a.get(k, _ABSENT) != b.get(k, _ABSENT)}


def _resolved(cfg: DictConfig | dict) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def _first_changed_lr_step(old_schedule: dict, new_schedule: dict, steps: int) -> int | None:
    """The first update s < steps whose LR multiplier differs between the two schedules, or None."""
    if steps == 0:
        return None
    s = np.arange(steps)
    # The recorded file is not trusted to name code: the class is the new config's (a changed
    # _target_ is refused anyway) and nothing nested is instantiated.
    old_schedule = {**old_schedule, "_target_": new_schedule["_target_"]}
    old = np.asarray(instantiate(old_schedule, _recursive_=False)(s), dtype=float)
    new = np.asarray(instantiate(new_schedule, _recursive_=False)(s), dtype=float)
    differs = ~np.isclose(old, new, rtol=1e-12, atol=0.0)
    return int(np.argmax(differs)) if differs.any() else None


def check_resume(recorded: DictConfig | dict, cfg: DictConfig | dict, step: int) -> None:
    """Refuse to continue, from a checkpoint at `step` written under config `recorded`, with a config
    `cfg` that trains something else. ValueError naming the differing keys and the way out."""
    old, new = _resolved(recorded), _resolved(cfg)
    diff = {k: v for k, v in config_diff(old, new).items() if not _covered(k, OPERATIONAL)}
    problems = []
    if "trainer.max_steps" in diff:
        max_steps = new["trainer"]["max_steps"]
        horizon = {k: v for k, v in diff.items() if _covered(k, HORIZON) and k != "schedule._target_"}
        if "schedule._target_" in diff or any(isinstance(v, (dict, list)) for v in old["schedule"].values()) \
                or getattr(get_class(new["schedule"]["_target_"]), "reactive", False):
            # another schedule, or one whose LRs follow the val loss (not computable from its config):
            # every differing key is named, nothing recorded is built
            horizon = {}
        elif max_steps < step:
            problems.append(f"trainer.max_steps={max_steps} is below the checkpoint's step {step}")
        else:
            changed = _first_changed_lr_step(old["schedule"], new["schedule"], step)
            if changed is not None:
                problems.append(f"the new horizon changes the LR of update {changed}, already trained "
                                f"(keys {', '.join(horizon)}): to continue under another schedule, branch "
                                f"from a checkpoint at or before step {changed} (trainer.init_from=...) "
                                f"into a new hydra.run.dir")
        diff = {k: v for k, v in diff.items() if k not in horizon}
    if diff or problems:
        lines = [f"  {k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()] + [f"  {p}" for p in problems]
        raise ValueError(
            f"Cannot resume this run directory (checkpoint at step {step}) with a changed config:\n"
            + "\n".join(lines) + "\nResume with the recorded values (the run's config.yaml), or train "
            "into another hydra.run.dir; a changed schedule or optimizer continues a run only as a branch: "
            "trainer.init_from=<run dir>/checkpoints/step_NNNNNNN with a new hydra.run.dir."
        )


def with_new_hyperparameters(saved: dict, optimizer) -> dict:
    """A copy of the optimizer state dict `saved` (the parent's) whose param-group settings (betas,
    weight decay, eps, ...) are those of `optimizer` (built from the branch's config): loading it keeps
    the parent's moments and step counts but trains with the branch's hyperparameters. None (a start
    from a Hugging Face folder, trainer.init_from=hf:DIR, has weights only) stays None: a fresh optimizer."""
    if saved is None:
        return None
    fresh = optimizer.state_dict()["param_groups"]
    groups = saved["param_groups"]
    if len(groups) != len(fresh) or any(len(g["params"]) != len(f["params"]) for g, f in zip(groups, fresh)):
        raise ValueError(
            f"The checkpoint's optimizer has parameter groups of sizes {[len(g['params']) for g in groups]}, "
            f"this model's {[len(f['params']) for f in fresh]}: branch with the parent's model config."
        )
    patched = [{**f, "params": g["params"]} for g, f in zip(groups, fresh)]
    return {**saved, "param_groups": patched}
