"""Resize + pad, and class-specific augmentation whose masks are checked after every transform.

Both use albumentations. Masks are always resampled with nearest-neighbour interpolation, and every
pixel that a transform invents (padding, the corners an affine warp uncovers) gets the ignore label 255,
so it never counts in a loss or a metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

from petseg.data.labels import IGNORE_INDEX, VALID_LABELS

PAD_IMAGE_VALUE = 0


class MaskIntegrityError(ValueError):
    """A transform broke the image/mask contract; the message names the transform."""


def check_pair(image: np.ndarray, mask: np.ndarray, after: str) -> None:
    """Raise MaskIntegrityError unless image is (H, W, 3) uint8 and mask is (H, W) uint8 in {0,1,2,255}."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MaskIntegrityError(f"after {after}: image has shape {image.shape} and dtype {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise MaskIntegrityError(f"after {after}: mask shape {mask.shape} != image shape {image.shape[:2]}")
    if mask.dtype != np.uint8:
        raise MaskIntegrityError(f"after {after}: mask dtype is {mask.dtype}, expected uint8")
    unexpected = sorted(set(np.unique(mask).tolist()) - VALID_LABELS)
    if unexpected:
        raise MaskIntegrityError(f"after {after}: mask values outside {{0, 1, 2, 255}}: {unexpected[:10]}")


def resize_and_pad(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale the longest side to ``size`` (aspect kept), then pad to ``size`` x ``size``, centred.

    Image: area interpolation when shrinking, linear when enlarging, padding 0 (black).
    Mask: nearest-neighbour, padding 255 (ignored).
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    pipeline = A.Compose([
        A.LongestMaxSize(max_size=size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                         area_for_downscale="image"),
        A.PadIfNeeded(min_height=size, min_width=size, border_mode=cv2.BORDER_CONSTANT,
                      fill=PAD_IMAGE_VALUE, fill_mask=IGNORE_INDEX),
    ])
    out = pipeline(image=image, mask=mask)
    check_pair(out["image"], out["mask"], after="resize_and_pad")
    return out["image"], out["mask"]


def padding_mask(original_size: tuple[int, int], size: int) -> np.ndarray:
    """Bool (size, size): True on the pixels that :func:`resize_and_pad` adds around a photo of
    ``original_size`` (height, width), False on the photo itself. Computed with the same transforms."""
    height, width = (int(v) for v in original_size)
    if height < 1 or width < 1:
        raise ValueError(f"original_size must be positive (height, width), got {original_size}")
    _, mask = resize_and_pad(np.zeros((height, width, 3), np.uint8), np.zeros((height, width), np.uint8), size)
    return mask == IGNORE_INDEX


def augmentation_transforms(strength: float = 1.0) -> list[A.BasicTransform]:
    """The augmentation recipe: spatial, elastic, pixel-level, noise, lighting and occlusion transforms.

    ``strength`` scales every probability (0 disables augmentation, 1 is the default recipe).
    """
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")

    def p(value: float) -> float:
        return value * strength

    fill = {"border_mode": cv2.BORDER_CONSTANT, "fill": PAD_IMAGE_VALUE, "fill_mask": IGNORE_INDEX}
    return [
        # spatial
        A.HorizontalFlip(p=p(0.5)),
        A.Affine(scale=(0.85, 1.15), translate_percent=(-0.08, 0.08), rotate=(-15, 15),
                 mask_interpolation=cv2.INTER_NEAREST, p=p(0.7), **fill),
        # elastic
        A.ElasticTransform(alpha=30, sigma=6, mask_interpolation=cv2.INTER_NEAREST, p=p(0.2), **fill),
        # pixel-level colour
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=(-0.03, 0.03), p=p(0.5)),
        # noise and blur
        A.GaussNoise(std_range=(0.02, 0.08), p=p(0.2)),
        A.GaussianBlur(blur_limit=(3, 5), p=p(0.1)),
        # lighting
        A.RandomGamma(gamma_limit=(80, 120), p=p(0.2)),
        A.RandomShadow(p=p(0.1)),
        # occlusion: the pet is still there under the hole, so the mask is kept
        A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15),
                        fill=PAD_IMAGE_VALUE, p=p(0.3)),
    ]


class CheckedAugmentation:
    """Apply transforms one by one, checking the image/mask pair after each.

    Seeded: ``augment(image, mask, seed=k)`` gives the same result for the same ``k``.
    """

    def __init__(self, transforms: Sequence[A.BasicTransform] | None = None, strength: float = 1.0):
        self.transforms = list(transforms) if transforms is not None else augmentation_transforms(strength)
        self._compose = A.Compose(self.transforms)  # owns and seeds the transforms' random generators

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        check_pair(image, mask, after="input")
        if seed is not None:
            self._compose.set_random_seed(seed)
        for transform in self.transforms:
            out = transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
            check_pair(image, mask, after=type(transform).__name__)
        return image, mask

    def names(self) -> list[str]:
        return [type(t).__name__ for t in self.transforms]
