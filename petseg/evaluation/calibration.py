"""Calibration of pixel-wise predictions: reliability-diagram bins and the expected calibration error.

A model is calibrated when, among the pixels it predicts with confidence ``p`` (the highest softmax
probability), a fraction ``p`` is right. Pixels are sorted into ``bins`` equal-width confidence bins over
[0, 1]; per bin we keep the count, the mean confidence and the accuracy. The expected calibration error is
``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|`` and the maximum calibration error the largest gap.
Only *valid* pixels count: those whose target is not the ignore label 255 (trimap border, padding).
:class:`CalibrationMeter` accumulates over batches, so a whole split never has to sit in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from petseg.data.labels import IGNORE_INDEX


@dataclass(frozen=True)
class Reliability:
    """Per-bin counts, mean confidence and accuracy (NaN for empty bins), with ECE and MCE."""

    edges: np.ndarray  # [bins + 1]
    counts: np.ndarray  # [bins] valid pixels per bin
    confidence: np.ndarray  # [bins] mean confidence of the bin's pixels
    accuracy: np.ndarray  # [bins] fraction of the bin's pixels predicted right
    ece: float
    mce: float

    @property
    def pixels(self) -> int:
        return int(self.counts.sum())

    @property
    def mean_confidence(self) -> float:
        return float(np.nansum(self.confidence * self.counts) / max(self.pixels, 1))

    @property
    def overall_accuracy(self) -> float:
        return float(np.nansum(self.accuracy * self.counts) / max(self.pixels, 1))


class CalibrationMeter:
    """Accumulate confidence/correctness of valid pixels into ``bins`` equal-width bins."""

    def __init__(self, bins: int = 15, ignore_index: int = IGNORE_INDEX) -> None:
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.bins = bins
        self.ignore_index = ignore_index
        self.counts = np.zeros(bins, np.int64)
        self.confidence_sum = np.zeros(bins, np.float64)
        self.correct = np.zeros(bins, np.int64)

    @torch.no_grad()
    def update(self, probabilities: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add a batch: ``probabilities`` ``[N, C, H, W]`` (softmax, summing to 1 over C), ``target`` ``[N, H, W]``."""
        probabilities = torch.as_tensor(probabilities).float()
        target = torch.as_tensor(target)
        if probabilities.dim() != 4 or target.shape != probabilities.shape[:1] + probabilities.shape[2:]:
            raise ValueError(f"expected probabilities [N, C, H, W] and target [N, H, W], got "
                             f"{tuple(probabilities.shape)} and {tuple(target.shape)}")
        if probabilities.min() < 0 or probabilities.max() > 1 + 1e-4:
            raise ValueError("probabilities must lie in [0, 1] (apply softmax to logits first)")
        confidence, prediction = probabilities.max(dim=1)
        valid = target != self.ignore_index
        confidence, correct = confidence[valid].double().cpu(), (prediction[valid] == target[valid].long()).cpu()
        index = torch.clamp((confidence * self.bins).long(), max=self.bins - 1)  # confidence 1.0 -> last bin
        self.counts += torch.bincount(index, minlength=self.bins).numpy()
        self.confidence_sum += torch.bincount(index, weights=confidence, minlength=self.bins).numpy()
        self.correct += torch.bincount(index[correct], minlength=self.bins).numpy()

    def compute(self) -> Reliability:
        """The reliability bins, ECE and MCE of everything seen so far (NaN everywhere if nothing was seen)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence = np.where(self.counts > 0, self.confidence_sum / self.counts, np.nan)
            accuracy = np.where(self.counts > 0, self.correct / self.counts, np.nan)
        total = self.counts.sum()
        gaps = np.abs(accuracy - confidence)
        ece = float(np.nansum(gaps * self.counts) / total) if total else float("nan")
        mce = float(np.nanmax(gaps)) if total else float("nan")
        return Reliability(np.linspace(0, 1, self.bins + 1), self.counts.copy(), confidence, accuracy, ece, mce)


def reliability(probabilities: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, bins: int = 15,
                ignore_index: int = IGNORE_INDEX) -> Reliability:
    """Reliability bins and ECE of one batch (see :class:`CalibrationMeter`)."""
    meter = CalibrationMeter(bins, ignore_index)
    meter.update(probabilities, target)
    return meter.compute()


@torch.no_grad()
def model_reliability(model: torch.nn.Module, dataset: Iterable, bins: int = 15, batch_size: int = 16,
                      device: str = "cpu") -> Reliability:
    """Reliability of a segmentation model (``model(images) -> logits``) over a dataset of (image, mask)."""
    from torch.utils.data import DataLoader

    meter = CalibrationMeter(bins)
    model = model.to(device).eval()
    for images, masks in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        meter.update(model(images.to(device)).float().softmax(dim=1).cpu(), masks)
    return meter.compute()
