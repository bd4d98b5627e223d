"""Segmentation metrics for the 3-class pet task (0 background, 1 cat, 2 dog; 255 = ignore).

Everything here is computed from confusion matrices, so a metric over a whole split is *exact*: the
dataset-level IoU of a class is ``TP / (TP + FP + FN)`` with the counts summed over every pixel of every
image of the split (not an average of per-batch or per-image IoUs). Pixels whose target is the ignore
label (the trimap border and the padding added by the data pipeline) are dropped before counting,
whatever the prediction there.

Convention for absent classes (the same at dataset level and per image):

* a class that appears neither in the target nor in the prediction has ``TP + FP + FN = 0``; its IoU and
  Dice are **NaN** and it is **excluded from the mean** (mIoU, mDice are ``nanmean`` over classes);
* a class that is predicted but absent from the target gets IoU = Dice = 0 (all its pixels are false
  positives) and *does* count in the mean;
* if no pixel is valid at all, every metric is NaN.

This matches ``torchmetrics`` ``average="macro"`` (which skips classes with zero support and zero
predictions); with ``average=None`` torchmetrics reports such classes as its ``zero_division`` value (0)
where we report NaN.

The confusion matrix has the target class on rows and the predicted class on columns (as torchmetrics).
Binary helpers (:func:`to_binary`, :meth:`ConfusionMatrix.to_binary`, :func:`binary_metrics`) merge cat
and dog into one "pet" class, for comparison with a pet-vs-background model such as SAM2.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from petseg.data.labels import BINARY_CLASS_NAMES, CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, to_binary

__all__ = [
    "ConfusionMatrix",
    "background_prediction",
    "binary_metrics",
    "confusion_matrix",
    "majority_per_pixel_map",
    "majority_prediction",
    "metrics_from_confusion",
    "per_image_metrics",
    "segmentation_metrics",
]


def _check_labels(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """Raise ValueError unless pred/target are integer tensors of the same shape with legal values."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    for name, tensor in (("pred", pred), ("target", target)):
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer label tensor (got {tensor.dtype}); "
                             "take argmax over the class dimension of the logits first")
    if pred.numel() == 0:
        return
    if pred.min() < 0 or pred.max() >= num_classes:
        raise ValueError(f"pred values must lie in [0, {num_classes - 1}], got range "
                         f"[{int(pred.min())}, {int(pred.max())}]")
    valid_target = target[target != ignore_index]
    if valid_target.numel() and (valid_target.min() < 0 or valid_target.max() >= num_classes):
        raise ValueError(f"target values must lie in [0, {num_classes - 1}] or be {ignore_index}, got range "
                         f"[{int(valid_target.min())}, {int(valid_target.max())}]")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int = NUM_CLASSES,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Return the int64 ``[C, C]`` confusion matrix (rows = target, columns = prediction) of label tensors.

    ``pred`` and ``target`` are integer tensors of any equal shape; pixels whose target is
    ``ignore_index`` are not counted.
    """
    _check_labels(pred, target, num_classes, ignore_index)
    valid = target != ignore_index
    index = target[valid].long() * num_classes + pred[valid].long()
    counts = torch.bincount(index.flatten().cpu(), minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator`` with NaN where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _nanmean(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """``np.nanmean`` without the all-NaN RuntimeWarning (all-NaN slices give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        result = np.nanmean(values, axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def metrics_from_confusion(matrix: np.ndarray | torch.Tensor,
                           class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Compute all metrics of a ``[C, C]`` confusion matrix (rows = target, columns = prediction).

    Returns a dict with ``iou`` and ``dice`` (float64 arrays ``[C]``, NaN for a class absent from both
    target and prediction), ``miou`` and ``mdice`` (means over the non-NaN classes), ``pixel_accuracy``
    (correct / valid pixels), ``support`` (target pixels per class), ``confusion_matrix`` (int64 array)
    and ``class_names``.
    """
    matrix = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.int64)
    num_classes = matrix.shape[0]
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"confusion matrix must be square, got shape {matrix.shape}")
    names = tuple(class_names) if class_names is not None else _default_names(num_classes)
    true_positive = np.diag(matrix)
    false_positive = matrix.sum(axis=0) - true_positive
    false_negative = matrix.sum(axis=1) - true_positive
    iou = _safe_ratio(true_positive, true_positive + false_positive + false_negative)
    dice = _safe_ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative)
    return {
        "iou": iou,
        "dice": dice,
        "miou": _nanmean(iou),
        "mdice": _nanmean(dice),
        "pixel_accuracy": float(_safe_ratio(true_positive.sum(), matrix.sum())),
        "support": matrix.sum(axis=1),
        "confusion_matrix": matrix,
        "class_names": list(names),
    }


def _default_names(num_classes: int) -> tuple[str, ...]:
    if num_classes == len(CLASS_NAMES):
        return CLASS_NAMES
    if num_classes == len(BINARY_CLASS_NAMES):
        return BINARY_CLASS_NAMES
    return tuple(f"class_{index}" for index in range(num_classes))


def _json_number(value: float) -> float | None:
    """A float for JSON: NaN becomes None."""
    value = float(value)
    return None if math.isnan(value) else value


class ConfusionMatrix:
    """Accumulate a confusion matrix over a whole split and derive dataset-level metrics from it.

    >>> meter = ConfusionMatrix()
    >>> for images, masks in loader:                       # doctest: +SKIP
    ...     meter.update(model(images).argmax(1), masks)
    >>> meter.compute()["miou"]                            # doctest: +SKIP

    ``update`` takes integer label tensors ``pred`` and ``target`` of equal shape (normally ``[N, H, W]``);
    pixels whose target is ``ignore_index`` are skipped. The counts live on the CPU as int64, so a split
    of any size is exact. See the module docstring for how absent classes are handled.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                 class_names: Sequence[str] | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names) if class_names is not None else _default_names(num_classes)
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Forget every count."""
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add the pixels of a batch: ``pred`` and ``target`` integer tensors of equal shape."""
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add the counts of another accumulator with the same classes into this one; return self."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices with different numbers of classes")
        self.matrix += other.matrix
        return self

    def all_reduce(self) -> None:
        """Sum the counts over every process of an initialised ``torch.distributed`` group (no-op otherwise)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        backend = dist.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        counts = self.matrix.to(device)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        self.matrix = counts.cpu()

    @property
    def total(self) -> int:
        """Number of valid (non-ignored) pixels counted so far."""
        return int(self.matrix.sum())

    def compute(self) -> dict[str, Any]:
        """Dataset-level metrics of everything seen so far (see :func:`metrics_from_confusion`)."""
        return metrics_from_confusion(self.matrix, self.class_names)

    def summary(self, prefix: str = "") -> dict[str, float | None]:
        """Flat JSON-friendly dict: ``miou``, ``mdice``, ``acc``, ``iou_<class>``, ``dice_<class>`` (NaN -> None)."""
        result = self.compute()
        flat: dict[str, float | None] = {
            f"{prefix}miou": _json_number(result["miou"]),
            f"{prefix}mdice": _json_number(result["mdice"]),
            f"{prefix}acc": _json_number(result["pixel_accuracy"]),
        }
        for name, iou, dice in zip(self.class_names, result["iou"], result["dice"], strict=True):
            flat[f"{prefix}iou_{name}"] = _json_number(iou)
            flat[f"{prefix}dice_{name}"] = _json_number(dice)
        return flat

    def to_binary(self, foreground: Sequence[int] = (1, 2)) -> ConfusionMatrix:
        """Collapse to pet-vs-background: the classes in ``foreground`` become class 1, the rest class 0.

        Exact: the binary counts are sums of blocks of the multi-class matrix.
        """
        is_foreground = torch.zeros(self.num_classes, dtype=torch.bool)
        is_foreground[list(foreground)] = True
        groups = is_foreground.long()
        binary = ConfusionMatrix(2, self.ignore_index, BINARY_CLASS_NAMES)
        for row in range(2):
            for column in range(2):
                binary.matrix[row, column] = self.matrix[groups == row][:, groups == column].sum()
        return binary

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, total={self.total})"


def segmentation_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int = NUM_CLASSES,
                         ignore_index: int = IGNORE_INDEX) -> dict[str, Any]:
    """Dataset-level metrics (as :meth:`ConfusionMatrix.compute`) of one pair of label tensors."""
    meter = ConfusionMatrix(num_classes, ignore_index)
    meter.update(pred, target)
    return meter.compute()


def binary_metrics(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> dict[str, Any]:
    """Pet-vs-background metrics (classes 1 and 2 merged) of 3-class or binary label tensors.

    Same keys as :func:`metrics_from_confusion`; ``iou[1]`` is the usual "pet IoU" / foreground IoU.
    """
    return segmentation_metrics(to_binary(pred, ignore_index), to_binary(target, ignore_index), 2, ignore_index)


def per_image_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int = NUM_CLASSES,
                      ignore_index: int = IGNORE_INDEX) -> dict[str, np.ndarray]:
    """Metrics of each image of a batch ``pred``/``target`` ``[N, H, W]`` (integer labels).

    Returns float64 arrays: ``iou`` and ``dice`` ``[N, C]`` (NaN for a class absent from both prediction
    and target *in that image*), ``miou`` and ``mdice`` ``[N]`` (nanmean over classes), ``pixel_accuracy``
    ``[N]``, ``valid_pixels`` ``[N]`` (int64) and ``confusion`` ``[N, C, C]`` (int64 pixel counts, rows = true
    class, columns = predicted: what a bootstrap over images resamples). An image with no valid pixel gets NaN
    everywhere.
    """
    if pred.dim() != 3:
        raise ValueError(f"per_image_metrics expects [N, H, W] tensors, got shape {tuple(pred.shape)}")
    _check_labels(pred, target, num_classes, ignore_index)
    num_images = pred.shape[0]
    valid = target != ignore_index
    image_index = torch.arange(num_images, device=pred.device).view(-1, 1, 1).expand_as(pred)
    flat = (image_index[valid] * num_classes + target[valid].long()) * num_classes + pred[valid].long()
    counts = torch.bincount(flat.cpu(), minlength=num_images * num_classes * num_classes)
    matrices = counts.reshape(num_images, num_classes, num_classes).numpy()
    true_positive = np.diagonal(matrices, axis1=1, axis2=2)
    false_positive = matrices.sum(axis=1) - true_positive
    false_negative = matrices.sum(axis=2) - true_positive
    iou = _safe_ratio(true_positive, true_positive + false_positive + false_negative)
    dice = _safe_ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative)
    valid_pixels = matrices.sum(axis=(1, 2))
    return {
        "iou": iou,
        "dice": dice,
        "miou": np.asarray(_nanmean(iou, axis=1), dtype=np.float64).reshape(num_images),
        "mdice": np.asarray(_nanmean(dice, axis=1), dtype=np.float64).reshape(num_images),
        "pixel_accuracy": _safe_ratio(true_positive.sum(axis=1), valid_pixels),
        "valid_pixels": valid_pixels.astype(np.int64),
        "confusion": matrices.astype(np.int64),
    }


# ----------------------------------------------------------------------------------------------- baselines


def background_prediction(target: torch.Tensor) -> torch.Tensor:
    """Baseline 1: predict background (0) everywhere; returns zeros shaped like ``target``."""
    return torch.zeros_like(target, dtype=torch.long)


def majority_per_pixel_map(masks: torch.Tensor | Iterable[torch.Tensor], num_classes: int = NUM_CLASSES,
                           ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Baseline 2: the most frequent label at each pixel position over training masks.

    ``masks`` is a ``[N, H, W]`` tensor or an iterable of ``[H, W]`` (or ``[B, H, W]``) tensors of equal
    spatial size, e.g. ``(mask for _, mask in train_set)``. Ignored pixels are not counted. Returns a
    LongTensor ``[H, W]``; ties go to the lowest class index and a position ignored in every mask gets 0.
    """
    batches = [masks] if isinstance(masks, torch.Tensor) else masks
    counts: torch.Tensor | None = None
    for batch in batches:
        batch = batch if batch.dim() == 3 else batch.unsqueeze(0)
        if batch.dim() != 3:
            raise ValueError(f"masks must be [H, W] or [N, H, W], got shape {tuple(batch.shape)}")
        if counts is None:
            counts = torch.zeros(num_classes, *batch.shape[-2:], dtype=torch.int64)
        elif batch.shape[-2:] != counts.shape[-2:]:
            raise ValueError(f"all masks must have the same size, got {tuple(batch.shape[-2:])} after "
                             f"{tuple(counts.shape[-2:])}")
        batch = batch.cpu()
        for class_index in range(num_classes):
            counts[class_index] += (batch == class_index).sum(dim=0)
    if counts is None:
        raise ValueError("majority_per_pixel_map needs at least one mask")
    return counts.argmax(dim=0)


def majority_prediction(majority_map: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Predict ``majority_map`` ``[H, W]`` for every image of ``target`` ``[N, H, W]`` (or ``[H, W]``)."""
    if majority_map.shape != target.shape[-2:]:
        raise ValueError(f"majority map {tuple(majority_map.shape)} does not match mask size "
                         f"{tuple(target.shape[-2:])}")
    return majority_map.to(target.device).expand_as(target).clone()
