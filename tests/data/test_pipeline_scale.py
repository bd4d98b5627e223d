"""petseg.data.pipeline at any dataset size: capped val/test subsets, test-only datasets, the data paragraph."""

from __future__ import annotations

from collections import Counter

import pytest

from petseg.data.pipeline import prepare_data
from petseg.data.split import stratified_subset
from tests.conftest import write_official


def test_stratified_subset_caps_every_stratum_alike_and_keeps_small_sets_whole():
    stems = [f"{b}_{i}" for b in "abc" for i in range(20)]
    strata = [s[0] for s in stems]
    subset = stratified_subset(stems, strata, 15, seed=0)
    assert len(subset) == 15 and Counter(s[0] for s in subset) == {"a": 5, "b": 5, "c": 5}
    assert subset == stratified_subset(list(reversed(stems)), list(reversed(strata)), 15, seed=0)
    assert stratified_subset(stems, strata, None, seed=0) == sorted(stems)
    assert stratified_subset(stems, strata, 100, seed=0) == sorted(stems)
    with pytest.raises(ValueError):
        stratified_subset(stems, strata, 0, seed=0)


def test_profile_caps_pick_breed_stratified_val_and_test_subsets(official_dataset, tmp_path):
    prepared = prepare_data(official_dataset, "quick", cache_dir=tmp_path, progress=False, image_size=32,
                            overrides={"max_val_images": 2, "max_test_images": 6})
    assert prepared.split.sizes()["test"] == 15 and len(prepared.stems("test")) == 6
    assert Counter(s.split("_")[0] for s in prepared.stems("test")) == {"Abyssinian": 2, "Bengal": 2, "beagle": 2}
    assert len(prepared.dataset("test")) == 6 and len(prepared.dataset("val")) == len(prepared.stems("val")) <= 3
    assert prepared.stems("train") == prepared.split.train
    assert "a breed-stratified subset of 6 of the 15 test images" in prepared.describe()
    assert str(official_dataset.parent) not in prepared.describe()  # no machine path in the book


def test_a_test_only_dataset_prepares_without_training_images(tmp_path):
    root = write_official(tmp_path / "mine", per_breed=4)
    annotations = root / "annotations"
    annotations.joinpath("test.txt").write_text(annotations.joinpath("list.txt").read_text().split("\n", 4)[-1])
    annotations.joinpath("trainval.txt").write_text("")
    prepared = prepare_data(root, "quick", cache_dir=tmp_path / "cache", progress=False, image_size=32)
    assert prepared.split.sizes() == {"train": 0, "val": 0, "test": 12}
    assert prepared.multipliers == {} and len(prepared.dataset("test")) == 12
