"""Label conventions shared by every model, metric and figure.

Pixels are 0 background, 1 cat, 2 dog, 255 ignore. 255 marks the trimap's uncertain border *and* the
padding added around resized images; losses and metrics skip it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from petseg.errors import ConfigError

BACKGROUND, CAT, DOG = 0, 1, 2
IGNORE_INDEX = 255
CLASS_NAMES = ("background", "cat", "dog")
NUM_CLASSES = len(CLASS_NAMES)
BINARY_CLASS_NAMES = ("background", "pet")
VALID_LABELS = frozenset({BACKGROUND, CAT, DOG, IGNORE_INDEX})
SPECIES = ("cat", "dog")
SPECIES_LABEL = {"cat": CAT, "dog": DOG}


def check_species_multipliers(value: Any, setting: str = "data.species_multipliers") -> None:
    """ConfigError when per-species multipliers name a species other than :data:`SPECIES` ('balance' and null pass;
    their form and values are checked with the other settings, :mod:`petseg.config_files`)."""
    if isinstance(value, Mapping):
        unknown = sorted(str(key) for key in value if key not in SPECIES)
        if unknown:
            raise ConfigError(f"{setting} has unknown species {unknown}; valid: {', '.join(SPECIES)}, got {value!r}")

# Official trimaps: 1 = pet, 2 = background, 3 = border / uncertain.
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3
TRIMAP_VALUES = frozenset({TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER})


def breed_from_stem(stem: str) -> str:
    """``"american_bulldog_12"`` -> ``"american_bulldog"`` (the part before the last underscore)."""
    breed, sep, number = stem.rpartition("_")
    if not sep or not breed:
        raise ValueError(f"file name {stem!r} is not of the form <breed>_<number>")
    return breed


def species_from_breed(breed: str) -> str:
    """The dataset's naming rule: cat breeds start upper-case ("Bengal"), dog breeds lower-case."""
    if not breed or not breed[0].isalpha():
        raise ValueError(f"cannot tell the species of breed {breed!r}")
    return "cat" if breed[0].isupper() else "dog"


def trimap_to_labels(trimap: np.ndarray, species: str) -> np.ndarray:
    """Map an official trimap (values 1/2/3) to labels: pet -> species label, background 0, border 255.

    Raises ValueError if the trimap holds values other than 1, 2, 3 or the species is unknown.
    """
    if species not in SPECIES_LABEL:
        raise ValueError(f"species must be one of {SPECIES}, got {species!r}")
    unexpected = sorted(set(np.unique(trimap).tolist()) - TRIMAP_VALUES)
    if unexpected:
        raise ValueError(f"trimap values outside {{1, 2, 3}}: {unexpected[:10]}")
    labels = np.full(trimap.shape, IGNORE_INDEX, dtype=np.uint8)
    labels[trimap == TRIMAP_BACKGROUND] = BACKGROUND
    labels[trimap == TRIMAP_PET] = SPECIES_LABEL[species]
    return labels


def check_labels(mask: np.ndarray) -> None:
    """Raise ValueError unless every value of ``mask`` is in {0, 1, 2, 255}."""
    unexpected = sorted(set(np.unique(mask).tolist()) - VALID_LABELS)
    if unexpected:
        raise ValueError(f"mask values outside {{0, 1, 2, 255}}: {unexpected[:10]}")


def to_binary(labels: Any, ignore_index: int = IGNORE_INDEX) -> Any:
    """Pet vs background: cat and dog -> 1, background 0, ``ignore_index`` kept.

    A numpy array gives ``uint8``; a torch tensor keeps its dtype and device. Already-binary labels (0/1)
    pass through unchanged, so predictions of a binary model can be given too.
    """
    if isinstance(labels, np.ndarray):
        out = (labels != BACKGROUND).astype(np.uint8)
        out[labels == ignore_index] = ignore_index
        return out
    binary = (labels != BACKGROUND).to(labels.dtype)  # a torch tensor (torch is not imported here: cheap CLI)
    return binary.masked_fill(labels == ignore_index, ignore_index)
