"""Draw the demo's picture: the image, the current mask, the points and the box."""

from __future__ import annotations

import cv2
import numpy as np

from petseg.demo.session import BOX_COVERS_PET, FOREGROUND, PromptSession, box_colour

PET_COLOUR = (155, 89, 182)  # the prompted model's pet mask (purple: neither box colour)
POINT_COLOURS = {FOREGROUND: (46, 204, 64), 0: (231, 76, 60)}  # foreground green, background red
BOX_COLOURS = {BOX_COVERS_PET: (46, 204, 64), "blue": (30, 110, 255)}
CORNER_COLOUR = (255, 220, 0)


def blend(image: np.ndarray, where: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.5) -> np.ndarray:
    """``image`` with ``colour`` blended in at the pixels where ``where`` is true."""
    out = image.astype(np.float32)
    out[where] = (1 - alpha) * out[where] + alpha * np.asarray(colour, np.float32)
    return out.round().clip(0, 255).astype(np.uint8)


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
