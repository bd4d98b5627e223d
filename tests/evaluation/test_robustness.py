"""The perturbations (identity at level 0, monotone, ranges, determinism) and the sweep on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from petseg.evaluation import robustness as rb


def _image(height: int = 40, width: int = 56, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(30, 226, size=(height, width, 3), dtype=np.uint8)


def _apply(name: str, level: float, image: np.ndarray, seed: int = 0) -> np.ndarray:
    return rb.perturb(image, name, level, rb.image_rng(seed, name, 0))


def test_grid_has_ten_levels_each_starting_at_identity():
    assert len(rb.LEVELS) == 8
    for name, levels in rb.LEVELS.items():
        assert len(levels) == 10, name
    assert rb.LEVELS["gaussian_noise"] == (0, 2, 4, 6, 8, 10, 12, 14, 16, 18)
    assert rb.LEVELS["contrast_decrease"][-1] == 0.10 and rb.LEVELS["contrast_increase"][-1] == 1.25
    assert rb.LEVELS["salt_and_pepper"][-1] == pytest.approx(0.18)
    assert len(rb.grid()) == 80


@pytest.mark.parametrize("name", list(rb.LEVELS))
def test_level_zero_is_identity_and_output_is_uint8_same_shape(name):
    image = _image()
    identity = _apply(name, rb.LEVELS[name][0], image)
    np.testing.assert_array_equal(identity, image)
    strongest = _apply(name, rb.LEVELS[name][-1], image)
    assert strongest.dtype == np.uint8 and strongest.shape == image.shape
    assert not np.array_equal(strongest, image)


@pytest.mark.parametrize("name", [n for n in rb.LEVELS if n != "blur"])
def test_effect_grows_with_level(name):
    image = _image()
    distances = [np.abs(_apply(name, level, image).astype(int) - image).mean() for level in rb.LEVELS[name]]
    assert all(b >= a - 1e-9 for a, b in zip(distances, distances[1:], strict=False)), distances
    assert distances[-1] > distances[1] > 0


def test_blur_removes_more_detail_at_each_level():
    image = _image()
    variation = [np.abs(np.diff(_apply("blur", n, image).astype(int), axis=1)).mean() for n in rb.LEVELS["blur"]]
    assert all(b < a for a, b in zip(variation, variation[1:], strict=False)), variation


@pytest.mark.parametrize("name", ["gaussian_noise", "occlusion", "salt_and_pepper"])
def test_random_perturbations_are_seeded(name):
    image = _image()
    level = rb.LEVELS[name][5]
    np.testing.assert_array_equal(_apply(name, level, image, seed=3), _apply(name, level, image, seed=3))
    assert not np.array_equal(_apply(name, level, image, seed=3), _apply(name, level, image, seed=4))
    with pytest.raises(ValueError, match="seeded"):
        rb.perturb(image, name, level)


def test_values_and_clipping():
    white = np.full((4, 4, 3), 250, np.uint8)
    assert rb.shift_brightness(white, 45).max() == 255
    assert rb.shift_brightness(np.full((4, 4, 3), 10, np.uint8), -45).min() == 0
    np.testing.assert_array_equal(rb.scale_contrast(np.full((2, 2, 3), 100, np.uint8), 0.1), 10)
    np.testing.assert_array_equal(rb.scale_contrast(white, 1.25), 255)
    flat = np.full((9, 9, 3), 77, np.uint8)
    np.testing.assert_array_equal(rb.blur(flat, 9), flat)  # a mean filter keeps a constant image
    image = _image()
    noisy = rb.salt_and_pepper(image, 0.18, np.random.default_rng(0))
    changed = noisy != image
    assert set(np.unique(noisy[changed])) <= {0, 255}
    assert 0.14 < (np.isin(noisy, (0, 255)) & changed).mean() < 0.20


def test_occlusion_box_is_black_square_with_fixed_centre():
    image = np.full((100, 120, 3), 200, np.uint8)
    small = rb.occlude(image, 10, np.random.default_rng(1))
    large = rb.occlude(image, 30, np.random.default_rng(1))
    assert (small == 0).all(axis=2).sum() <= 100 and (small == 0).any()
    assert ((small == 0) <= (large == 0)).all()  # nested: same centre, larger box


def test_salt_and_pepper_is_nested_across_levels():
    image = _image()
    low, high = (_apply("salt_and_pepper", a, image) for a in (0.04, 0.12))
    assert ((low != image) <= (high != image)).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="uint8"):
        rb.blur(np.zeros((4, 4, 3), np.float32), 1)
    with pytest.raises(ValueError, match="unknown perturbation"):
        rb.perturb(_image(), "fog", 1)
    with pytest.raises(ValueError, match="kernel"):
        rb.blur(_image(), 1, kernel="median")
    with pytest.raises(ValueError, match="amount"):
        rb.salt_and_pepper(_image(), 1.5, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------------ sweep


class BrightIsPet(torch.nn.Module):
    """Tiny 'model': cat where the red channel is bright, background elsewhere (dog never)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        red = images[:, 0]
        return torch.stack([0.5 - red, red - 0.5, torch.full_like(red, -1.0)], dim=1)


