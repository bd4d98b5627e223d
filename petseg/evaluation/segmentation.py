"""Test-time evaluation of a segmentation model on a whole dataset, and the two baselines it is compared with.

:func:`evaluate` gives dataset-level metrics (exact: summed confusion matrices), the pet-vs-background view
and a per-image table; :func:`baseline_metrics` scores "background everywhere" and "each pixel's most
frequent training label" on the test split.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from petseg.data.labels import IGNORE_INDEX, NUM_CLASSES, to_binary
from petseg.evaluation.metrics import (
    ConfusionMatrix,
    background_prediction,
    majority_per_pixel_map,
    majority_prediction,
    per_image_metrics,
)
from petseg.models.weights import unwrap_model

__all__ = ["baseline_metrics", "batch_to_device", "evaluate"]


def batch_to_device(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, masks)`` of a batch (``(images, masks)``, ``(images,)`` or bare images) on ``device``; masks int64."""
    if isinstance(batch, list | tuple):
        images = batch[0]
        masks = batch[1] if len(batch) > 1 else None
    else:
        images, masks = batch, None
    non_blocking = device.type == "cuda"
    images = images.to(device, non_blocking=non_blocking)
    if masks is not None:
        masks = masks.to(device, non_blocking=non_blocking).long()
    return images, masks


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, device: str | torch.device | None = None, batch_size: int = 8,
             num_workers: int = 0, num_classes: int = NUM_CLASSES, amp: bool = False) -> dict[str, Any]:
    """Evaluate a segmentation model (``model(images) -> logits [B, C, H, W]``) on a whole dataset.

    Returns :meth:`ConfusionMatrix.compute`'s keys (``iou``, ``dice``, ``miou``, ``mdice``,
    ``pixel_accuracy``, ``support``, ``confusion_matrix``, ``class_names``), ``binary`` (the same for
    pet-vs-background) and ``per_image``: a dict of 1-D arrays ``[N]`` in dataset order, ready for
    ``pandas.DataFrame(result["per_image"])``: ``iou_<class>`` and ``dice_<class>`` (NaN where the class is
    in neither prediction nor target of that image), ``miou``, ``mdice``, ``pixel_accuracy``,
    ``valid_pixels``, ``n_<true>_as_<predicted>`` (the image's confusion matrix in pixels) and ``pet_iou`` (pet-vs-background IoU; see :func:`petseg.evaluation.metrics.per_image_metrics`).
    ``device=None`` uses the model's device. The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = unwrap_model(model).to(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    meter = ConfusionMatrix(num_classes)
    # Per-image columns are allocated once for the whole dataset and filled batch by batch: appending small
    # arrays between each batch's large temporaries fragments the C heap, which then grows with the number
    # of images (benchmarks/eval_memory.py measured it).
    columns = _PerImageColumns(len(dataset))
    use_amp = amp and device.type == "cuda"
    start = 0
    try:
        for batch in loader:
            images, masks = batch_to_device(batch, device)
            if masks is None:
                raise ValueError("evaluate needs a dataset of (image, mask) pairs")
            with torch.autocast(device.type, enabled=use_amp):
                predictions = model(images).argmax(dim=1)
            meter.update(predictions, masks)
            batch_metrics = per_image_metrics(predictions, masks, num_classes)
            for key in ("iou", "dice"):
                for class_index, name in enumerate(meter.class_names):
                    columns.put(f"{key}_{name}", start, batch_metrics[key][:, class_index])
            for key in ("miou", "mdice", "pixel_accuracy", "valid_pixels"):
                columns.put(key, start, batch_metrics[key])
            for true_index, true_name in enumerate(meter.class_names):  # the image's confusion matrix
                for predicted_index, predicted_name in enumerate(meter.class_names):
                    columns.put(f"n_{true_name}_as_{predicted_name}", start,
                                batch_metrics["confusion"][:, true_index, predicted_index])
            if num_classes > 2:
                pet = per_image_metrics(to_binary(predictions), to_binary(masks), 2)
                columns.put("pet_iou", start, pet["iou"][:, 1])
                # where the true pet pixels went: the species view of chapter 6 (a cat taken for a dog ...)
                true_pet = (masks > 0) & (masks != IGNORE_INDEX)
                for class_index, name in enumerate(meter.class_names):
                    counts = ((predictions == class_index) & true_pet).sum(dim=(1, 2))
                    columns.put(f"pet_as_{name}", start, counts.cpu().numpy())
            start += len(predictions)
    finally:
        model.train(was_training)
    results = meter.compute()
    results["binary"] = meter.to_binary().compute()
    results["per_image"] = columns.result(start)
    return results


class _PerImageColumns:
    """Named 1-D columns of ``size`` rows, each allocated on first use with the dtype of its first values."""

    def __init__(self, size: int) -> None:
        self.size, self.columns = size, {}

    def put(self, key: str, start: int, values: np.ndarray) -> None:
        column = self.columns.get(key)
        if column is None:
            column = self.columns[key] = np.zeros(self.size, dtype=np.asarray(values).dtype)
        column[start:start + len(values)] = values

    def result(self, rows: int) -> dict[str, np.ndarray]:
        """The columns, cut to the ``rows`` actually filled."""
        return {key: column[:rows] for key, column in self.columns.items()}


def _mask_batches(prepared: Any, stems: list[str], batch: int = 64) -> Iterator[torch.Tensor]:
    """The cached masks of ``stems`` as int64 tensors, ``batch`` at a time (never the whole split at once)."""
    for start in range(0, len(stems), batch):
        positions = [prepared.cache.position(s) for s in stems[start:start + batch]]
        yield torch.from_numpy(np.stack([prepared.cache.masks[p] for p in positions]).astype(np.int64))


def baseline_metrics(prepared: Any) -> dict:
    """Test metrics of two floors: predict background everywhere; predict each pixel's most frequent
    training label (computed over the un-augmented training masks, ignoring 255). Masks are read batch by
    batch, so memory does not grow with the number of images. A test-only dataset has no training masks:
    its majority baseline is left out."""
    predictors = {"all_background": background_prediction}
    if prepared.split.train:
        majority = majority_per_pixel_map(_mask_batches(prepared, prepared.split.train))
        predictors["majority_per_pixel"] = lambda masks: majority_prediction(majority, masks)
    meters = {name: ConfusionMatrix() for name in predictors}
    for test_masks in _mask_batches(prepared, prepared.stems("test")):
        for name, predict_fn in predictors.items():
            meters[name].update(predict_fn(test_masks), test_masks)
    return {name: {**meter.compute(), "binary": meter.to_binary().compute()} for name, meter in meters.items()}
