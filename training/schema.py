"""The trainer's settings as typed dataclasses (OmegaConf structured configs), and the checks a
command line gets before Hydra runs it: errors at the door, short and with the fix.

    python train.py trainer.max_steps=abc   # -> trainer.max_steps=abc: expected an integer, got the string 'abc'
    python train.py optimizer.lrr=1e-3      # -> optimizer.lrr is not a setting of this config: did you mean optimizer.lr?

Only what the trainer itself reads is typed: `trainer.*` (configs/trainer/default.yaml, closed: an
unknown key is a typo) and the numeric fields every optimizer config shares (lr, weight_decay,
betas, eps). Everything built through `_target_` (the 16 schedules, the model, the data, other
optimizers' arguments) stays open: those classes check their own arguments when instantiated.

`validate(cfg)` merges the composed config into the schema (OmegaConf converts or refuses each
value, interpolations resolved) and writes the converted values back, so the trainer runs on exactly
what was checked. `check_command_line(argv)` is train.py's first step: it composes argv's overrides
(a sweep's first job) and names a misspelled key with the closest existing one (difflib) instead of
Hydra's hint to add it with `+`.
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass, field, fields
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, read_write
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from training.config import CONFIG_DIR, compose


class ConfigError(ValueError):
    """A bad setting or override, with the key and the fix (a ValueError, the project's user error)."""


@dataclass
class TrainerSettings:
    """configs/trainer/default.yaml, typed; its comments say what each key does. The choices
    (device, precision, ...) and ranges are checked by training.setup.check_config."""

    max_steps: int = MISSING
    warmup_steps: int = MISSING
    batch_size: int = MISSING
    micro_batch_size: int = MISSING
    seq_len: int = MISSING
    grad_clip: Optional[float] = MISSING
    eval_interval: int = MISSING
    eval_batches: int = MISSING
    eval_batch_size: int = MISSING
    log_interval: int = MISSING
    log_grad_norms: bool = MISSING
    checkpoint_interval: int = MISSING
    keep_checkpoints: Optional[int] = MISSING
    resume: str = MISSING
    init_from: Optional[str] = MISSING
    device: str = MISSING
    parallel: str = MISSING
    on_nonfinite: str = MISSING
    max_nonfinite_skips: int = MISSING
    precision: str = MISSING
    compile: Any = MISSING  # auto | true | false: OmegaConf 2.3 has no Union of str and bool
    peak_flops: Optional[float] = MISSING
    progress: bool = MISSING


@dataclass
class OptimizerSettings:
    """The fields the trainer reads from any optimizer config; other keys pass through untyped."""

    lr: float = MISSING
    weight_decay: float = MISSING
    betas: Optional[List[float]] = None
    eps: Optional[float] = None


@dataclass
class Settings:
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)


_SECTIONS = {"trainer": TrainerSettings, "optimizer": OptimizerSettings}
_FIELDS = {section: {f.name for f in fields(settings)} for section, settings in _SECTIONS.items()}
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _expected(annotation) -> str:
    """Words for a field's type: Optional[float] -> 'a number or null'."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union:  # Optional[X]
        return f"{_expected(args[0])} or null"
    if typing.get_origin(annotation) in (list, List):
        return f"a list of {_expected(args[0]).split(' ', 1)[1]}s, e.g. [0.9, 0.95]"
    return _TYPE_WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _annotation(full_key: str):
    """The schema type at full_key; for a list element (optimizer.betas[1]) the element type."""
    section, name = re.sub(r"\[\d+\]$", "", full_key).split(".", 1)
    annotation = typing.get_type_hints(_SECTIONS[section])[name]
    if full_key.endswith("]"):
        optional_list = [a for a in typing.get_args(annotation) if a is not type(None)][0]
        return typing.get_args(optional_list)[0]
    return annotation


def _describe(value) -> str:
    kind = {str: "the string", bool: "the boolean", float: "the number", int: "the integer"}
    return f"{kind.get(type(value), 'a ' + type(value).__name__)} {_shown(value)}"


def validate(cfg: DictConfig) -> None:
    """Type-check cfg.trainer and cfg.optimizer's shared fields against the schema (raises
    ConfigError naming the key, the expected type and what it got), then write the converted values
    back into cfg (e.g. a quoted '400' becomes 400), leaving interpolations as they are."""
    schema = OmegaConf.structured(Settings)
    OmegaConf.set_struct(schema, False)  # model, data, schedule, ...: open
    OmegaConf.set_struct(schema.optimizer, False)  # _target_, _partial_, momentum, ...: open
    try:
        merged = OmegaConf.merge(schema, cfg)
        checked = {section: OmegaConf.to_container(merged[section], resolve=True, throw_on_missing=True)
                   for section in ("trainer", "optimizer")}
    except ConfigKeyError as err:  # only trainer.* is closed
        key = err.full_key or str(err)
        match = difflib.get_close_matches(key.rpartition(".")[2], sorted(_FIELDS["trainer"]), n=1, cutoff=0.6)
        hint = f": did you mean trainer.{match[0]}?" if match else " (configs/trainer/default.yaml lists them)."
        raise ConfigError(f"{key} is not a trainer setting{hint}") from err
    except ValidationError as err:
        key = err.full_key
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False) if key else None
        raise ConfigError(f"{key}={_shown(value).strip(chr(39))}: expected {_expected(_annotation(key))}, got {_describe(value)}."
                          ) from err
    except OmegaConfBaseException as err:  # a missing value, an interpolation to nowhere
        raise ConfigError(f"{getattr(err, 'full_key', '') or 'config'}: {getattr(err, 'msg', err)}") from err
    with read_write(cfg):
        for section, values in checked.items():
            node = cfg[section]
            for name, value in values.items():
                typed = name in _FIELDS[section] and name in node and not OmegaConf.is_interpolation(node, name)
                # (type, value): True == 1 in Python, but optimizer.lr=true must not stay a bool
                if typed and not isinstance(node[name], ListConfig) and (type(node[name]), node[name]) != (type(value), value):
                    node[name] = value


def _shown(value) -> str:
    """value as it is written on a command line: true, null, 'abc', [0.9, 0.95]."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    if isinstance(value, str):
        return repr(value)
    return {True: "true", False: "false", None: "null"}.get(value, str(value)) if not isinstance(value, list) \
        else str(value)


