"""Experiment settings: read, merge and check the configs and their overrides before anything runs.

:func:`load_experiment_config` merges ``petseg/configs/<name>.yaml``, its profile and the overrides (``--set``
on the command line) and checks the result with the same rules a config file gets, so a mistake stops the
run before a data cache, a download or a run folder is made. Every problem is a :class:`ConfigError` with a
one-line message naming the setting, what it must be and what it got.

The schema is derived, not written out a second time:

* sections: the mapping-valued sections of the experiment's own YAML (``model``, ``train``, ``data``,
  ``evaluation``, ...), plus ``upstream`` for an experiment pre-trained from another (``pretrained_from``);
* ``train``: the fields and type hints of :class:`petseg.training.config.TrainConfig`, and its own checks;
* ``data``: the keys of ``configs/data.yaml`` (top level and every profile), typed by their values there;
* ``model``: the keys of the experiment's ``model`` section (any profile) and every argument the model's
  builder accepts (:func:`petseg.models.builder_arguments`), typed by the YAML values;
* other sections (``evaluation``): their keys and value types in the YAML;
* profiles: :data:`petseg.profiles.PROFILES` (``configs/data.yaml`` has a section for each);

plus the ranges in :data:`RULES` (epochs >= 1, lr > 0, ...) and whether the images fit the model
(:func:`petseg.models.check_input_size`). Configs merge with OmegaConf and come back as plain dicts equal
to what a recursive dict merge gives (ints stay ints, no key is added).

This module imports only ``yaml`` at import time; ``omegaconf`` and, for the checks that need them,
torch and the model modules are imported when used, so the command line stays quick when it fails early.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
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
UPSTREAM = "upstream"  # the override section for the run an experiment is pre-trained from
DEVICE_TYPES = ("cpu", "cuda", "mps")


# ------------------------------------------------------------------------------------- reading configs


@functools.cache
def _read(name: str) -> dict:
    return yaml.safe_load(resources.files("petseg").joinpath("configs", f"{name}.yaml").read_text()) or {}


def read_config(name: str) -> dict:
    """``petseg/configs/<name>.yaml`` as a dict (a fresh copy), profiles included."""
    return copy.deepcopy(_read(name))


def available_experiments() -> list[str]:
    """The experiment configs in ``petseg/configs/`` (every YAML file but ``data.yaml``), sorted."""
    names = [p.name[:-5] for p in resources.files("petseg").joinpath("configs").iterdir() if p.name.endswith(".yaml")]
    return sorted(n for n in names if n != DATA_CONFIG)


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


# Experiments renamed since runs were recorded under their old name (issue 15: one name per model): old -> new.
# The old name is refused with one line naming the new one (``petseg train clip_unet``); what was written under
# it (recorded results, run folders) is read under the new one (petseg.reporting.recorded, petseg.demo.models).
RENAMED_EXPERIMENTS = {"clip_unet": "fusion_unet"}


def current_experiment_name(name: str) -> str:
    """What experiment ``name`` is called now: a renamed experiment's new name, any other name unchanged."""
    return RENAMED_EXPERIMENTS.get(name, name)


def former_experiment_names(name: str) -> list[str]:
    """The old names of experiment ``name`` (sorted; [] if it was never renamed)."""
    return sorted(old for old, new in RENAMED_EXPERIMENTS.items() if new == name)


def check_experiment_name(name: str) -> str:
    if name in RENAMED_EXPERIMENTS:
        raise ConfigError(f"experiment {name!r} is now called {RENAMED_EXPERIMENTS[name]!r}")
    if name not in available_experiments():
        raise ConfigError(f"unknown experiment {name!r}; valid: {', '.join(available_experiments())}")
    return name


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
    from petseg.data.labels import SPECIES

    if value is None or value == "balance":
        return None
    if not isinstance(value, Mapping):
        return "must be 'balance', null or a mapping such as {cat: 5, dog: 2}"
    unknown = sorted(str(key) for key in value if key not in SPECIES)
    if unknown:
        return f"has unknown species {unknown}; valid: {', '.join(SPECIES)}"
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


def _type_of_example(value: Any) -> Any:
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


