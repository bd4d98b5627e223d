"""The demo's state, without any UI: the image, the prompts, the current mask, and the rules that use them.

Everything here is plain numpy and small dataclasses so it can be read and tested on its own:

* :func:`load_upload` decodes an uploaded file strictly (the dataset validator's decoder) and scales a huge
  image down so its longest side is at most :data:`MAX_SIDE`.
* :func:`classify_click` is the original study's rule for a click without an explicit label: sample the
  current mask in a small window around the click. A click that lands on what the mask already calls pet is
  a *background* click (it removes a wrong region); anywhere else, or before any mask exists, it is a
  *foreground* click (it adds the region).
* :func:`box_from_corners` turns two clicks, in either order, into an ``xyxy`` box; :func:`box_colour` says
  green when the mask covers pet pixels inside the box, blue when not.
* :class:`PromptSession` holds one user's image, points, box and mask; ``reset()`` clears the prompts. Its
  ``uid`` names the session (the app keys its per-session lock by it); a copy keeps it.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from petseg.data.labels import CLASS_NAMES
from petseg.data.prompts import interior_point

MAX_SIDE = 1024  # longer images are downscaled to this (SAM 2 works at 1024 px internally)
MIN_SIDE = 8
CLICK_WINDOW_RADIUS = 3  # the window sampled around a click is (2r+1) x (2r+1) pixels
FOREGROUND, BACKGROUND = 1, 0
LABEL_MODES = ("auto", "foreground", "background")
BOX_COVERS_PET, BOX_EMPTY = "green", "blue"


class DemoInputError(ValueError):
    """Input the app refuses; ``str(error)`` is the message shown to the user (the app stays up)."""


def load_upload(path: str | Path, max_side: int = MAX_SIDE) -> tuple[np.ndarray, list[str]]:
    """Decode an uploaded file to RGB uint8 and downscale it if needed; return it and notes for the user."""
    from petseg.data.validate import BadFileError, load_rgb

    path = Path(path)
    if not path.is_file():
        raise DemoInputError(f"no file at {path.name}")
    try:
        image, repairs = load_rgb(path)
    except BadFileError as error:
        raise DemoInputError(f"'{path.name}' is not an image this app can read: {error}") from None
    image, note = downscale_to_fit(image, max_side)
    return image, repairs + ([note] if note else [])


def downscale_to_fit(image: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str | None]:
    """Check an RGB uint8 image and shrink it (area interpolation, aspect kept) so no side exceeds
    ``max_side``; return it and a note saying what was done (None when nothing was)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DemoInputError(f"expected an RGB image, got an array of shape {image.shape} and dtype {image.dtype}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise DemoInputError(f"the image is {width}x{height} pixels; both sides must be at least {MIN_SIDE}")
    scale = max_side / max(height, width)
    if scale >= 1:
        return image, None
    size = (max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, f"downscaled from {width}x{height} to {size[0]}x{size[1]} pixels"


def image_key(image: np.ndarray) -> str:
    """A content hash of an image (shape + pixels): the key of the embedding cache."""
    digest = hashlib.sha1(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()[:16]


def check_click(x: float, y: float, shape: tuple[int, ...]) -> tuple[int, int]:
    """Integer pixel coordinates of a click, or DemoInputError if it is not inside an image of ``shape``."""
    height, width = shape[:2]
    try:
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise DemoInputError(f"a click needs numeric coordinates, got ({x!r}, {y!r})") from None
    if not (math.isfinite(x) and math.isfinite(y)) or not (0 <= x < width and 0 <= y < height):
        raise DemoInputError(f"the click ({x:g}, {y:g}) is outside the image ({width}x{height} pixels); ignored")
    return int(x), int(y)


def classify_click(mask: np.ndarray | None, x: int, y: int, radius: int = CLICK_WINDOW_RADIUS) -> int:
    """FOREGROUND or BACKGROUND for a click at (x, y), from the current boolean ``mask`` (H, W).

    The window of ``2 * radius + 1`` pixels around the click (clipped to the image) is sampled; if most of
    it is already pet, the click marks background; otherwise, or without a mask, foreground.
    """
    if mask is None or not mask.any():
        return FOREGROUND
    window = mask[max(0, y - radius): y + radius + 1, max(0, x - radius): x + radius + 1]
    return BACKGROUND if window.mean() > 0.5 else FOREGROUND


def interior_pixel(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the pixel of a boolean mask farthest from its border: a natural first click on a pet."""
    point = interior_point(mask)
    if point is None:
        raise ValueError("the mask is empty: no pixel to click")
    return point


def box_from_corners(first: tuple[int, int], second: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` with x0 < x1 and y0 < y1 from two opposite corners given in any order."""
    (xa, ya), (xb, yb) = first, second
    box = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
    if box[0] == box[2] or box[1] == box[3]:
        raise DemoInputError(f"the two corners {first} and {second} make a box of zero area; click two opposite "
                             "corners (the box was discarded)")
    return box


def box_colour(mask: np.ndarray | None, box: tuple[int, int, int, int]) -> str:
    """``"green"`` if ``mask`` has pet pixels inside ``box`` (inclusive corners), else ``"blue"``."""
    if mask is None:
        return BOX_EMPTY
    x0, y0, x1, y1 = box
    return BOX_COVERS_PET if mask[y0: y1 + 1, x0: x1 + 1].any() else BOX_EMPTY


@dataclass
class PromptSession:
    """One user's state: the working image, prompts in image pixel coordinates, and the current result.

    ``mask`` is the prompted model's boolean pet mask; ``labels`` is a full-image model's label mask
    (0 background, 1 cat, 2 dog). Only one of them is set at a time. ``uid`` is drawn at construction and
    survives copies (Gradio deep-copies ``gr.State`` values): two sessions with one uid are one user's.
    """

    image: np.ndarray | None = None
    key: str | None = None
    notes: list[str] = field(default_factory=list)
    points: list[tuple[int, int]] = field(default_factory=list)
    point_labels: list[int] = field(default_factory=list)
    box: tuple[int, int, int, int] | None = None
    pending_corner: tuple[int, int] | None = None
    mask: np.ndarray | None = None
    labels: np.ndarray | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False, compare=False)

    def set_image(self, image: np.ndarray, notes: list[str] | None = None) -> None:
        """Start over with a new image (prompts and results cleared)."""
        self.image, self.key, self.notes = image, image_key(image), list(notes or [])
        self.reset()

    def require_image(self) -> np.ndarray:
        if self.image is None:
            raise DemoInputError("upload an image first, then click on it")
        return self.image

    def reset(self) -> None:
        """Clear every prompt and result (the image stays)."""
        self.points, self.point_labels = [], []
        self.box, self.pending_corner = None, None
        self.mask, self.labels = None, None

    @property
    def has_prompts(self) -> bool:
        return bool(self.points) or self.box is not None

    def add_point(self, x: float, y: float, mode: str = "auto") -> int:
        """Add a point prompt; ``mode`` "auto" classifies it from the current mask. Returns its label."""
        if mode not in LABEL_MODES:
            raise DemoInputError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")
        px, py = check_click(x, y, self.require_image().shape)
        label = {"foreground": FOREGROUND, "background": BACKGROUND}.get(mode)
        if label is None:
            label = classify_click(self.mask, px, py)
        self.points.append((px, py))
        self.point_labels.append(label)
        return label

    def add_box_corner(self, x: float, y: float) -> tuple[int, int, int, int] | None:
        """First click: remember the corner, return None. Second click: set and return the box (it replaces
        any earlier box). A zero-area box raises DemoInputError and is discarded."""
        corner = check_click(x, y, self.require_image().shape)
        if self.pending_corner is None:
            self.pending_corner = corner
            return None
        first, self.pending_corner = self.pending_corner, None
        self.box = box_from_corners(first, corner)
        return self.box

    def summary(self) -> dict:
        """The prompts and result sizes as plain JSON-able values (shown in the app, checked by tests)."""
        return {
            "image": None if self.image is None else {"width": int(self.image.shape[1]),
                                                      "height": int(self.image.shape[0]), "key": self.key},
            "points": [list(p) for p in self.points], "point_labels": list(self.point_labels),
            "box": list(self.box) if self.box else None,
            "box_colour": box_colour(self.mask, self.box) if self.box else None,
            "pending_corner": list(self.pending_corner) if self.pending_corner else None,
            "mask_pixels": None if self.mask is None else int(self.mask.sum()),
            "class_pixels": None if self.labels is None else
            {name: int((self.labels == k).sum()) for k, name in enumerate(CLASS_NAMES)},
        }
