"""`python -m training.checkpoint verify|upgrade`: check checkpoints against their manifests, or
convert one written by an older version of the trainer (pickled RNG state, no manifest).

    python -m training.checkpoint verify <checkpoint dir>...            # exit 1 if any is bad
    python -m training.checkpoint upgrade --trust <checkpoint dir>...   # only for files you wrote

Tested by tests/test_checkpoint_safety.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from training.checkpoint import CONFIG_FILE, STATE_FILE, _run_ids, save, verify


def upgrade(path: str | Path) -> Path:
    """Rewrite a checkpoint of an older version (numpy RNG state, no manifest) in the safe format.
    Unpickles with weights_only=False: run it only on files you wrote yourself."""
    path = Path(path)
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    py, npy = state["rng"]["python"], state["rng"]["numpy"]
    if isinstance(npy, tuple):  # np.random.get_state()'s legacy tuple: (name, key, pos, has_gauss, gauss)
        npy = {"bit_generator": npy[0], "key": [int(k) for k in npy[1]], "pos": int(npy[2]),
               "has_gauss": int(npy[3]), "gauss": float(npy[4])}
    state["rng"] = {**state["rng"], "python": [py[0], list(py[1]), py[2]], "numpy": npy}
    config = OmegaConf.load(path / CONFIG_FILE)
    _run_ids.setdefault(path.parent.parent.resolve(), ("upgraded", 0.0))  # one id for a run's old checkpoints
    return save(path.parent.parent, state, config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.checkpoint", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["verify", "upgrade"])
    parser.add_argument("paths", nargs="+", type=Path, help="checkpoint directories (.../checkpoints/step_N)")
    parser.add_argument("--trust", action="store_true", help="upgrade: I wrote these files (they are unpickled)")
    args = parser.parse_args(argv)
    if args.command == "upgrade" and not args.trust:
        parser.error("upgrade unpickles the files, which can run code: pass --trust if you wrote them yourself")
    bad = 0
    for path in args.paths:
        if args.command == "verify":
            problem = verify(path) if (path / STATE_FILE).is_file() else f"no {STATE_FILE} in {path}"
            bad += problem is not None
            print(f"{path}: {problem or 'ok'}")
        else:
            print(f"{path}: upgraded -> {upgrade(path)}")
    return 1 if bad else 0
