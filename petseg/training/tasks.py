"""What differs between the three kinds of model the loop trains: one small object per task.

A task says how a batch goes through the model, what the loss compares, which validation metrics are
kept and which of them picks the best checkpoint:

* :class:`SegmentationTask`: ``model(images) -> logits [B, C, H, W]`` against masks (255 = ignore);
  validation: confusion-matrix metrics; best: highest ``val_miou``;
* :class:`ReconstructionTask`: ``model(images) -> image in [0, 1]`` against the input; validation: SSIM and
  PSNR; best: lowest ``val_loss``;
* :class:`PromptedTask`: ``model(images, masks, rng=...)`` simulates prompts from the masks and returns
  ``{"logits" [B, M, H, W], "iou_predictions" [B, M], "candidates" bool [B, M]}``; validation: the
  pet-vs-background metrics of one click at the most interior pet point; best: highest ``val_iou_pet``.

:func:`make_task` gives the task of a name; :func:`validate` runs any of them over a validation loader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from petseg.data.labels import BINARY_CLASS_NAMES, to_binary
from petseg.evaluation.metrics import ConfusionMatrix
from petseg.evaluation.segmentation import batch_to_device
from petseg.training.config import TASKS, TrainConfig
from petseg.training.distributed import DistributedContext, all_reduce_sum
from petseg.training.losses import PromptedLoss, ReconstructionLoss, SegmentationLoss

__all__ = ["PromptedTask", "ReconstructionTask", "SegmentationTask", "Task", "make_task", "prompted_prediction",
           "validate"]


class Meter(Protocol):
    """Validation metrics accumulated batch by batch, summed over processes by :meth:`results`."""

    def update(self, outputs: Any, images: torch.Tensor, masks: torch.Tensor) -> None: ...

    def results(self) -> dict[str, float]: ...


class Task(Protocol):
    """The task-specific parts of training (see the module docstring)."""

    name: str
    metric_name: str  # the validation metric that picks best.pt
    higher_is_better: bool
    unused_parameters: bool  # whether a training step may leave parameters without gradients (DDP must know)
    loss_fn: nn.Module

    def forward(self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor | None,
                rng: np.random.Generator | None = None) -> Any:
        """The model's outputs for a batch (``rng``: training prompts; None in validation)."""

    def loss(self, outputs: Any, images: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """The loss of a batch's outputs."""

    def meter(self, num_classes: int, device: torch.device) -> Meter:
        """A fresh validation meter."""


class _ConfusionMeter:
    """Confusion-matrix metrics (``val_miou``, ``val_iou_<class>`` ...) of label predictions."""

    def __init__(self, matrix: ConfusionMatrix,
                 labels: Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.matrix, self.labels = matrix, labels

    def update(self, outputs: Any, images: torch.Tensor, masks: torch.Tensor) -> None:
        self.matrix.update(*self.labels(outputs, masks))

    def results(self) -> dict[str, float]:
        self.matrix.all_reduce()
        return self.matrix.summary(prefix="val_")


class _ImageQualityMeter:
    """SSIM and PSNR of reconstructions (torchmetrics; synchronised over processes on compute)."""

    def __init__(self, device: torch.device) -> None:
        from petseg.evaluation.reconstruction import image_quality_meters

        self.ssim, self.psnr = image_quality_meters(device)

    def update(self, outputs: Any, images: torch.Tensor, masks: torch.Tensor) -> None:
        reconstruction = outputs.float().clamp(0, 1)
        for metric in (self.ssim, self.psnr):
            metric.update(reconstruction, images)

    def results(self) -> dict[str, float]:
        return {"val_ssim": float(self.ssim.compute()), "val_psnr": float(self.psnr.compute())}


class SegmentationTask:
    """Logits against label masks: cross-entropy (class weights, 255 ignored) + ``dice_weight`` * soft Dice."""

    name, metric_name, higher_is_better, unused_parameters = "segmentation", "val_miou", True, False

    def __init__(self, config: TrainConfig) -> None:
        self.loss_fn: nn.Module = SegmentationLoss(config.class_weights, config.dice_weight)

    def forward(self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor | None,
                rng: np.random.Generator | None = None) -> Any:
        return model(images)

    def loss(self, outputs: Any, images: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        return self.loss_fn(outputs, masks)

    def meter(self, num_classes: int, device: torch.device) -> Meter:
        return _ConfusionMeter(ConfusionMatrix(num_classes), lambda outputs, masks: (outputs.argmax(dim=1), masks))


class ReconstructionTask:
    """An image against the input image: L1 or MSE (``reconstruction_loss``)."""

    name, metric_name, higher_is_better, unused_parameters = "reconstruction", "val_loss", False, False

    def __init__(self, config: TrainConfig) -> None:
        self.loss_fn: nn.Module = ReconstructionLoss(config.reconstruction_loss)

    def forward(self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor | None,
                rng: np.random.Generator | None = None) -> Any:
        return model(images)

    def loss(self, outputs: Any, images: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        return self.loss_fn(outputs, images)

    def meter(self, num_classes: int, device: torch.device) -> Meter:
        return _ImageQualityMeter(device)


def prompted_prediction(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Binary prediction ``[B, H, W]`` (int64, 1 = pet) of a prompted model's outputs: among each image's
    candidate masks the one with the highest predicted IoU (SAM 2's choice for a single click), logit > 0."""
    scores = outputs["iou_predictions"].float().masked_fill(~outputs["candidates"], float("-inf"))
    best = scores.argmax(dim=1)
    logits = outputs["logits"][torch.arange(best.shape[0], device=best.device), best]
    return (logits > 0).long()


class PromptedTask:
    """A promptable pet-vs-background model (SAM 2): :class:`PromptedLoss` (``dice_weight`` 0 means 1)."""

    # a step leaves some heads unused (e.g. SAM's object-score head)
    name, metric_name, higher_is_better, unused_parameters = "prompted", "val_iou_pet", True, True

    def __init__(self, config: TrainConfig) -> None:
        self.loss_fn: nn.Module = PromptedLoss(config.dice_weight or 1.0)

    def forward(self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor | None,
                rng: np.random.Generator | None = None) -> Any:
        # validation: the model's eval-mode prompt, one click at the most interior pet point
        return model(images, masks) if rng is None else model(images, masks, rng=rng)

    def loss(self, outputs: Any, images: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        return self.loss_fn(outputs, masks)

    def meter(self, num_classes: int, device: torch.device) -> Meter:
        return _ConfusionMeter(ConfusionMatrix(2, class_names=BINARY_CLASS_NAMES),
                               lambda outputs, masks: (prompted_prediction(outputs).cpu(), to_binary(masks).cpu()))


_TASKS: dict[str, Callable[[TrainConfig], Task]] = {
    "segmentation": SegmentationTask, "reconstruction": ReconstructionTask, "prompted": PromptedTask}


def make_task(name: str, config: TrainConfig) -> Task:
    """The task called ``name`` (one of :data:`~petseg.training.config.TASKS`), its loss configured by ``config``."""
    if name not in _TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {name!r}")
    return _TASKS[name](config)


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, device: torch.device, task: Task, autocast: Callable[[], Any],
             context: DistributedContext, num_classes: int) -> dict[str, Any]:
    """Validation loss and metrics over this process's shard, summed over processes."""
    model.eval()
    loss_sum, images_seen = 0.0, 0
    meter = task.meter(num_classes, device)
    for batch in loader:
        images, masks = batch_to_device(batch, device)
        with autocast():
            outputs = task.forward(model, images, masks)
        loss = task.loss(outputs, images, masks)
        meter.update(outputs, images, masks)
        loss_sum += float(loss) * images.shape[0]
        images_seen += images.shape[0]
    loss_sum, images_seen = all_reduce_sum([loss_sum, float(images_seen)], context, device)
    results: dict[str, Any] = {"val_loss": loss_sum / images_seen if images_seen else float("nan")}
    results.update(meter.results())
    return results