def _first_job(override) -> str | None:
    """The override of a sweep's first job (`optimizer.lr=1e-3,3e-3` -> `optimizer.lr=1e-3`); None
    for sweeps a sweeper expands itself (intervals, globs)."""
    if not override.is_sweep_override():
        return override.input_line
    try:
        return f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}"
    except Exception:  # interval(...), glob(...): only their sweeper knows the values
        return None


def check_command_line(argv: list[str]) -> DictConfig | None:
    """train.py's first step: compose argv's overrides as Hydra will (a multirun's first job) and
    validate() the result, so that a misspelled key or a wrongly typed value fails in a second with
    one message. Returns the composed config; None when argv asks Hydra for something else (--help,
    --cfg, another config) or a sweep only its sweeper can expand: Hydra then reports on its own."""
    from hydra._internal.utils import get_args_parser  # the parser hydra.main itself uses
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    args = get_args_parser().parse_args(argv)
    if any((args.help, args.hydra_help, args.cfg, args.info, args.shell_completion,
            args.config_path, args.config_name, args.config_dir, args.experimental_rerun)):
        return None
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except OverrideParseException:
        return None  # Hydra's own message shows where the override does not parse
    if any(o.is_sweep_override() for o in overrides) and not args.multirun:
        return None  # Hydra says: a sweep needs --multirun
    lines = [_first_job(o) for o in overrides]
    if None in lines:
        return None
    problems = []
    while True:  # each pass drops the override Hydra could not apply, to name every typo at once
        try:
            cfg = compose(lines, return_hydra_config=True)
            break
        except MissingConfigException as err:  # schedule=cosinus: Hydra lists the options; the search path is noise
            raise ConfigError(str(err).split("Config search path")[0].strip()) from err
        except ConfigCompositionException as err:
            failed = re.match(r"Could not (?:override|delete from config\.) '([^']+)'", str(err)) \
                or re.search(r"'([^']+)' does not exist", str(err))
            if failed is None:
                raise ConfigError(str(err)) from err
            key = failed.group(1)
            problems.append(key)
            left = [line for line, o in zip(lines, overrides) if o.key_or_group != key]
            if len(left) == len(lines):
                raise ConfigError(str(err)) from err
            overrides = [o for o in overrides if o.key_or_group != key]
            lines = left
    if problems:
        raise ConfigError("\n".join(_unknown_key(key, cfg) for key in problems))
    validate(cfg)
    return cfg


def _unknown_key(key: str, cfg: DictConfig) -> str:
    """The message for an override of a key that is not in the composed config: the first missing
    part of the dotted key is matched among the names next to it (optimizer.lrr -> optimizer.lr,
    optimiser.lr -> optimizer.lr, schedul -> schedule), so a shared prefix alone never makes a match
    (optimizer.foo lists optimizer's keys instead of suggesting optimizer.lr)."""
    parts, node, depth = key.split("."), cfg, 0
    while depth < len(parts) - 1 and parts[depth] in node and isinstance(node._get_node(parts[depth]), DictConfig):
        node, depth = node._get_node(parts[depth]), depth + 1
    names = [str(name) for name in node.keys()]
    if depth == 0:  # a top-level name may be a config group that is off by default (experiment)
        names += [p.name for p in CONFIG_DIR.iterdir() if p.is_dir()]
    match = difflib.get_close_matches(parts[depth], names, n=1, cutoff=0.6)
    if match:
        return f"{key} is not a setting of this config: did you mean {'.'.join(parts[:depth] + match + parts[depth + 1:])}?"
    where = f" ({'.'.join(parts[:depth])} has: {', '.join(names)})" if depth else ""
    return f"{key} is not a setting of this config{where}; a new key needs a + prefix: +{key}=..."
