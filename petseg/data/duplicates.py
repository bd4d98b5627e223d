"""The same photograph under two names: perceptual hashes and duplicate groups.

The official release holds about 29 such groups (mostly Bombay cats), some across ``trainval.txt`` and
``test.txt``. A byte comparison misses them (re-encoded, resized copies), so each image is reduced to a
64-bit *difference hash* (dHash: a 9x8 grayscale thumbnail, one bit per horizontal neighbour pair, "is the
right pixel brighter?"), which survives resizing and re-encoding. Two images are the same photograph when
their hashes differ in at most ``max_distance`` bits *and* their 32x32 grayscale thumbnails agree (mean
absolute difference under ``max_thumbnail_difference`` grey levels): the second test keeps two different
black cats on a white sofa apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

MAX_HASH_DISTANCE = 10
MAX_THUMBNAIL_DIFFERENCE = 12.0
THUMBNAIL = 32


def difference_hash(image: np.ndarray) -> int:
    """The 64-bit dHash of an RGB uint8 image (H, W, 3)."""
    gray = Image.fromarray(image).convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = np.asarray(gray, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def thumbnail(image: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """A ``size`` x ``size`` grayscale uint8 thumbnail (aspect ratio not kept, like the dHash)."""
    gray = Image.fromarray(image).convert("L").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def hamming_distances(hashes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Bit differences between every pair of uint64 hashes: [len(hashes), len(others)]."""
    xor = hashes[:, None] ^ others[None, :]
    return np.unpackbits(xor.view(np.uint8).reshape(*xor.shape, 8), axis=-1).sum(axis=-1)


def duplicate_groups(hashes: Mapping[str, int], thumbnails: Mapping[str, np.ndarray],
                     max_distance: int = MAX_HASH_DISTANCE,
                     max_thumbnail_difference: float = MAX_THUMBNAIL_DIFFERENCE,
                     chunk: int = 512) -> list[list[str]]:
    """Groups (sorted lists of 2+ stems, sorted by first stem) of images that show the same photograph.

    Pairs within ``max_distance`` bits whose thumbnails differ by less than ``max_thumbnail_difference`` are
    linked; groups are the connected components (union-find).
    """
    stems = sorted(hashes)
    values = np.array([hashes[s] for s in stems], dtype=np.uint64)
    parent = list(range(len(stems)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(stems), chunk):
        distances = hamming_distances(values[start:start + chunk], values)
        for a, b in zip(*np.nonzero(distances <= max_distance), strict=True):
            i, j = start + int(a), int(b)
            if j <= i:
                continue
            difference = np.abs(thumbnails[stems[i]].astype(np.int16) - thumbnails[stems[j]].astype(np.int16))
            if difference.mean() < max_thumbnail_difference:
                parent[root(j)] = root(i)
    members: dict[int, list[str]] = {}
    for i, stem in enumerate(stems):
        members.setdefault(root(i), []).append(stem)
    return sorted((sorted(group) for group in members.values() if len(group) > 1), key=lambda g: g[0])


def group_of(groups: Sequence[Sequence[str]]) -> dict[str, str]:
    """Stem -> the first stem of its duplicate group (only stems that are in a group)."""
    return {stem: group[0] for group in groups for stem in group}
