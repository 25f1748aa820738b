"""The one way the analysis builds a recorded schedule config, safely.

    from analysis.safe_schedule import build_schedule
    schedule = build_schedule(run.schedule_config, "run x: schedule config")

A config.yaml or a wandb run may come from anyone, and hydra.utils.instantiate calls whatever
`_target_` names (os.system), nested `_target_` nodes included. So the analysis builds only a class of
the `schedules` package from plain arguments: schedule_class looks the class up as attributes of the
imported package (nothing is imported or called), check_schedule_config refuses every other Hydra
key at any depth and unresolved interpolations, and build_schedule instantiates what passed.
Tested with crafted configs in tests/test_safe_inputs.py.
"""
from __future__ import annotations

import re

from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import schedules


def schedule_class(target, what: str = "schedule config") -> type:
    """The schedules.Schedule subclass `target` names ('schedules.WSD'), looked up as attributes of the
    imported `schedules` package (nothing is imported or called), else a ValueError naming `what`."""
    parts, cls = (target.split(".") if isinstance(target, str) else []), schedules
    for part in parts[1:] if parts[:1] == ["schedules"] else [None]:
        cls = getattr(cls, part, None) if part and part.isidentifier() and part[0] != "_" else None
    if not (isinstance(cls, type) and issubclass(cls, schedules.Schedule)):
        raise ValueError(f"{what}: _target_={target!r} is not a schedule class; the analysis builds only classes of "
                         "the `schedules` package (e.g. 'schedules.WSD'), so that a config cannot run code: correct "
                         "the config or leave the run out")
    return cls


def check_schedule_config(config, what: str = "schedule config") -> dict:
    """`config` as a dict if it names a schedules class with plain arguments: no other Hydra key (`_args_`,
    `_partial_`, a nested `_target_`, ...) at any depth and no '${...}' to resolve; else a ValueError."""
    config = OmegaConf.to_container(config) if isinstance(config, DictConfig) else config
    if not isinstance(config, dict) or "_target_" not in config:
        raise ValueError(f"{what} {config!r} is not a schedule config: it needs `_target_` (e.g. "
                         "'schedules.WSD') and the schedule's arguments, as train.py records them")
    schedule_class(config["_target_"], what)
    stack = [(str(k), v) for k, v in config.items() if k != "_target_"]
    while stack:
        key, value = stack.pop()
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value   # dict(a DictConfig)
        if re.fullmatch(r"_\w*_", key.rsplit(".", 1)[-1]):
            raise ValueError(f"{what}: key {key!r} is a Hydra instantiation key; the analysis builds only the "
                             "top-level schedules class from plain arguments, so that a config cannot run code: "
                             "remove the key (train.py never records one) or leave the run out")
        if isinstance(value, str) and "${" in value:
            raise ValueError(f"{what}: {key}={value!r} is an interpolation left unresolved; the analysis reads "
                             "configs resolved, as train.py records them: give the value itself")
        nested = isinstance(value, (list, tuple))      # OmegaConf makes a tuple a list, which instantiate walks
        items = value.items() if isinstance(value, dict) else enumerate(value) if nested else ()
        stack += [(f"{key}.{k}", v) for k, v in items]
    return config


def build_schedule(config, what: str = "schedule config"):
    """The schedule object of a recorded config: check_schedule_config, then hydra.utils.instantiate."""
    config = check_schedule_config(config, what)
    try:
        return instantiate(config)
    except HydraException as error:   # arguments the class refuses
        raise ValueError(f"{what} {config} cannot be built by hydra.utils.instantiate: {error}") from None
