"""petseg.config: the merge equals the recursive dict merge it replaces, the schema is derived from the code
and config files, and every shipped config and catalog variant passes its own checks."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from petseg import config as settings
from petseg.catalog import CATALOG
from petseg.errors import ConfigError, UserError
from petseg.profiles import PROFILES


def reference_merge(base: dict, update: dict) -> dict:
    """The hand-written merge petseg used before OmegaConf (experiment.deep_merge)."""
    merged = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = reference_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def reference_load(name: str, profile: str, overrides: dict | None = None) -> dict:
    raw = settings.read_config(name)
    profiles = raw.pop("profiles", {})
    config = reference_merge(reference_merge(raw, profiles.get(profile, {})), overrides or {})
    config.update(experiment=name, profile=profile)
    return config


OVERRIDES = [None, {"train": {"epochs": 3, "lr": 1, "num_workers": 12, "class_weights": [1, 2, 3]}},
             {"data": {"species_multipliers": {"cat": 5, "dog": 2}, "image_size": 256}},
             {"data": {"species_multipliers": None}}]


@pytest.mark.parametrize("profile", PROFILES)
def test_configs_are_the_same_as_with_the_old_merge(profile: str) -> None:
    """Same resolved configs (types included, so ints stay ints) -> same run keys -> cached runs stay valid."""
    cases = [(name, None) for name in settings.available_experiments()]
    cases += [(spec.experiment, spec.overrides) for spec in CATALOG.values()]
    cases += [("fusion_unet", {"model": {"global_encoder": {"backend": "clip", "model_name": "ViT-B-16",
                                                          "image_size": None}}}),
              ("ae_unet", {"train": {"epochs": 1}, "upstream": {"train": {"epochs": 32}}})]
    for name, own in cases:
        for extra in OVERRIDES:
            overrides = reference_merge(own or {}, extra or {})
            expected = reference_load(name, profile, overrides)
            assert json.dumps(settings.load_experiment_config(name, profile, overrides)) == json.dumps(expected)


def test_merge_semantics() -> None:
    assert settings.merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    assert settings.merge({"s": "balance"}, {"s": {"cat": 5}}) == {"s": {"cat": 5}}
    assert settings.merge({"s": {"cat": 5}}, {"s": None}) == {"s": None}
    assert settings.merge({"l": [1, 2]}, {"l": [3]}) == {"l": [3]}
    assert settings.merge({"x": "${y}"}, {"z": 1}) == {"x": "${y}", "z": 1}  # no interpolation
    merged = settings.merge({"x": 1}, {"y": 2.0})
    assert type(merged["x"]) is int and type(merged["y"]) is float
    base = {"a": {"b": [1]}}
    settings.merge(base, {"a": {"b": [2]}})["a"]["b"].append(3)
    assert base == {"a": {"b": [1]}}  # a copy
    with pytest.raises(ConfigError, match="'\\?\\?\\?' is not a value"):
        settings.merge({"a": 1}, {"a": "???"})
    with pytest.raises(ConfigError, match="cannot merge"):
        settings.merge({"a": {"b": 1}}, {"a": [1]})


def test_schema_is_derived_from_the_code_and_the_config_files() -> None:
    from petseg.data.cache import default_cache_dir
    from petseg.data.locate import default_cache_dir as light_cache_dir
    from petseg.data.locate import default_download_dir as light_download_dir
    from petseg.data.pipeline import default_download_dir
    from petseg.training.config import TrainConfig

    assert light_cache_dir() == default_cache_dir() and light_download_dir() == default_download_dir()
    assert set(settings.train_schema()) == {field.name for field in dataclasses.fields(TrainConfig)}
    data = settings.read_config("data")
    assert tuple(data["profiles"]) == PROFILES
    keys = set(data) | {key for values in data["profiles"].values() for key in values}
    assert set(settings.data_schema()) == keys - {"profiles"}
    assert settings.sections("unet") == ["data", "model", "train"]
    assert settings.sections("ae_unet") == ["data", "model", "train", "upstream"]
    assert "evaluation" in settings.sections("sam2_hiera")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"train": {"epochs": True}}, "train.epochs must be an integer, got True"),
    ({"train": {"grad_clip": "high"}}, "train.grad_clip must be a number or null"),
    ({"train": {"class_weights": [1, -1, 1]}}, "train.class_weights must have every value >= 0"),
    ({"train": {"scheduler": "linear"}}, "train: scheduler must be one of"),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction must be > 0 and < 1, got 1.5"),
    ({"data": {"species_multipliers": {"horse": 2}}}, "unknown species ['horse']"),
    ({"data": {"profile": "full"}}, "unknown setting data.profile"),
    ({"model": {"dropout": 1}}, "model.dropout must be >= 0 and < 1"),
    ({"model": {"name": "resnet"}}, "model.name must be one of"),
    ({"model": {"depth": 8}}, "data.image_size=128 does not fit model unet"),
])
def test_checks_name_the_setting(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings.load_experiment_config("unet", "quick", overrides)
    assert message in str(error.value)
    assert isinstance(error.value, UserError) and isinstance(error.value, ValueError)


def test_sam2_image_size_and_evaluation_section() -> None:
    with pytest.raises(ConfigError, match="model.image_size: image_size must be a positive multiple of 64"):
        settings.load_experiment_config("sam2_effnet", "quick", {"model": {"image_size": 100}})
    with pytest.raises(ConfigError, match="unknown setting evaluation.clicks"):
        settings.load_experiment_config("sam2_effnet", "quick", {"evaluation": {"clicks": 3}})
    with pytest.raises(ConfigError, match="evaluation.max_clicks must be >= 1"):
        settings.load_experiment_config("sam2_effnet", "quick", {"evaluation": {"max_clicks": 0}})
    with pytest.raises(ConfigError, match="unknown section 'evaluation'"):
        settings.load_experiment_config("unet", "quick", {"evaluation": {"max_clicks": 3}})


def test_parse_overrides() -> None:
    assert settings.parse_overrides(["train.lr=1e-3", "model.global_encoder={backend: clip}"]) == {
        "train": {"lr": 1e-3}, "model": {"global_encoder": {"backend": "clip"}}}
    with pytest.raises(ConfigError, match="not valid YAML"):
        settings.parse_overrides(["train.epochs=[1,2"])
    with pytest.raises(ConfigError, match="conflicts"):
        settings.parse_overrides(["model.global_encoder.backend=clip", "model.global_encoder=3"])


def test_device_check() -> None:
    assert settings.check_device(None) is None and settings.check_device("auto") == "auto"
    assert settings.check_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="unknown --device 'tpu'; devices on this machine: auto, cpu"):
        settings.check_device("tpu")
    if "cuda" not in settings.available_devices():
        with pytest.raises(ConfigError, match="'cuda:0' is not available on this machine"):
            settings.check_device("cuda:0")
    with pytest.raises(ConfigError, match="unknown --device"):
        settings.check_device("meta")
