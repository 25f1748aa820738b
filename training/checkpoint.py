"""Checkpoints: atomic, verified, safe to load, and resumable under a different schedule or horizon.

A checkpoint is a directory `<run dir>/checkpoints/step_<NNNNNNN>/` holding
  state.pt       model, optimizer, step, tokens, data-loader position, RNG states (one torch.save dict
                 of tensors and plain Python values only, so that it loads with weights_only=True);
                 full, unsharded tensors keyed by parameter name (`capture`), whatever the world size
                 that wrote it, so 1 process, DDP or FSDP on any number of ranks resumes it (`restore`)
  config.yaml    the resolved config of the run that wrote it
  manifest.json  sha256 and size of both files, the step, and the id of the run that wrote it
It is written to a temporary sibling directory first and renamed into place, so a crash or a full
disk mid-write (any exception: torch reports a full disk as RuntimeError) never leaves a half
checkpoint under a real name; the temporary directory is removed, and those of killed processes are
removed when the run directory is opened again (`open_run_dir`). A checkpoint whose files do not
match its manifest (a bit flip, a partial copy) is skipped by `latest_checkpoint`, which falls back
to the previous good one, and refused by `load`. Loading never unpickles code: a crafted state.pt
fails with a message naming it. Pruning (`keep`) deletes only checkpoints written by this run, so a
`trainer.resume=never` run into a used directory leaves the old run's checkpoints alone, and a
later rerun continues the run started last.

    python -m training.checkpoint verify <checkpoint dir>...            # check manifests
    python -m training.checkpoint upgrade --trust <checkpoint dir>...   # convert a pre-manifest one

`load("hf:DIR")` (trainer.init_from=hf:DIR) reads a local Hugging Face Llama folder (models/hf.py) as
a start of weights only: step 0, no optimizer, loader or RNG state, so `restore` leaves those fresh.

Tested by tests/test_checkpoint_safety.py and tests/test_train.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from training.rng import rng_state, set_rng_state
from training.rundir import CHECKPOINTS_DIR, CONFIG_FILE, checkpoint_dir, checkpoint_dirs, checkpoint_step

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
MANIFEST_FILE = "manifest.json"
# Temporary names carry host and pid so that a later process can tell a dead writer's leftovers
# (removed) from a live one's (kept); `.tmp-step_X-<pid>` is the older, host-less form.
_TMP = re.compile(r"^\.(tmp|old)-(step_\d+)-(?:(.+)-)?(\d+)$")
_HOST = socket.gethostname().replace("-", "_")
_run_ids: dict[Path, tuple[str, float]] = {}  # run dir -> (id, start time) of the run this process writes
_verified: dict[Path, tuple] = {}  # checkpoint dir -> (name, mtime_ns, size) of files that matched


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run by step, oldest first (temporary directories are ignored; not verified)."""
    return [p for p in checkpoint_dirs(run_dir) if (p / STATE_FILE).is_file()]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint whose files match its manifest; bad ones are skipped with a warning.
    Newest: the highest step of the run started last (a `trainer.resume=never` run into a used
    directory is the one a later rerun continues, whatever steps the older run reached)."""
    def order(path: Path) -> tuple:
        return (_manifest(path) or {}).get("run_started", 0.0), checkpoint_step(path)

    for path in sorted(list_checkpoints(run_dir), key=order, reverse=True):
        problem = verify(path)
        if problem is None:
            return path
        log.warning("Skipping checkpoint %s: %s. Falling back to the previous one.", path, problem)
    return None


def _digest(path: Path) -> dict:
    with open(path, "rb") as f:
        return {"sha256": hashlib.file_digest(f, "sha256").hexdigest(), "size": path.stat().st_size}


def _manifest(path: Path) -> dict | None:
    try:
        return json.loads((path / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None


def verify(path: str | Path) -> str | None:
    """None if the checkpoint directory's files match its manifest, else what is wrong. A checkpoint
    written before manifests existed passes with a warning (nothing to check it against)."""
    path = Path(path)
    if not (path / MANIFEST_FILE).exists():
        log.warning("Checkpoint %s has no %s (written before checksums): its files cannot be verified.",
                    path, MANIFEST_FILE)
        return None
    manifest = _manifest(path)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return f"{path / MANIFEST_FILE} is unreadable"
    files = manifest["files"]
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        return f"{path / missing[0]} is missing"
    stamp = tuple((name, (path / name).stat().st_mtime_ns, (path / name).stat().st_size) for name in files)
    if _verified.get(path.resolve()) == stamp:
        return None  # hashed earlier in this process and untouched since: spare a second full read
    for name, expected in files.items():
        actual = _digest(path / name)
        if actual != expected:
            return (f"{path / name} does not match its checksum (size {actual['size']} vs "
                    f"{expected.get('size')}; sha256 differs): the file is corrupt")
    _verified[path.resolve()] = stamp
    return None


def _plain(obj, where: str = "state"):
    """`obj` with numpy scalars made Python numbers; anything a safe load would refuse is an error
    here, at save time, rather than a checkpoint that cannot be resumed. Containers are rebuilt only
    when something in them changed (a state dict's OrderedDict keeps its `_metadata`)."""
    if isinstance(obj, dict):
        items = {k: _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
        return obj if all(items[k] is v for k, v in obj.items()) else type(obj)(items)
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return obj if all(a is b for a, b in zip(items, obj)) else type(obj)(items)
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (torch.Tensor, int, float, bool, str, bytes, torch.dtype, torch.Size)):
        return obj
    raise TypeError(f"{where} is a {type(obj).__name__}, which torch.load(weights_only=True) refuses: "
                    f"store it as tensors or plain Python values (see training.checkpoint.rng_state).")


# ---------------------------------------------------------------------------------------------------
# The state of a run: gathered from and restored into the live parts, at any world size.
# ---------------------------------------------------------------------------------------------------
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def capture(model, optimizer, loader, step: int, tokens: int, schedule=None) -> dict:
    """The run's full state, unsharded, keyed by parameter name (torch.distributed.checkpoint's
    state-dict API): the same dict from 1 process, DDP or FSDP, so any world size can resume it.
    Under FSDP every rank must call it (it all-gathers); only rank 0's dict holds the tensors."""
    model_state, optim_state = get_state_dict(model, optimizer, options=_FULL)
    state = {"model": model_state, "optimizer": optim_state, "step": step, "tokens": tokens,
             "loader": loader.state_dict(), "rng": rng_state()}
    if getattr(schedule, "reactive", False):  # a schedule that reacts to the val loss has state of its own
        state["schedule"] = schedule.state_dict()
    return state


def _named_optimizer_state(saved: dict, model, optimizer) -> dict:
    """An optimizer state dict of an older checkpoint (keyed by position, torch's optimizer.state_dict())
    re-keyed by parameter name, the form `capture` writes."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    groups = [{**g, "params": [order[i] for i in g["params"]]} for g in saved["param_groups"]]
    return {"state": {order[i]: s for i, s in saved["state"].items()}, "param_groups": groups}


def restore(state: dict, model, optimizer, loader, schedule=None) -> None:
    """Load a checkpoint's state into freshly built, already parallelized parts (model on its device;
    under FSDP each rank keeps its shard of the full tensors)."""
    if state.get("hf_model") is not None:  # weights of a Hugging Face folder: the optimizer etc. stay fresh
        from models.hf import restore_weights

        return restore_weights(state, model)
    optim_state = state["optimizer"]
    if any(isinstance(k, int) for k in optim_state["state"]):
        optim_state = _named_optimizer_state(optim_state, model, optimizer)
    try:
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=optim_state,
                       options=StateDictOptions(full_state_dict=True))
    except (RuntimeError, KeyError, ValueError) as err:
        raise ValueError(
            f"The checkpoint's state does not fit this model/optimizer ({str(err).splitlines()[0][:300]}). "
            f"Use the same model config as the run that wrote it."
        ) from err
    loader.load_state_dict(state["loader"])
    set_rng_state(state["rng"])
    if getattr(schedule, "reactive", False) and "schedule" in state:
        schedule.load_state_dict(state["schedule"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def open_run_dir(run_dir: str | Path, resumed_from: str | Path | None = None) -> str:
    """Start writing checkpoints into run_dir: remove temporary directories of dead writers (a
    killed save), and fix this run's id -- the id of `resumed_from` (the run's own checkpoint being
    continued) or a new one. Returns the id. `save` calls it on first use if the caller did not."""
    run_dir = Path(run_dir).resolve()
    root = run_dir / CHECKPOINTS_DIR
    for entry in (root.iterdir() if root.is_dir() else ()):
        m = _TMP.match(entry.name)
        if not m or not entry.is_dir():
            continue
        kind, name, host, pid = m.group(1), m.group(2), m.group(3), int(m.group(4))
        if host not in (None, _HOST) or _pid_alive(pid) and pid != os.getpid():
            continue  # another machine's or a live process's write in progress
        if kind == "old" and not (root / name).exists():  # killed between the two renames of a re-save
            os.replace(entry, root / name)
            log.warning("Restored checkpoint %s from an interrupted re-save.", root / name)
        else:
            shutil.rmtree(entry, ignore_errors=True)
            log.warning("Removed %s, left by a save that was killed.", entry)
    manifest = (_manifest(Path(resumed_from)) if resumed_from else None) or {}
    if manifest.get("run_id"):
        _run_ids[run_dir] = (manifest["run_id"], manifest.get("run_started", 0.0))
    else:
        _run_ids[run_dir] = (uuid.uuid4().hex[:12], time.time())
    return _run_ids[run_dir][0]


def check_keep(keep) -> None:
    """trainer.keep_checkpoints: None / 0 keep all, N >= 1 this run's N newest (-1 used to delete all)."""
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise ValueError(f"trainer.keep_checkpoints={keep} is invalid: use N >= 1 to keep this run's N "
                         f"newest checkpoints, or 0 / null to keep all of them.")


