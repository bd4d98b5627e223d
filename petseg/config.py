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

plus the ranges in :data:`petseg.config_files.RULES` (epochs >= 1, lr > 0, ...) and whether the images fit the
model (:func:`petseg.models.check_input_size`). Reading, merging and the value checks themselves live in
:mod:`petseg.config_files`, the layer the data pipeline uses too; this module adds what needs the training and
model code.

This module imports only ``yaml`` at import time; ``omegaconf`` and, for the checks that need them,
torch and the model modules are imported when used, so the command line stays quick when it fails early.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from importlib import resources
from typing import Any

from petseg.config_files import (  # re-exported: the experiment-level API keeps one import
    DATA_CONFIG,
    RULES,
    check_data_settings,
    check_keys,
    check_profile,
    data_schema,
    data_settings,
    merge,
    parse_overrides,
    read_config,
    type_of_example,
)
from petseg.errors import ConfigError, one_line
from petseg.profiles import PROFILES

__all__ = ["DATA_CONFIG", "RULES", "check_data_settings", "check_device", "check_experiment_config",
           "check_model_settings", "check_profile", "check_train_settings", "data_schema", "data_settings",
           "load_experiment_config", "merge", "overrides_for_upstream", "parse_overrides", "read_config"]

UPSTREAM = "upstream"  # the override section for the run an experiment is pre-trained from
DEVICE_TYPES = ("cpu", "cuda", "mps")


# ------------------------------------------------------------------------------------- experiments


def available_experiments() -> list[str]:
    """The experiment configs in ``petseg/configs/`` (every YAML file but ``data.yaml``), sorted."""
    names = [p.name[:-5] for p in resources.files("petseg").joinpath("configs").iterdir() if p.name.endswith(".yaml")]
    return sorted(n for n in names if n != DATA_CONFIG)


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


# ------------------------------------------------------------------------------------------------ train


def train_schema() -> dict[str, Any]:
    """:class:`petseg.training.config.TrainConfig`'s fields -> their type hints (imports torch)."""
    from petseg.training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return {field.name: hints.get(field.name, Any) for field in dataclasses.fields(TrainConfig)}


def check_train_settings(values: Mapping[str, Any] | None, section: str = "train") -> None:
    """ConfigError unless ``values`` make a valid :class:`petseg.training.config.TrainConfig` (keys, types, ranges)."""
    from petseg.training.config import TrainConfig

    check_keys(section, dict(values or {}), train_schema())
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
    schema.update({key: type_of_example(value) for key, value in examples.items()}, name=Any)
    check_keys("model", model, schema, what=f" for model {name}")
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
            check_keys(section, config[section], {k: type_of_example(v) for k, v in _examples(raw, section).items()})
    check_train_settings(config.get("train"))
    check_data_settings(config.get("data"))
    from petseg.data.labels import check_species_multipliers  # numpy: imported when checking, not at import

    check_species_multipliers((config.get("data") or {}).get("species_multipliers"))
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
