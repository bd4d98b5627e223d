"""Prompt simulation for SAM 2: clicks and boxes derived from a ground-truth mask.

Conventions (shared by training, evaluation and the app):

* masks are label maps ``[H, W]``: 0 background, 1 cat, 2 dog (or already binary 0/1), 255 ignore (the trimap
  border and the padding added by the data pipeline). The *pet* is every pixel labelled 1 or 2; ignored
  pixels are neither pet nor background: no click is ever placed on them and they never count as errors;
* a click is ``(x, y, label)`` in pixel coordinates, ``x`` = column, ``y`` = row, label 1 = positive (pet),
  0 = negative (background), as :class:`sam2.sam2_image_predictor.SAM2ImagePredictor` takes them;
* a box is ``(x0, y0, x1, y1)``, inclusive pixel coordinates (SAM2's XYXY format).

Every function is pure: randomness comes only from the ``numpy.random.Generator`` passed in.
The evaluation protocol of the interactive-segmentation literature uses :func:`interior_point` for the first
click and :func:`next_click` for every further one (the centre of the largest error region).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from petseg.data.labels import IGNORE_INDEX

__all__ = [
    "Click",
    "Prompt",
    "box_from_mask",
    "interior_point",
    "next_click",
    "pet_and_valid",
    "random_point",
    "simulate_training_prompt",
]


@dataclass(frozen=True)
class Click:
    """One click: ``x`` column, ``y`` row (pixels), ``label`` 1 positive (pet) or 0 negative (background)."""

    x: int
    y: int
    label: int


@dataclass
class Prompt:
    """What SAM 2 is given for one image: clicks (``points [N, 2]`` as x, y; ``labels [N]``) and/or a box.

    ``multimask`` says whether the prompt is ambiguous (a single click), in which case SAM 2 returns three
    candidate masks and the one with the highest predicted IoU is used.
    """

    points: np.ndarray  # float32 [N, 2] (x, y)
    labels: np.ndarray  # int32 [N]
    box: np.ndarray | None = None  # float32 [4] (x0, y0, x1, y1)

    @property
    def multimask(self) -> bool:
        return self.box is None and len(self.labels) == 1

    @classmethod
    def from_clicks(cls, clicks: list[Click], box: np.ndarray | None = None) -> Prompt:
        points = np.array([[c.x, c.y] for c in clicks], dtype=np.float32).reshape(-1, 2)
        labels = np.array([c.label for c in clicks], dtype=np.int32)
        return cls(points, labels, None if box is None else np.asarray(box, dtype=np.float32))


def pet_and_valid(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean maps ``(pet, valid)`` of a label mask: pet = labels 1 or 2, valid = not 255."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {mask.shape}")
    valid = mask != IGNORE_INDEX
    pet = valid & ((mask == 1) | (mask == 2))
    return pet, valid


def _distance_to_outside(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of every region pixel to the nearest non-region pixel (the image edge counts as
    outside), 0 outside the region."""
    padded = np.pad(region.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance[1:-1, 1:-1]


def interior_point(region: np.ndarray) -> tuple[int, int] | None:
    """``(x, y)`` of the pixel of ``region`` farthest from its boundary (the "most interior" point), or None
    for an empty region. Ties go to the first such pixel in row-major order."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return None
    distance = _distance_to_outside(region)
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(col), int(row)


def random_point(region: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """``(x, y)`` of a pixel of ``region`` drawn uniformly with ``rng``, or None for an empty region."""
    rows, cols = np.nonzero(np.asarray(region, dtype=bool))
    if rows.size == 0:
        return None
    index = int(rng.integers(rows.size))
    return int(cols[index]), int(rows[index])


def box_from_mask(region: np.ndarray, rng: np.random.Generator | None = None,
                  jitter: float = 0.0, max_jitter_px: float = 20.0) -> np.ndarray | None:
    """Tight box ``[x0, y0, x1, y1]`` (float32, inclusive) around ``region``, or None if it is empty.

    With ``rng`` and ``jitter > 0`` every coordinate moves by Gaussian noise of standard deviation
    ``jitter`` x the box side (capped at ``max_jitter_px``, as in SAM's training), clipped to the image and
    kept ordered.
    """
    rows, cols = np.nonzero(np.asarray(region, dtype=bool))
    if rows.size == 0:
        return None
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float64)
    if rng is not None and jitter > 0:
        width, height = box[2] - box[0] + 1, box[3] - box[1] + 1
        scale = np.minimum(np.array([width, height, width, height]) * jitter, max_jitter_px)
        box = box + rng.normal(0.0, 1.0, 4) * scale
        h, w = region.shape
        box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
        box = np.array([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])])
    return box.round().astype(np.float32)


def _largest_component(region: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 8-connected component of ``region`` and its area (an empty map and 0 if none)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(region, dtype=bool), 0
    index = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == index, int(stats[index, cv2.CC_STAT_AREA])


def next_click(prediction: np.ndarray, mask: np.ndarray) -> Click | None:
    """The corrective click of the interactive protocol, or None if the prediction has no error.

    Errors are counted on valid pixels only: false negatives (pet predicted as background) and false
    positives (background predicted as pet). The click goes to the most interior point of the largest
    (by area, 8-connected) error region: positive in a false-negative region, negative in a false-positive
    one; on equal areas the false negatives win.
    """
    prediction = np.asarray(prediction, dtype=bool)
    pet, valid = pet_and_valid(mask)
    if prediction.shape != pet.shape:
        raise ValueError(f"prediction {prediction.shape} and mask {pet.shape} differ in shape")
    false_negative, fn_area = _largest_component(pet & ~prediction)
    false_positive, fp_area = _largest_component(valid & ~pet & prediction)
    if fn_area == 0 and fp_area == 0:
        return None
    region, label = (false_negative, 1) if fn_area >= fp_area else (false_positive, 0)
    x, y = interior_point(region)
    return Click(x, y, label)


def simulate_training_prompt(mask: np.ndarray, rng: np.random.Generator, box_probability: float = 0.3,
                             max_extra_clicks: int = 3, box_jitter: float = 0.1,
                             interior_probability: float = 0.5) -> Prompt:
    """A random prompt for one training image, drawn with ``rng``.

    With probability ``box_probability``: a jittered box of the pet (:func:`box_from_mask`). Otherwise clicks:
    the first one positive, at the most interior pet point with probability ``interior_probability`` or at
    a uniformly drawn pet pixel, then ``0..max_extra_clicks`` further clicks, each positive or negative with
    equal odds, uniformly inside the pet or the valid background. An image without pet pixels gets one
    negative click (its target is all background).
    """
    pet, valid = pet_and_valid(mask)
    background = valid & ~pet
    if not pet.any():
        point = random_point(background, rng) or (0, 0)
        return Prompt.from_clicks([Click(*point, 0)])
    if rng.random() < box_probability:
        return Prompt(np.zeros((0, 2), np.float32), np.zeros(0, np.int32), box_from_mask(pet, rng, box_jitter))
    first = interior_point(pet) if rng.random() < interior_probability else random_point(pet, rng)
    clicks = [Click(*first, 1)]
    for _ in range(int(rng.integers(0, max_extra_clicks + 1))):
        positive = bool(rng.random() < 0.5) or not background.any()
        point = random_point(pet if positive else background, rng)
        clicks.append(Click(*point, int(positive)))
    return Prompt.from_clicks(clicks)
