"""The full profile keeps data smaller than its 512 px at the data's own resolution (``cap_at_data_size``)
instead of upsampling it, and says so; the quick and standard profiles resize as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from petseg.config_files import data_settings
from petseg.data.layout import index_dataset
from petseg.data.pipeline import DATA_SIZE_MULTIPLE, data_image_size, prepare_data
from petseg.data.validate import check_dataset
from petseg.experiment import _data_description
from tests.conftest import make_pair, write_official


def resized_official(root: Path, height: int, width: int) -> Path:
    """A small official-layout dataset (3 breeds x 4 images) whose every image is ``height`` x ``width``."""
    write_official(root, per_breed=4)
    for image_path in sorted((root / "images").glob("*.jpg")):
        image, trimap = make_pair(height, width, seed=len(image_path.stem))
        Image.fromarray(image).save(image_path, quality=90)
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{image_path.stem}.png")
    return root


@pytest.fixture
def small_images(tmp_path: Path) -> Path:
    return resized_official(tmp_path / "pets", 100, 150)  # longest side 150 px: below every profile's size


def test_profiles_say_which_upsample() -> None:
    assert data_settings("full")["cap_at_data_size"] is True
    assert data_settings("full")["image_size"] == 512
    for profile in ("quick", "standard"):
        assert data_settings(profile)["cap_at_data_size"] is False
        assert data_settings(profile)["image_size"] == 128


def test_full_profile_keeps_small_data_at_its_own_resolution(small_images: Path, tmp_path: Path) -> None:
    prepared = prepare_data(small_images, "full", cache_dir=tmp_path / "cache", progress=False)
    assert prepared.cache.size == 128  # 150 px rounded down to a multiple of 64, not 512
    assert prepared.config["image_size"] == 512  # the setting itself is unchanged
    assert prepared.image_size_note == ("128 px, the data's own resolution, instead of the configured 512 px: "
                                        "every image is at most 150 px on its longest side, so none was upsampled")
    assert "Preprocessed at 128 px, the data's own resolution, instead of the configured 512 px" in prepared.describe()
    description = _data_description(prepared)
    assert description["image_size"] == 128
    assert description["image_size_note"] == prepared.image_size_note


def test_profiles_without_the_cap_resize_as_configured(small_images: Path, tmp_path: Path) -> None:
    quick = prepare_data(small_images, "quick", cache_dir=tmp_path / "cache", progress=False,
                         overrides={"image_size": 256})
    assert quick.cache.size == 256 and quick.image_size_note == ""  # upsampled: the quick profile asked for it
    assert "image_size_note" not in _data_description(quick)
    assert "Preprocessed at" not in quick.describe()
    off = prepare_data(small_images, "full", cache_dir=tmp_path / "cache", progress=False,
                       overrides={"cap_at_data_size": False})
    assert off.cache.size == 512 and off.image_size_note == ""


def test_data_larger_than_the_size_is_resized_to_it(small_images: Path, tmp_path: Path) -> None:
    prepared = prepare_data(small_images, "full", cache_dir=tmp_path / "cache", progress=False,
                            overrides={"image_size": 64})
    assert prepared.cache.size == 64 and prepared.image_size_note == ""


@pytest.mark.parametrize(("height", "width", "requested", "expected"), [
    (100, 150, 512, 128), (256, 200, 512, 256), (300, 500, 512, 448), (300, 512, 512, 512), (40, 48, 512, 64),
    (40, 48, 64, 64)])
def test_data_image_size_rule(tmp_path: Path, height: int, width: int, requested: int, expected: int) -> None:
    report = check_dataset(index_dataset(resized_official(tmp_path / "pets", height, width)))
    size, note = data_image_size(requested, report)
    assert size == expected and size % DATA_SIZE_MULTIPLE == 0
    assert bool(note) == (size != requested)
    if note and size > max(height, width):
        assert note.endswith(f"and {size} px is the smallest size this rule gives")
