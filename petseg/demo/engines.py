"""The models behind the demo: SAM 2 answering prompts, and the book's full-image segmentation models.

:class:`PromptEngine` wraps a ``SAM2ImagePredictor``. Its image embedding (the expensive part: the image
encoder) is computed once per image and kept in a small LRU cache keyed by the image hash, so every later
click only runs the prompt encoder and mask decoder. :class:`FullImageEngine` wraps a model trained by
``petseg train``: it preprocesses exactly like training (resize the longest side + pad, see
:func:`petseg.data.transforms.resize_and_pad`) and maps the prediction back onto the image.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

EMBEDDING_CACHE_SIZE = 8


@dataclass
class Timing:
    """Seconds spent by the last call, and whether the image embedding came from the cache."""

    seconds: float
    cached: bool = False


class PromptEngine:
    """A SAM 2 image predictor with an embedding cache; thread-safe (one prediction at a time)."""

    kind = "prompted"

    def __init__(self, predictor: Any, cache_size: int = EMBEDDING_CACHE_SIZE):
        self.predictor = predictor
        self.cache_size = cache_size
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, image: np.ndarray, key: str) -> Timing:
        """Compute the embedding of ``image`` unless it is cached under ``key``; make it the active one."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self._activate(key)
                return Timing(0.0, cached=True)
            start = time.perf_counter()
            with torch.inference_mode():
                self.predictor.set_image(image)
            p = self.predictor
            self._cache[key] = {"features": p._features, "orig_hw": p._orig_hw}
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return Timing(time.perf_counter() - start)

    def _activate(self, key: str) -> None:
        # SAM2ImagePredictor (sam2 1.1.0) keeps the embedding of "its" image in these attributes.
        entry = self._cache[key]
        p = self.predictor
        p._features, p._orig_hw = entry["features"], entry["orig_hw"]
        p._is_image_set, p._is_batch = True, False

    def is_cached(self, key: str) -> bool:
        return key in self._cache

    def predict(self, image: np.ndarray, key: str, points: list[tuple[int, int]], point_labels: list[int],
                box: tuple[int, int, int, int] | None) -> tuple[np.ndarray, Timing]:
        """Boolean pet mask (H, W) for the prompts; the embedding is computed first if not cached.

        One point alone asks SAM 2 for three candidate masks and keeps the best-scored one (a single point
        is ambiguous); more prompts ask for one mask.
        """
        self.embed(image, key)
        start = time.perf_counter()
        with self._lock:
            self._activate(key)
            kwargs: dict[str, Any] = {}
            if points:
                kwargs["point_coords"] = np.asarray(points, np.float32)
                kwargs["point_labels"] = np.asarray(point_labels, np.int32)
            if box is not None:
                kwargs["box"] = np.asarray(box, np.float32)
            single_point = len(points) == 1 and box is None
            with torch.inference_mode():
                masks, scores, _ = self.predictor.predict(multimask_output=single_point, **kwargs)
        best = int(np.argmax(scores)) if single_point else 0
        return np.asarray(masks[best]) > 0, Timing(time.perf_counter() - start)


class FullImageEngine:
    """A full-image 3-class model (background/cat/dog) from a run's checkpoint; results cached per image."""

    kind = "segmentation"

    def __init__(self, model: torch.nn.Module, image_size: int, cache_size: int = EMBEDDING_CACHE_SIZE):
        self.model = model.eval()
        self.image_size = image_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def segment(self, image: np.ndarray, key: str) -> tuple[np.ndarray, Timing]:
        """Label mask (H, W) uint8 of ``image``: resize+pad as in training, predict, crop, resize back."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key], Timing(0.0, cached=True)
            start = time.perf_counter()
            labels = segment_full_image(self.model, image, self.image_size)
            self._cache[key] = labels
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return labels, Timing(time.perf_counter() - start)


@torch.no_grad()
def segment_full_image(model: torch.nn.Module, image: np.ndarray, image_size: int) -> np.ndarray:
    """Predict labels for an RGB uint8 image of any size with a model trained on ``image_size`` px inputs.

    The image is resized and padded exactly as the training cache was; the class probabilities of the
    un-padded region are resized back to the image (bilinear) before the arg-max.
    """
    import cv2

    from petseg.data.labels import IGNORE_INDEX
    from petseg.data.transforms import resize_and_pad

    height, width = image.shape[:2]
    padded, where = resize_and_pad(image, np.zeros((height, width), np.uint8), image_size)
    rows = np.flatnonzero((where != IGNORE_INDEX).any(axis=1))
    cols = np.flatnonzero((where != IGNORE_INDEX).any(axis=0))
    batch = torch.from_numpy(padded.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    device = next(model.parameters()).device
    probabilities = model(batch.to(device)).float().softmax(dim=1)[0].cpu().numpy()
    content = probabilities[:, rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    resized = np.stack([cv2.resize(channel, (width, height), interpolation=cv2.INTER_LINEAR) for channel in content])
    return resized.argmax(axis=0).astype(np.uint8)
