"""Config files and their values: read and merge them, parse ``--set`` overrides, check each value's type and range.

The layer every other one builds on: the data pipeline checks its ``data`` settings here, and
:mod:`petseg.config` checks whole experiment configs (the ``train`` and ``model`` sections, which need the
training and model code) with the same rules. Every problem is a :class:`ConfigError` with a one-line
message naming the setting, what it must be and what it got.

Types come from the values in the YAML files (:func:`type_of_example`); ranges from :data:`RULES`. Configs
merge with OmegaConf and come back as plain dicts equal to what a recursive dict merge gives (ints stay
ints, no key is added). Only ``yaml`` is imported at import time.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import yaml

from petseg.errors import ConfigError, one_line
from petseg.profiles import PROFILES

DATA_CONFIG = "data"

# ------------------------------------------------------------------------------------- reading configs


@functools.cache
def _read(name: str) -> dict:
    return yaml.safe_load(resources.files("petseg").joinpath("configs", f"{name}.yaml").read_text()) or {}


def read_config(name: str) -> dict:
    """``petseg/configs/<name>.yaml`` as a dict (a fresh copy), profiles included."""
    return copy.deepcopy(_read(name))


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


# ------------------------------------------------------------------------------------------------ merge


def merge(base: Mapping[str, Any] | None, *updates: Mapping[str, Any] | None) -> dict:
    """A new dict: ``base`` with each of ``updates`` merged in (nested mappings merged, other values replaced).

    Merged with OmegaConf and returned as plain containers: ints stay ints, keys keep their order, strings
    such as ``${x}`` are kept as written. A mapping given where a list is (or the reverse) is a ConfigError.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    parts = [dict(part) for part in (base, *updates) if part]
    if not parts:
        return {}
    if len(parts) == 1:
        return copy.deepcopy(parts[0])
    for part in parts[1:]:
        _check_no_missing(part)
    try:
        merged = OmegaConf.merge(*(OmegaConf.create(part) for part in parts))
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        where = f" at {key}" if key else ""
        raise ConfigError(f"cannot merge the settings{where}: {one_line(getattr(error, 'msg', error))}") from None
    return OmegaConf.to_container(merged, resolve=False, throw_on_missing=False)