def save(run_dir: str | Path, state: dict, config: DictConfig, keep: int | None = None) -> Path:
    """Write `state` (a dict whose values are state dicts / plain values; must contain "step")
    atomically under run_dir/checkpoints/ with its manifest, then prune this run's checkpoints to the
    `keep` newest (0 / None: keep all). Returns the path."""
    check_keep(keep)
    state = _plain(state)
    key = Path(run_dir).resolve()
    if key not in _run_ids:
        open_run_dir(run_dir)
    run_id, started = _run_ids[key]
    final = checkpoint_dir(run_dir, state["step"])
    tmp = final.parent / f".tmp-{final.name}-{_HOST}-{os.getpid()}"
    old = final.parent / f".old-{final.name}-{_HOST}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the manifest must describe bytes that are on disk
        (tmp / CONFIG_FILE).write_text(OmegaConf.to_yaml(config, resolve=True))
        manifest = {"step": int(state["step"]), "run_id": run_id, "run_started": started,
                    "files": {name: _digest(tmp / name) for name in (STATE_FILE, CONFIG_FILE)}}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        if final.exists():  # re-saving the same step (e.g. final save right after a periodic one)
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException as err:  # a full disk is torch's RuntimeError; Ctrl-C must clean up too
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        if not isinstance(err, Exception):
            raise
        previous = latest_checkpoint(run_dir)
        raise RuntimeError(
            f"Could not write checkpoint {final} ({type(err).__name__}: {err}). The previous checkpoint "
            f"{previous or '(none)'} is intact. Free disk space (or point hydra.run.dir at a larger "
            f"disk) and resume with the same hydra.run.dir."
        ) from err
    shutil.rmtree(old, ignore_errors=True)
    if keep:
        mine = [p for p in list_checkpoints(run_dir) if (_manifest(p) or {}).get("run_id") == run_id]
        for stale in mine[:-keep]:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def load(path: str | Path) -> dict:
    """Load a checkpoint directory (or its state.pt): verified against its manifest, unpickled with
    weights_only=True. Clear errors for missing, corrupt or unsafe files. "hf:DIR": models.hf.start_state(DIR)."""
    from models.hf import hf_dir, start_state

    if hf_dir(str(path)) is not None:  # trainer.init_from=hf:DIR
        return start_state(hf_dir(str(path)))
    path = Path(path)
    state_file = path / STATE_FILE if path.is_dir() else path
    if not state_file.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {path}: expected a directory like <run dir>/checkpoints/step_0001000 "
            f"containing {STATE_FILE}. Check trainer.init_from (ls <run dir>/checkpoints)."
        )
    ckpt = state_file.parent
    problem = verify(ckpt)
    if problem is not None:
        raise ValueError(f"Checkpoint {ckpt} is corrupt: {problem}. Delete {ckpt} and start from an "
                         f"earlier checkpoint (a resume picks the newest good one by itself).")
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch says "Unsupported global" for code the file wants run, other things for garbage bytes
        detail = str(err).split("WeightsUnpickler error:")[-1].strip().split(". ")[0]
        if "Unsupported global" not in detail:
            raise ValueError(f"Checkpoint file {state_file} is corrupt or truncated ({detail}). Delete that "
                             f"checkpoint directory and resume from an earlier one.") from err
        raise ValueError(
            f"Checkpoint file {state_file} holds Python objects that a safe load refuses to run "
            f"({detail}). It was not written by this trainer's current version: delete "
            f"{ckpt}, or, only if you wrote it yourself with an older version, convert it with "
            f"`python -m training.checkpoint upgrade --trust {ckpt}`."
        ) from err
    except Exception as err:  # torch raises many types for truncated / garbage files
        raise ValueError(
            f"Checkpoint file {state_file} is corrupt or truncated ({type(err).__name__}: {err}). "
            f"Delete that checkpoint directory and resume from an earlier one."
        ) from err
    missing = {"model", "optimizer", "step", "tokens", "loader", "rng"} - set(state)
    if missing:
        raise ValueError(f"Checkpoint {state_file} lacks {sorted(missing)}: not written by this trainer.")
    if ckpt.parent.name == CHECKPOINTS_DIR:  # continuing a run's own checkpoint continues that run
        manifest = _manifest(ckpt) or {}
        if manifest.get("run_id"):
            _run_ids[ckpt.parent.parent.resolve()] = (manifest["run_id"], manifest.get("run_started", 0.0))
    return state


if __name__ == "__main__":  # the command-line tool lives beside it: training/checkpoint_tool.py
    from training.checkpoint_tool import main

    raise SystemExit(main())