def _sweep_images() -> rb.SweepImages:
    images, masks = [], []
    for seed in range(3):
        image = np.full((16, 32, 3), 40, np.uint8)  # 32 px wide: no resizing at 32 px, 16 rows of padding
        mask = np.zeros((16, 32), np.uint8)
        image[4:12, 8 + seed:24] = 220
        mask[4:12, 8 + seed:24] = 1
        mask[4, 8 + seed:24] = 255  # a trimap border row
        images.append(image)
        masks.append(mask)
    return rb.SweepImages(["a", "b", "c"], images, masks, note="3 synthetic images")


def test_sweep_scores_a_perfect_model_and_degrades_it():
    predictors = {"bright": rb.ModelPredictor(BrightIsPet(), image_size=32),
                  "binary": rb.FunctionPredictor(lambda x, m: (x[..., 0] > 127).astype(np.int64), 32, binary=True)}
    table = rb.sweep(predictors, _sweep_images(), ["brightness_decrease", "contrast_decrease"])
    assert len(table) == 2 * 2 * 10
    clean = table[table.level_index == 0]
    assert clean[clean.model == "bright"].mdice.iloc[0] == pytest.approx(1.0, abs=1e-3)  # pad/border ignored
    assert clean.pet_dice.min() > 0.99
    assert table[table.model == "binary"].mdice.isna().all()
    assert (table[table.level_index == 0].groupby("model").pet_dice.nunique() == 1).all()  # one clean score
    darker = table[(table.model == "bright") & (table.perturbation == "contrast_decrease")].sort_values("level_index")
    assert darker.mdice.iloc[-1] < 0.5  # at factor 0.1 nothing is bright any more
    assert list(darker.level) == list(rb.LEVELS["contrast_decrease"])


class ClickedRegion(torch.nn.Module):
    """Tiny 'prompted model': 4 candidate masks, the best-scored allowed one is 'pet wherever red is bright'."""

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        assert masks.shape == images.shape[:1] + images.shape[2:]  # the clean masks reach the model
        good = images[:, 0] - 0.5
        logits = torch.stack([-good, good, -torch.ones_like(good), good], dim=1)
        iou = torch.tensor([[0.9, 0.8, 0.1, 0.2]]).expand(len(images), 4)
        candidates = torch.tensor([[False, True, True, True]]).expand(len(images), 4)
        return {"logits": logits, "iou_predictions": iou, "candidates": candidates}


def test_prompted_predictor_takes_best_allowed_candidate():
    table = rb.sweep({"sam": rb.PromptedPredictor(ClickedRegion(), 32)}, _sweep_images(), ["blur"])
    clean = table[table.level_index == 0].iloc[0]
    assert clean.pet_dice == pytest.approx(1.0, abs=1e-3) and np.isnan(clean.mdice)
    assert rb.pet_logits(torch.zeros(2, 1, 4, 4)).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="pet logits"):
        rb.pet_logits(torch.zeros(2, 3, 4, 4))


def test_sweep_rejects_wrong_label_shape():
    bad = rb.FunctionPredictor(lambda x, m: np.zeros((1, 5, 5), np.int64), 32)
    with pytest.raises(ValueError, match="shape"):
        rb.sweep({"bad": bad}, _sweep_images(), ["blur"])


def test_cached_sweep_writes_provenance_and_reuses(tmp_path):
    calls = []

    def predict(images, masks):
        calls.append(len(images))
        return np.where(masks == 255, 0, masks).astype(np.int64)  # the truth: a perfect model

    predictors = {"truth": (rb.FunctionPredictor(predict, 24), {"run": "truth-v1"}, tmp_path)}
    first = rb.cached_sweep(predictors, _sweep_images(), ["occlusion"], seed=1)
    assert len(calls) == 10 and first.mdice.min() == pytest.approx(1.0)
    rb.cached_sweep({"other": (rb.FunctionPredictor(predict, 24), {"run": "other"}, tmp_path / "other")},
                    _sweep_images(), ["occlusion", "blur"], seed=1)
    assert len(calls) == 29  # 2 x 10 conditions, the shared clean condition evaluated once
    csv = list(tmp_path.glob("robustness-*.csv"))
    assert len(csv) == 1
    provenance = json.loads(csv[0].with_suffix(".json").read_text())
    assert provenance["identity"] == {"run": "truth-v1"} and provenance["images"] == "3 synthetic images"
    again = rb.cached_sweep(predictors, _sweep_images(), ["occlusion"], seed=1)
    assert len(calls) == 29  # reused, not recomputed
    pd.testing.assert_frame_equal(first.reset_index(drop=True), again, check_dtype=False)
    rb.cached_sweep(predictors, _sweep_images(), ["occlusion"], seed=2)  # another seed: a new table
    assert len(calls) == 39


def test_summary_reports_drop():
    table = rb.sweep({"bright": rb.ModelPredictor(BrightIsPet(), 32)}, _sweep_images(), ["contrast_decrease"])
    row = rb.summary(table).iloc[0]
    assert row["clean"] == pytest.approx(1.0, abs=1e-3) and row["drop"] > 0.5


@pytest.mark.integration
def test_sweep_images_match_the_preprocessed_cache(sample_root, tmp_path):
    from petseg.data.pipeline import prepare_data

    sample_prepared = prepare_data(sample_root, "quick", cache_dir=tmp_path, progress=False)
    images = rb.sweep_images(sample_prepared, limit=5, seed=0)
    assert len(images.stems) == 5 and "subset" in images.note
    size = sample_prepared.cache.size
    for stem, mask in zip(images.stems, images.masks_at(size), strict=True):
        np.testing.assert_array_equal(mask, sample_prepared.preprocessed(stem)[1])
