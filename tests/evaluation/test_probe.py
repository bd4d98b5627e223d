"""The linear species probe (petseg.evaluation.probe) on synthetic features and a tiny UNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from petseg.evaluation.probe import encoder_of, pooled_features, species_probe, species_targets, subset
from petseg.models.unet import UNet


def test_the_probe_separates_separable_species_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    species = ["cat"] * 40 + ["dog"] * 80
    signal = species_targets(species)[:, None] * 3.0 + rng.normal(size=(120, 5))
    test_species = ["cat"] * 20 + ["dog"] * 20
    test_signal = species_targets(test_species)[:, None] * 3.0 + rng.normal(size=(40, 5))
    result = species_probe(signal, species, test_signal, test_species)
    assert result["accuracy"] > 0.9 and result["balanced_accuracy"] > 0.9 and result["correct"].shape == (40,)
    assert result["majority_accuracy"] == 0.5
    noise = species_probe(rng.normal(size=(120, 5)), species, rng.normal(size=(40, 5)), test_species)
    assert noise["balanced_accuracy"] < 0.8


def test_probe_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="'cat' or 'dog'"):
        species_targets(["cat", "ferret"])
    with pytest.raises(ValueError, match="both species"):
        species_probe(np.zeros((3, 2)), ["cat"] * 3, np.zeros((1, 2)), ["dog"])


def test_pooled_features_of_a_unet_encoder() -> None:
    torch.manual_seed(0)
    model = UNet(depth=3, base_width=4, max_width=8)
    data = [(torch.rand(3, 32, 32), torch.zeros(32, 32, dtype=torch.long)) for _ in range(5)]
    features = pooled_features(encoder_of(model), data, batch_size=2, module=model)
    assert features.shape == (5, 8) and model.training
    assert len(subset(data, 3)) == 3 and subset(data, None) is data
    with pytest.raises(ValueError, match="no encoder"):
        encoder_of(torch.nn.Linear(2, 2))
