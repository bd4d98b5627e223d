"""Shared fixtures: tiny synthetic datasets in the official and course layouts, and the real sample."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SAMPLE_ENV = "PETSEG_SAMPLE"  # not PETSEG_DATA: CI points that at the 37-breed copy the book is built on
DEFAULT_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "oxford-iiit-pet-sample"
PETS37_ENV = "PETSEG_PETS37"
DEFAULT_PETS37 = DEFAULT_SAMPLE.parent / "oxford-iiit-pet-256"

# breed -> (class id, species id) as in the official list.txt
BREEDS = {"Abyssinian": (1, 1), "Bengal": (6, 1), "beagle": (13, 2)}
HEADER = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n#BREED ID: 1-25:Cat 1:12:Dog\n"


def make_pair(height: int = 40, width: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random RGB image and a trimap (1 pet rectangle, 3 border, 2 background)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    trimap = np.full((height, width), 2, np.uint8)
    trimap[height // 4 - 1: 3 * height // 4 + 1, width // 4 - 1: 3 * width // 4 + 1] = 3
    trimap[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1
    return image, trimap


def write_official(root: Path, per_breed: int = 10, header: bool = True) -> Path:
    """Write an official-layout dataset: half of each breed trainval, half test."""
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    lines, trainval, test = [], [], []
    for b, (breed, (class_id, species_id)) in enumerate(BREEDS.items()):
        for i in range(1, per_breed + 1):
            stem = f"{breed}_{i}"
            image, trimap = make_pair(32 + 2 * i, 48, seed=100 * b + i)
            Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=90)
            Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{stem}.png")
            line = f"{stem} {class_id} {species_id} {i}\n"
            lines.append(line)
            (trainval if i <= per_breed // 2 else test).append(line)
    ann = root / "annotations"
    (ann / "list.txt").write_text((HEADER if header else "") + "".join(lines))
    (ann / "trainval.txt").write_text("".join(trainval))
    (ann / "test.txt").write_text("".join(test))
    return root


@pytest.fixture
def official_dataset(tmp_path: Path) -> Path:
    return write_official(tmp_path / "pets")


def write_course(root: Path, per_breed: int = 5, with_splits: bool = False) -> Path:
    """Course layout: color/*.jpg + label/*.png with labels 0/1/2/255."""
    folders = [root / "TrainVal", root / "Test"] if with_splits else [root]
    for folder in folders:
        (folder / "color").mkdir(parents=True)
        (folder / "label").mkdir(parents=True)
    for b, breed in enumerate(BREEDS):
        label_value = 1 if breed[0].isupper() else 2
        for i in range(1, per_breed + 1):
            folder = folders[(i % 2) if with_splits else 0]
            image, trimap = make_pair(30, 30, seed=10 * b + i)
            labels = np.select([trimap == 1, trimap == 2], [label_value, 0], 255).astype(np.uint8)
            Image.fromarray(image).save(folder / "color" / f"{breed}_{i}.jpg")
            Image.fromarray(labels).save(folder / "label" / f"{breed}_{i}.png")
    return root


def real_data(env: str, default: Path, what: str) -> Path:
    """The dataset folder named by ``env`` (else ``default``); skip the test when it is absent."""
    root = Path(os.environ.get(env) or default)
    if not (root / "images").is_dir():
        pytest.skip(f"{what} not found at {root} (set {env})")
    return root


@pytest.fixture
def sample_root() -> Path:
    """The real 600-image sample (PETSEG_SAMPLE or ../shared/data/oxford-iiit-pet-sample); skip if absent."""
    return real_data(SAMPLE_ENV, DEFAULT_SAMPLE, "real sample")


@pytest.fixture
def pets37_root() -> Path:
    """The 37-breed, 256 px copy (PETSEG_PETS37 or ../shared/data/oxford-iiit-pet-256); skip if absent."""
    return real_data(PETS37_ENV, DEFAULT_PETS37, "37-breed data")
