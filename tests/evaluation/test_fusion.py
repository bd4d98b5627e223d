"""Tests for petseg.evaluation.fusion: what a fusion UNet's global vector changes (chapters 4 and 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from petseg.evaluation.fusion import block_artifact_score, swap_vectors
from petseg.models import build_model
from petseg.models.fusion_unet import FusionUNet
from petseg.models.unet import UNet

torch.set_num_threads(1)

SMALL_UNET = {"depth": 3, "base_width": 8, "max_width": 16, "dropout": 0.0}
EFFNET_32 = {"backend": "efficientnet_lite0", "image_size": 32}


def small_fusion(fusion: str) -> FusionUNet:
    torch.manual_seed(0)
    return build_model({"name": "fusion_unet", "fusion": fusion, "global_encoder": EFFNET_32, **SMALL_UNET})


def test_swap_vectors_changes_only_what_the_vector_changes() -> None:
    model = small_fusion("concat")
    with torch.no_grad():
        model.projection.weight.mul_(50)  # make the vector matter
    images, donors = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = swap_vectors(model, images, donors)
    assert out["own"].shape == out["swapped"].shape == (2, 3, 32, 32)
    assert out["margin_change"].shape == (2, 32, 32) and np.abs(out["margin_change"]).max() > 0
    same = swap_vectors(model, images, images)
    np.testing.assert_allclose(same["margin_change"], 0, atol=1e-5)
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="same shape"):
        swap_vectors(model, images, donors[:1])


def test_block_artifact_score_separates_blocky_from_smooth_maps() -> None:
    rng = np.random.default_rng(0)
    blocky = np.kron(rng.normal(size=(4, 4)), np.ones((32, 32)))
    ramp = np.add.outer(np.linspace(0, 1, 128), np.linspace(0, 2, 128))
    assert block_artifact_score(blocky, 32) == pytest.approx(127 / 3)
    assert block_artifact_score(ramp, 32) == pytest.approx(1.0)
    assert block_artifact_score(rng.normal(size=(2, 128, 128)), 32) == pytest.approx(1.0, abs=0.1)
    assert np.isnan(block_artifact_score(np.zeros((64, 64)), 32))
    with pytest.raises(ValueError, match="larger than block"):
        block_artifact_score(np.zeros((16, 16)), 32)


def test_other_species_donors_pairs_cats_with_dogs() -> None:
    from petseg.evaluation.fusion import other_species_donors

    masks = np.zeros((5, 4, 4), np.uint8)
    masks[0, 1, 1] = masks[2, 0, 0] = 1  # cats 0, 2
    masks[1, 2, 2] = masks[3, 3, 3] = 2  # dogs 1, 3; image 4 shows no pet
    masks[3, 0, 0] = 255
    assert other_species_donors(masks).tolist() == [1, 0, 3, 2, 4]
    assert other_species_donors(masks[[0, 2]]).tolist() == [0, 1]  # one species only: no swap


def test_fusion_diagnostics_measures_fused_and_plain_models() -> None:
    from petseg.evaluation.fusion import fusion_diagnostics

    generator = torch.Generator().manual_seed(0)
    dataset = []
    for index in range(4):
        mask = torch.zeros(32, 32, dtype=torch.int64)
        mask[8:24, 8:24] = 1 + index % 2
        dataset.append((torch.rand(3, 32, 32, generator=generator), mask))
    concat = small_fusion("concat")
    with torch.no_grad():
        concat.projection.weight.mul_(50)
    plain = UNet(n_classes=3, **SMALL_UNET)
    table = fusion_diagnostics({"concat": concat, "film at init": small_fusion("film"), "plain": plain},
                               dataset, block=8, batch_size=3)
    assert list(table.index) == ["concat", "film at init", "plain"]
    assert table.loc["concat", "|margin change| pet"] > 0
    assert table.loc["film at init", "pet pixels flipped (%)"] == 0  # FiLM starts as the identity
    assert table.loc["film at init", "|margin change| pet"] == 0
    assert np.isnan(table.loc["plain", "pet pixels flipped (%)"])
    assert table["blockiness of the prediction"].notna().all()


def test_swap_with_other_species_pairs_each_shown_image_with_a_donor_of_the_other_species() -> None:
    from petseg.evaluation.fusion import swap_with_other_species

    model = small_fusion("concat")
    generator = torch.Generator().manual_seed(0)
    dataset = []
    for label in (1, 2, 1, 2, 2):
        mask = torch.zeros(32, 32, dtype=torch.long)
        mask[8:24, 8:24] = label
        dataset.append((torch.rand(3, 32, 32, generator=generator), mask))
    out = swap_with_other_species(model, dataset, [0, 1, 4])
    assert out["donors"] == [1, 0, 0]  # cat 0 <- dog 1, dog 1 <- cat 0, the third dog <- cat 0 (2 mod 2)
    assert out["images"].shape == (3, 32, 32, 3) and out["images"].dtype == np.uint8
    np.testing.assert_array_equal(out["images"][2], (dataset[4][0].permute(1, 2, 0).numpy() * 255).round())
    reference = swap_vectors(model, torch.stack([dataset[i][0] for i in (0, 1, 4)]),
                             torch.stack([dataset[i][0] for i in (1, 0, 0)]))
    np.testing.assert_allclose(out["margin_change"], reference["margin_change"])
    assert "padding" not in out  # a plain list of pairs does not know its padding