def _check_keys(section: str, values: Any, schema: Mapping[str, Any], what: str = "") -> None:
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
    return {key: _type_of_example(value) for key, value in examples.items()}


def check_data_settings(values: Mapping[str, Any] | None, section: str = "data") -> None:
    """ConfigError unless every key of ``values`` is a setting of ``configs/data.yaml`` with a valid value."""
    _check_keys(section, dict(values or {}), data_schema())


# ------------------------------------------------------------------------------------------------ train


def train_schema() -> dict[str, Any]:
    """:class:`petseg.training.config.TrainConfig`'s fields -> their type hints (imports torch)."""
    from petseg.training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return {field.name: hints.get(field.name, Any) for field in dataclasses.fields(TrainConfig)}


def check_train_settings(values: Mapping[str, Any] | None, section: str = "train") -> None:
    """ConfigError unless ``values`` make a valid :class:`petseg.training.config.TrainConfig` (keys, types, ranges)."""
    from petseg.training.config import TrainConfig

    _check_keys(section, dict(values or {}), train_schema())
    try:
        TrainConfig.from_dict(values or {})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{section}: {one_line(error)}") from None


# ------------------------------------------------------------------------------------------------ model


def check_model_settings(model: Mapping[str, Any], examples: Mapping[str, Any], image_size: int | None) -> None:
    """ConfigError unless ``model`` names a registered model, uses only keys its builder accepts (typed by
    ``examples``: the experiment's YAML values) and takes ``image_size`` px images."""
    from petseg.models import available_models, builder_arguments, check_input_size

    if not isinstance(model, Mapping):
        raise ConfigError(f"model must be a mapping of settings (e.g. model.KEY=VALUE), got {model!r}")
    name = model.get("name")
    if name not in available_models():
        raise ConfigError(f"model.name must be one of {', '.join(available_models())}, got {name!r}")
    schema = {key: Any for key in builder_arguments(name)}
    schema.update({key: _type_of_example(value) for key, value in examples.items()}, name=Any)
    _check_keys("model", model, schema, what=f" for model {name}")
    if str(name).startswith("sam2_") and "image_size" in model:
        from petseg.models.sam2 import check_image_size

        try:
            check_image_size(model["image_size"])
        except ValueError as error:
            raise ConfigError(f"model.image_size: {one_line(error)}") from None
    if image_size is None:
        return
    try:
        check_input_size(model, image_size, image_size)
    except ValueError as error:
        fits = _sizes_that_fit(model, image_size)
        hint = f"; sizes that fit near {image_size}: {', '.join(map(str, fits))}" if fits else ""
        raise ConfigError(f"data.image_size={image_size} does not fit model {name}: {one_line(error)}{hint}") from None


def _sizes_that_fit(model: Mapping[str, Any], size: int, search: int = 4096) -> list[int]:
    from petseg.models import check_input_size

    def fits(candidate: int) -> bool:
        try:
            check_input_size(model, candidate, candidate)
        except ValueError:
            return False
        return True

    below = next((s for s in range(size - 1, 0, -1) if fits(s)), None)
    above = next((s for s in range(size + 1, size + search) if fits(s)), None)
    return [s for s in (below, above) if s is not None]


# -------------------------------------------------------------------------------------------- experiment


def _examples(raw: Mapping[str, Any], section: str) -> dict:
    """Every key of ``section`` in the experiment's YAML, top level and any profile, with an example value."""
    found: dict = {}
    for values in [*(raw.get("profiles") or {}).values(), raw]:
        found.update((values or {}).get(section) or {})
    return found


def sections(name: str) -> list[str]:
    """The sections experiment ``name`` accepts in its config and overrides (sorted)."""
    raw = read_config(check_experiment_name(name))
    names = {"data", "model", "train"}
    for values in [raw, *(raw.get("profiles") or {}).values()]:
        names.update(key for key, value in (values or {}).items() if isinstance(value, Mapping) and key != "profiles")
    if raw.get("pretrained_from"):
        names.add(UPSTREAM)
    return sorted(names)


