"""petseg.data.duplicates: the same photograph under two names is found, different photographs are not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from petseg.data.duplicates import difference_hash, duplicate_groups, group_of, hamming_distances, thumbnail
from petseg.data.layout import index_dataset
from petseg.data.split import make_split
from petseg.data.validate import check_dataset
from tests.conftest import make_pair, write_official


def smooth_image(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A photo-like image (smooth gradients), so resizing keeps its structure."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def test_resized_copy_has_the_same_hash_and_other_photos_do_not():
    photo = smooth_image(0)
    copy = np.asarray(Image.fromarray(photo).resize((100, 75), Image.Resampling.LANCZOS))
    other = smooth_image(1)
    distances = hamming_distances(np.array([difference_hash(photo)], dtype=np.uint64),
                                  np.array([difference_hash(copy), difference_hash(other)], dtype=np.uint64))
    assert distances[0, 0] <= 4 < distances[0, 1]


def test_groups_need_both_hash_and_thumbnail_agreement():
    photos = {"a_1": smooth_image(0), "a_2": smooth_image(0)[:, ::1], "b_1": smooth_image(1), "c_1": smooth_image(2)}
    photos["a_3"] = np.asarray(Image.fromarray(photos["a_1"]).resize((64, 48)))
    hashes = {stem: difference_hash(image) for stem, image in photos.items()}
    thumbnails = {stem: thumbnail(image) for stem, image in photos.items()}
    assert duplicate_groups(hashes, thumbnails) == [["a_1", "a_2", "a_3"]]
    # same hash, different thumbnails (a forced collision): not a duplicate
    forced = {**hashes, "c_1": hashes["b_1"]}
    assert ["b_1", "c_1"] not in duplicate_groups(forced, thumbnails)
    assert group_of([["a_1", "a_2"]]) == {"a_1": "a_1", "a_2": "a_1"}


def _copy_photo(root, source: str, target: str) -> None:
    Image.open(root / "images" / f"{source}.jpg").resize((40, 30)).save(root / "images" / f"{target}.jpg")
    Image.open(root / "annotations" / "trimaps" / f"{source}.png").resize((40, 30), Image.Resampling.NEAREST).save(
        root / "annotations" / "trimaps" / f"{target}.png")


@pytest.fixture
def pets_with_duplicates(tmp_path):
    root = write_official(tmp_path / "pets", per_breed=10)
    for stem in [f"beagle_{i}" for i in range(1, 11)]:  # photo-like images, so hashes are meaningful
        image, trimap = make_pair(36, 48, seed=int(stem.split("_")[1]))
        Image.fromarray(smooth_image(int(stem.split("_")[1]) + 50, 36, 48)).save(root / "images" / f"{stem}.jpg")
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{stem}.png")
    _copy_photo(root, "beagle_1", "beagle_2")   # both trainval (1-5 trainval, 6-10 test)
    _copy_photo(root, "beagle_3", "beagle_7")   # trainval copy of a test photograph
    return root


def test_split_keeps_groups_together_and_leaves_out_trainval_copies_of_test_photos(pets_with_duplicates):
    report = check_dataset(pets_with_duplicates)
    groups = [group for group in report.duplicates if group[0].startswith("beagle")]
    assert ["beagle_1", "beagle_2"] in groups and ["beagle_3", "beagle_7"] in groups
    table = {tuple(row["stems"]): row["crosses_trainval_test"] for row in report.summary()["duplicates"]}
    assert table[("beagle_3", "beagle_7")] and not table[("beagle_1", "beagle_2")]
    for seed in range(5):
        split = make_split(report.usable, val_fraction=0.4, seed=seed, duplicates=report.duplicates)
        assert split.dropped_duplicates == ["beagle_3"] and "beagle_7" in split.test
        assert ({"beagle_1", "beagle_2"} <= set(split.train)) or ({"beagle_1", "beagle_2"} <= set(split.val))


def test_check_results_are_cached_by_fingerprint(pets_with_duplicates, tmp_path, monkeypatch):
    from petseg.data import validate

    first = check_dataset(pets_with_duplicates, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "checks").glob("*.json"))
    validate._CHECKS.clear()
    monkeypatch.setattr(validate, "load_pair", lambda sample: pytest.fail("decoded again"))
    again = check_dataset(pets_with_duplicates, cache_dir=tmp_path / "cache")
    assert [s.stem for s in again.usable] == [s.stem for s in first.usable]
    assert again.duplicates == first.duplicates and again.fingerprint == first.fingerprint


@pytest.mark.integration
def test_the_37_breed_copy_has_cross_list_duplicates(pets37_root, tmp_path):
    report = check_dataset(index_dataset(pets37_root), cache_dir=tmp_path)
    rows = report.summary()["duplicates"]
    assert 20 <= len(rows) <= 120
    assert any(row["crosses_trainval_test"] for row in rows)
    assert sum(stem.startswith("Bombay") for row in rows for stem in row["stems"]) >= 20