def _check_no_missing(values: Mapping[str, Any], prefix: str = "") -> None:
    """OmegaConf reads ``???`` as "missing" and would keep the old value: refuse it instead."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            _check_no_missing(value, f"{prefix}{key}.")
        elif value == "???":
            raise ConfigError(f"{prefix}{key}: '???' is not a value")


# ------------------------------------------------------------------------------------- parse overrides


def parse_overrides(pairs: list[str] | None) -> dict:
    """``["train.num_workers=12", "data.image_size=256"]`` -> nested dict; values are parsed as YAML.

    Malformed pairs and values that are not YAML are a ConfigError naming the pair.
    """
    overrides: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set expects SECTION.KEY=VALUE (e.g. train.num_workers=12), got {pair!r}")
        node = overrides
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r} conflicts with an earlier --set of {part!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or one_line(error)
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML ({problem}); quote a string, "
                              f"e.g. {key}='\"text\"', write a list as [1, 2]") from None
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
            raise ConfigError(f"--set {pair!r} conflicts with an earlier --set of {key.strip()}.*")
        node[parts[-1]] = value
    return overrides


# ------------------------------------------------------------------------------------------ value rules


def _bounds(minimum: float | None = None, above: float | None = None, maximum: float | None = None,
            below: float | None = None) -> Callable[[Any], str | None]:
    """A rule for numbers: ``>= minimum``, ``> above``, ``<= maximum``, ``< below`` (None passes)."""
    def rule(value: Any) -> str | None:
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if isinstance(value, float) and math.isnan(value):
            return "must be a number, not nan"
        failed = ((minimum is not None and value < minimum) or (above is not None and value <= above)
                  or (maximum is not None and value > maximum) or (below is not None and value >= below))
        if not failed:
            return None
        limits = [f">= {minimum:g}" if minimum is not None else None, f"> {above:g}" if above is not None else None,
                  f"<= {maximum:g}" if maximum is not None else None, f"< {below:g}" if below is not None else None]
        return "must be " + " and ".join(limit for limit in limits if limit)
    return rule


def _each(rule: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(values: Any) -> str | None:
        problems = [rule(value) for value in (values or [])]
        return next((f"must have every value {p.removeprefix('must be ')}" for p in problems if p), None)
    return check


def _species_multipliers(value: Any) -> str | None:
    """The form only; the species names are the data layer's to check
    (:func:`petseg.data.labels.check_species_multipliers`)."""
    if value is None or value == "balance":
        return None
    if not isinstance(value, Mapping):
        return "must be 'balance', null or a mapping such as {cat: 5, dog: 2}"
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value.values()):
        return "must map each species to an integer >= 1"
    return None


AT_LEAST_1 = _bounds(minimum=1)
NOT_NEGATIVE = _bounds(minimum=0)
POSITIVE = _bounds(above=0)
FRACTION = _bounds(above=0, below=1)
PROBABILITY = _bounds(minimum=0, maximum=1)

# Value rules by "section.key", applied where the key exists (types come from the schema, see the module doc).
RULES: dict[str, Callable[[Any], str | None]] = {
    "train.epochs": AT_LEAST_1, "train.batch_size": AT_LEAST_1, "train.lr": POSITIVE,
    "train.weight_decay": NOT_NEGATIVE, "train.warmup_epochs": NOT_NEGATIVE, "train.min_lr_ratio": PROBABILITY,
    "train.dice_weight": NOT_NEGATIVE, "train.grad_clip": POSITIVE, "train.num_workers": NOT_NEGATIVE,
    "train.seed": NOT_NEGATIVE, "train.max_steps_per_epoch": AT_LEAST_1, "train.eval_batch_size": AT_LEAST_1,
    "train.class_weights": _each(NOT_NEGATIVE),
    "data.image_size": AT_LEAST_1, "data.seed": NOT_NEGATIVE, "data.val_fraction": FRACTION,
    "data.test_fraction": FRACTION, "data.augmentation_strength": NOT_NEGATIVE,
    "data.species_multipliers": _species_multipliers,
    "model.depth": AT_LEAST_1, "model.base_width": AT_LEAST_1, "model.max_width": AT_LEAST_1,
    "model.dropout": _bounds(minimum=0, below=1), "model.embedding_dim": AT_LEAST_1,
    "model.image_size": AT_LEAST_1, "model.box_probability": PROBABILITY, "model.interior_probability": PROBABILITY,
    "model.box_jitter": NOT_NEGATIVE, "model.max_extra_clicks": NOT_NEGATIVE,
    "model.corrective_rounds": NOT_NEGATIVE,
    "evaluation.max_clicks": AT_LEAST_1, "evaluation.interactive_images": AT_LEAST_1,
}


# ------------------------------------------------------------------------------------------------ types


def type_of_example(value: Any) -> Any:
    """The type a setting must have, judged from its value in a config file (Any where it may vary)."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, list):
        return list
    if isinstance(value, Mapping):
        return dict | None
    return Any  # strings are names or choices checked where used; null defaults take anything


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin in (list, tuple, typing.Sequence):
        return isinstance(value, list | tuple) and all(_matches(v, (typing.get_args(hint) or (Any,))[0])
                                                       for v in value)
    if origin is dict or hint is dict or origin is Mapping:
        return isinstance(value, Mapping)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    if hint is None or hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin in (list, tuple, typing.Sequence) or hint is list:
        args = typing.get_args(hint)
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    return names.get(origin or hint, getattr(hint, "__name__", str(hint)))


def _check_value(path: str, value: Any, hint: Any) -> None:
    if not _matches(value, hint):
        raise ConfigError(f"{path} must be {_describe(hint)}, got {value!r}")
    rule = RULES.get(path)
    problem = rule(value) if rule else None
    if problem:
        raise ConfigError(f"{path} {problem}, got {value!r}")


def check_keys(section: str, values: Any, schema: Mapping[str, Any], what: str = "") -> None:
    """``values`` must be a mapping whose keys are in ``schema`` (key -> type hint), each value of its type."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section} must be a mapping of settings (e.g. {section}.KEY=VALUE), got {values!r}")
    unknown = sorted(str(key) for key in values if key not in schema)
    if unknown:
        keys = ", ".join(f"{section}.{key}" for key in unknown)
        raise ConfigError(f"unknown setting{'s' if len(unknown) > 1 else ''} {keys}{what}; valid {section} keys: "
                          f"{', '.join(sorted(schema))}")
    for key, value in values.items():
        _check_value(f"{section}.{key}", value, schema[key])


# ------------------------------------------------------------------------------------------------- data


def data_settings(profile: str) -> dict:
    """``configs/data.yaml`` with ``profile``'s keys merged over the top level (and ``profile`` set)."""
    raw = read_config(DATA_CONFIG)
    profile_values = (raw.pop("profiles", None) or {}).get(check_profile(profile)) or {}
    return merge(raw, profile_values, {"profile": profile})


def data_schema() -> dict[str, Any]:
    """Every setting of ``configs/data.yaml`` (top level and any profile) -> the type its value there has."""
    raw = read_config(DATA_CONFIG)
    examples: dict[str, Any] = {}
    for values in [*(raw.pop("profiles", None) or {}).values(), raw]:
        examples.update(values or {})
    return {key: type_of_example(value) for key, value in examples.items()}


def check_data_settings(values: Mapping[str, Any] | None, section: str = "data") -> None:
    """ConfigError unless every key of ``values`` is a setting of ``configs/data.yaml`` with a valid value
    (the names in ``species_multipliers`` are checked by :func:`petseg.data.labels.check_species_multipliers`)."""
    check_keys(section, dict(values or {}), data_schema())
