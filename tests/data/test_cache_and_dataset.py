import json
import os

import numpy as np
import pytest
import torch

import petseg.data.cache as cache_module
from petseg.config_files import data_settings
from petseg.data.cache import PreprocessedCache, build_cache, cache_key
from petseg.data.dataset import PetSegDataset, balancing_multipliers, expand_by_species
from petseg.data.pipeline import prepare_data
from petseg.data.transforms import CheckedAugmentation
from petseg.data.validate import check_dataset
from tests.conftest import make_pair


def test_cache_builds_once_and_reopens(official_dataset, tmp_path):
    report = check_dataset(official_dataset)
    cache = build_cache(report, 32, tmp_path / "cache", progress=False)
    assert cache.images.shape == (30, 32, 32, 3) and cache.masks.shape == (30, 32, 32)
    assert cache.path.name == cache_key(report.fingerprint, 32)
    mtime = os.stat(cache.path / "images.npy").st_mtime_ns
    again = build_cache(report, 32, tmp_path / "cache", progress=False)
    assert os.stat(again.path / "images.npy").st_mtime_ns == mtime
    assert set(np.unique(again.masks)) <= {0, 1, 2, 255}


def test_cache_rebuilds_when_data_or_parameters_change(official_dataset, tmp_path):
    first = build_cache(check_dataset(official_dataset), 32, tmp_path / "c", progress=False)
    other_size = build_cache(check_dataset(official_dataset), 48, tmp_path / "c", progress=False)
    assert other_size.path != first.path
    from PIL import Image

    Image.fromarray(make_pair(34, 48, seed=77)[0]).save(official_dataset / "images" / "Abyssinian_1.jpg")
    changed = build_cache(check_dataset(official_dataset), 32, tmp_path / "c", progress=False)
    assert changed.path != first.path


def test_killed_cache_build_leaves_nothing_that_looks_complete(official_dataset, tmp_path, monkeypatch):
    report = check_dataset(official_dataset)
    calls = {"n": 0}
    original = cache_module.resize_and_pad

    def dying_resize(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(cache_module, "resize_and_pad", dying_resize)
    with pytest.raises(KeyboardInterrupt):
        build_cache(report, 32, tmp_path / "c", progress=False)
    final = tmp_path / "c" / cache_key(report.fingerprint, 32)
    assert not final.exists()
    assert not list((tmp_path / "c").glob(".*partial*"))
    # a stale partial folder from a hard kill is removed and ignored by the next build
    stale = tmp_path / "c" / f".{final.name}.partial-999999"
    stale.mkdir()
    (stale / "meta.json").write_text(json.dumps({"complete": True}))
    monkeypatch.setattr(cache_module, "resize_and_pad", original)
    built = build_cache(report, 32, tmp_path / "c", progress=False)
    assert built.path == final and not stale.exists()
    with pytest.raises(FileNotFoundError):
        (final / "meta.json").write_text(json.dumps({"complete": False}))
        PreprocessedCache.open(final)


def test_multipliers_and_balancing():
    assert expand_by_species(["cat", "dog"], {"cat": 3, "dog": 1}) == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert balancing_multipliers({"cat": 100, "dog": 200}) == {"cat": 2, "dog": 1}
    assert balancing_multipliers({"cat": 10, "dog": 200}, max_multiplier=5) == {"cat": 5, "dog": 1}
    with pytest.raises(ValueError):
        expand_by_species(["cat"], {"cat": 0})


def test_dataset_items_and_augmented_copies(official_dataset, tmp_path):
    cache = build_cache(check_dataset(official_dataset), 32, tmp_path / "c", progress=False)
    stems = cache.stems[:4] + [s for s in cache.stems if s.startswith("beagle")][:2]
    dataset = PetSegDataset(cache, stems, CheckedAugmentation(), multipliers={"cat": 5, "dog": 2}, seed=0)
    assert len(dataset) == 4 * 5 + 2 * 2
    assert dataset.species_counts() == {"cat": 20, "dog": 4}
    assert dataset.species_counts(expanded=False) == {"cat": 4, "dog": 2}
    image, mask = dataset[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert mask.dtype == torch.int64
    original = cache.images[cache.position(stems[0])]
    assert np.array_equal(dataset.raw(0)[0], original)  # copy 0 is the original
    assert np.array_equal(dataset.raw(1)[0], dataset.raw(1)[0])  # seeded
    first_epoch = dataset.raw(1)[0]
    dataset.set_epoch(1)
    assert not np.array_equal(dataset.raw(1)[0], first_epoch)  # fresh draw per epoch
    padding = dataset.padding(0)  # 40x60 photos: bands of padding above and below
    assert padding.shape == (32, 32) and padding.any() and not padding.all()
    assert (dataset.raw(0)[1][padding] == 255).all() and (dataset.raw(0)[0][padding] == 0).all()
    assert padding[0].all() and not padding[16].any()
    with pytest.raises(ValueError, match="augmented copy"):
        dataset.padding(1)
    with pytest.raises(KeyError):
        PetSegDataset(cache, ["nope_1"])


def test_prepare_data_and_config(official_dataset, tmp_path):
    assert data_settings("full")["image_size"] == 512
    with pytest.raises(ValueError):
        data_settings("huge")
    prepared = prepare_data(official_dataset, "quick", image_size=32, cache_dir=tmp_path / "c", progress=False)
    assert prepared.split.sizes() == {"train": 12, "val": 3, "test": 15}
    assert prepared.split_path.exists()
    assert prepared.multipliers == {"cat": 1, "dog": 2}  # "balance": this split has 8 cats, 4 dogs
    assert len(prepared.dataset("train")) == 8 * 1 + 4 * 2
    study = prepare_data(official_dataset, "quick", image_size=32, cache_dir=tmp_path / "c", progress=False,
                         overrides={"species_multipliers": {"cat": 5, "dog": 2}})
    assert len(study.dataset("train")) == 8 * 5 + 4 * 2
    assert len(prepared.dataset("train", augment=False)) == 12
    assert len(prepared.dataset("test")) == 15
