"""Torch Datasets over the preprocessed cache, with per-species multipliers and augmentation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from petseg.data.cache import PreprocessedCache
from petseg.data.transforms import CheckedAugmentation, padding_mask


def balancing_multipliers(species_counts: Mapping[str, int], max_multiplier: int = 5) -> dict[str, int]:
    """Integer multipliers that bring every species close to the most frequent one (capped)."""
    largest = max(species_counts.values())
    return {name: max(1, min(max_multiplier, round(largest / count))) for name, count in species_counts.items() if count}


def expand_by_species(species: list[str], multipliers: Mapping[str, int] | None) -> list[tuple[int, int]]:
    """(sample position, copy number) for every item: copy 0 is the original, copies 1.. are augmented."""
    items = []
    for position, name in enumerate(species):
        copies = int(multipliers.get(name, 1)) if multipliers else 1
        if copies < 1:
            raise ValueError(f"multiplier for {name!r} must be >= 1, got {copies}")
        items += [(position, k) for k in range(copies)]
    return items


def padding_of(dataset: Any, indices: Sequence[int]) -> np.ndarray | None:
    """Bool [N, S, S]: the padding of ``indices`` (:meth:`PetSegDataset.padding`), or None for a dataset that
    does not know its padding (e.g. a plain list of pairs)."""
    if not hasattr(dataset, "padding"):
        return None
    return np.stack([dataset.padding(i) for i in indices])


class PetSegDataset(Dataset):
    """Items are ``(image, mask)``: float32 [3, S, S] in [0, 1] and int64 [S, S] in {0, 1, 2, 255}.

    ``stems`` picks the samples of one split from the cache. With ``multipliers`` (e.g. cats 5, dogs 2)
    every sample of a species appears that many times per epoch: once as is, the other times augmented
    (a fresh, seeded draw per epoch; call :meth:`set_epoch`). Without augmentation every copy is the
    original.
    """

    def __init__(self, cache: PreprocessedCache, stems: list[str], augmentation: CheckedAugmentation | None = None,
                 multipliers: Mapping[str, int] | None = None, seed: int = 0):
        missing = [s for s in stems if s not in cache.stems]
        if missing:
            raise KeyError(f"{len(missing)} stem(s) not in the cache, e.g. {missing[:3]}")
        self.cache = cache
        self.stems = list(stems)
        self.positions = [cache.position(s) for s in self.stems]
        self.species = [cache.species[p] for p in self.positions]
        self.augmentation = augmentation
        self.multipliers = dict(multipliers) if multipliers else None
        self.items = expand_by_species(self.species, self.multipliers)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def species_counts(self, expanded: bool = True) -> dict[str, int]:
        if expanded:
            return dict(sorted(Counter(self.species[i] for i, _ in self.items).items()))
        return dict(sorted(Counter(self.species).items()))

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 image and mask of item ``index`` (augmented for copies > 0)."""
        position, copy = self.items[index]
        image = np.array(self.cache.images[self.positions[position]])  # copy out of the read-only memmap
        mask = np.array(self.cache.masks[self.positions[position]])
        if self.augmentation is not None and copy > 0:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
            image, mask = self.augmentation(image, mask, seed=seed)
        return image, mask

    def padding(self, index: int) -> np.ndarray:
        """Bool [S, S]: True where item ``index`` is padding rather than photo (un-augmented items only:
        an augmented copy's warp moves the photo, so asking for one is an error)."""
        position, copy = self.items[index]
        if self.augmentation is not None and copy > 0:
            raise ValueError(f"item {index} is an augmented copy: its padding is not tracked")
        cache_position = self.positions[position]
        return padding_mask(self.cache.original_sizes[cache_position], self.cache.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.raw(index)
        # convert in numpy: torch's intra-op threads make this small op slow on a busy machine
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(255))
        return image_t, torch.from_numpy(mask.astype(np.int64))
