"""Draw the demo's picture: the image, the current mask, the points and the box."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from petseg.demo.session import BOX_COVERS_PET, FOREGROUND, PromptSession, box_colour

PET_COLOUR = (155, 89, 182)  # the prompted model's pet mask (purple: neither box colour)
POINT_COLOURS = {FOREGROUND: (46, 204, 64), 0: (231, 76, 60)}  # foreground green, background red
BOX_COLOURS = {BOX_COVERS_PET: (46, 204, 64), "blue": (30, 110, 255)}
CORNER_COLOUR = (255, 220, 0)


@functools.lru_cache(maxsize=32)
def blend_table(colour: tuple[int, int, int], alpha: float) -> np.ndarray:
    """(256, 1, 3) uint8: channel value v blended with ``colour`` as ``round((1 - alpha) * v + alpha * c)``,
    computed in float32 (ties to even), i.e. what blending the whole image in float32 gives, value by value."""
    values = np.arange(256, dtype=np.float32)[:, None]
    blended = (1 - alpha) * values + alpha * np.asarray(colour, np.float32)
    return blended.round().clip(0, 255).astype(np.uint8)[:, None, :]


def blend(image: np.ndarray, where: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.5) -> np.ndarray:
    """``image`` (RGB uint8) with ``colour`` blended in at the pixels where ``where`` is true.

    A lookup table per channel (:func:`blend_table`) copied in under the mask: the same pixels as the float32
    arithmetic over the whole image, several times faster (this is drawn on every click).
    """
    out = np.array(image, np.uint8, copy=True, order="C")
    mask = np.ascontiguousarray(where, dtype=bool)
    if mask.any():
        tinted = cv2.LUT(out, blend_table(tuple(int(c) for c in colour), float(alpha)))
        cv2.copyTo(tinted, mask.view(np.uint8), out)
    return out


def render(session: PromptSession) -> np.ndarray | None:
    """The picture for ``session``: mask (prompted) or class overlay (full-image model) plus prompts."""
    if session.image is None:
        return None
    image = session.image
    if session.labels is not None:
        from petseg.viz import overlay

        picture = overlay(image, session.labels)
    elif session.mask is not None:
        picture = blend(image, session.mask, PET_COLOUR)
    else:
        picture = image.copy()
    size = max(image.shape[:2])
    radius, thickness = max(3, size // 90), max(1, size // 250)
    if session.box is not None:
        x0, y0, x1, y1 = session.box
        colour = BOX_COLOURS[box_colour(session.mask, session.box)]
        cv2.rectangle(picture, (x0, y0), (x1, y1), colour, thickness + 1, lineType=cv2.LINE_AA)
    if session.pending_corner is not None:
        cv2.drawMarker(picture, session.pending_corner, CORNER_COLOUR, cv2.MARKER_CROSS, 3 * radius, thickness + 1)
    for (x, y), label in zip(session.points, session.point_labels, strict=True):
        cv2.circle(picture, (x, y), radius, POINT_COLOURS[label], -1, lineType=cv2.LINE_AA)
        cv2.circle(picture, (x, y), radius, (255, 255, 255), thickness, lineType=cv2.LINE_AA)
    return picture