def _check_sections(name: str, raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    valid = sections(name)
    for key, value in overrides.items():
        if key in valid and not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of settings (e.g. {key}.KEY=VALUE), got {value!r}")
        if key == UPSTREAM and not raw.get("pretrained_from"):
            raise ConfigError(f"experiment {name!r} is not pre-trained from another run: an {UPSTREAM!r} override "
                              f"({overrides[key]}) has nothing to apply to; valid sections: {', '.join(valid)}")
        if key not in valid:
            raise ConfigError(f"unknown section {key!r} for experiment {name}; valid sections: {', '.join(valid)}")


def check_experiment_config(name: str, config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
                            ) -> None:
    """ConfigError unless ``config`` (experiment ``name``, merged with its profile and ``overrides``) is valid:
    every section, key, type and range, and the images fit the model. An experiment pre-trained from another
    is checked with the settings its upstream run gets too."""
    raw = read_config(name)
    profile = config.get("profile") or PROFILES[0]
    for section in sections(name):
        if section in config and section not in ("data", "model", "train", UPSTREAM):
            _check_keys(section, config[section], {k: _type_of_example(v) for k, v in _examples(raw, section).items()})
    check_train_settings(config.get("train"))
    check_data_settings(config.get("data"))
    data = merge(data_settings(profile), config.get("data"))
    check_model_settings(config.get("model") or {}, _examples(raw, "model"), data.get("image_size"))
    upstream_name = config.get("pretrained_from")
    if upstream_name:
        try:
            load_experiment_config(upstream_name, profile, overrides_for_upstream(overrides))
        except ConfigError as error:
            raise ConfigError(f"{error} (in the settings of {upstream_name}, the run {name} is pre-trained from; "
                              f"settings for it alone go under {UPSTREAM}.*)") from None


def load_experiment_config(name: str, profile: str = "quick", overrides: Mapping[str, Any] | None = None) -> dict:
    """``petseg/configs/<name>.yaml`` with its profile and ``overrides`` merged over the defaults, checked
    (:func:`check_experiment_config`); ``experiment`` and ``profile`` are set in the result."""
    check_experiment_name(name)
    check_profile(profile)
    overrides = dict(overrides or {})
    raw = read_config(name)
    _check_sections(name, raw, overrides)
    profile_values = (raw.pop("profiles", None) or {}).get(profile) or {}
    config = merge(raw, profile_values, overrides)
    config.update(experiment=name, profile=profile)
    check_experiment_config(name, config, overrides)
    return config


# ----------------------------------------------------------------------------------------------- device


def available_devices() -> list[str]:
    """The devices this machine can train on: ``auto``, ``cpu`` and any CUDA (``cuda``, ``cuda:N``) or MPS."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(device: str | None, what: str = "--device") -> str | None:
    """``device`` if this machine has it (None and ``auto`` pass); ConfigError listing the devices otherwise."""
    if device is None or device == "auto":
        return device
    import torch

    here = available_devices()
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        raise ConfigError(f"unknown {what} {device!r}; devices on this machine: {', '.join(here)}")
    if parsed.type != "cpu" and (parsed.type not in here or (parsed.index is not None and str(parsed) not in here)):
        raise ConfigError(f"{what} {device!r} is not available on this machine; devices here: {', '.join(here)}")
    return device


# the model keys that shape a UNet encoder: an AE+UNet's autoencoder must share them
ENCODER_KEYS = ("in_channels", "depth", "base_width", "max_width", "upsample")


def overrides_for_upstream(overrides: Mapping[str, Any] | None) -> dict:
    """The part of a run's ``overrides`` that also applies to the run it is pre-trained from (the AE+UNet's
    autoencoder): ``train`` and ``data`` whole, and the encoder-shaping ``model`` keys (:data:`ENCODER_KEYS`),
    then the ``upstream`` section merged over them: settings for the pre-trained run alone (e.g.
    ``{"upstream": {"train": {"epochs": 32}}}`` trains the autoencoder longer and the AE+UNet as before)."""
    upstream = {k: v for k, v in (overrides or {}).items() if k in ("train", "data")}
    shared = {k: v for k, v in (overrides or {}).get("model", {}).items() if k in ENCODER_KEYS}
    if shared:
        upstream["model"] = shared
    return merge(upstream, (overrides or {}).get("upstream") or {})
