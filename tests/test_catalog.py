"""The model catalog: unique keys, valid experiments, runs keyed like run_experiment's."""

import pytest

from petseg import catalog
from petseg.experiment import available_experiments, load_experiment_config


def test_every_spec_names_an_existing_experiment_and_a_known_task():
    assert catalog.models(), "the catalog is empty"
    for spec in catalog.models():
        assert spec.experiment in available_experiments(), spec
        assert spec.task in ("segmentation", "prompted"), spec
        load_experiment_config(spec.experiment, "quick", spec.overrides)  # overrides merge cleanly


def test_register_rejects_a_duplicate_key_and_get_names_valid_keys():
    with pytest.raises(ValueError, match="already"):
        catalog.register(catalog.ModelSpec("unet", "again", "unet", chapter="02_unet"))
    with pytest.raises(ValueError, match="valid: unet"):
        catalog.get("no-such-model")


def test_models_filters_by_task():
    assert all(spec.task == "segmentation" for spec in catalog.models("segmentation"))
    assert [s.key for s in catalog.models()][:3] == ["unet", "ae_unet_frozen", "ae_unet_finetuned"]
