"""Tests for petseg.training.tasks: one object per task, what each compares and keeps."""

from __future__ import annotations

import pytest
import torch

from petseg.training.config import TASKS, TrainConfig
from petseg.training.losses import PromptedLoss, ReconstructionLoss, SegmentationLoss
from petseg.training.tasks import make_task


def test_every_task_has_its_loss_metric_and_direction() -> None:
    config = TrainConfig(dice_weight=0.0, reconstruction_loss="mse")
    tasks = {name: make_task(name, config) for name in TASKS}
    assert isinstance(tasks["segmentation"].loss_fn, SegmentationLoss)
    assert isinstance(tasks["reconstruction"].loss_fn, ReconstructionLoss)
    assert tasks["reconstruction"].loss_fn.kind == "mse"
    assert isinstance(tasks["prompted"].loss_fn, PromptedLoss) and tasks["prompted"].loss_fn.dice_weight == 1.0
    assert {name: (task.metric_name, task.higher_is_better) for name, task in tasks.items()} == {
        "segmentation": ("val_miou", True), "reconstruction": ("val_loss", False), "prompted": ("val_iou_pet", True)}
    assert [task.unused_parameters for task in tasks.values()] == [False, False, True]
    with pytest.raises(ValueError, match="task must be one of"):
        make_task("detection", config)


def test_segmentation_and_reconstruction_compare_with_masks_and_images() -> None:
    images = torch.rand(2, 3, 8, 8)
    masks = torch.randint(0, 3, (2, 8, 8))
    logits = torch.randn(2, 3, 8, 8)
    segmentation = make_task("segmentation", TrainConfig())
    assert torch.equal(segmentation.loss(logits, images, masks), SegmentationLoss()(logits, masks))
    reconstruction = make_task("reconstruction", TrainConfig())
    assert torch.equal(reconstruction.loss(images * 0.5, images, masks), ReconstructionLoss()(images * 0.5, images))
    meter = segmentation.meter(3, torch.device("cpu"))
    meter.update(logits, images, masks)
    assert {"val_miou", "val_mdice", "val_acc"} <= set(meter.results())
    quality = reconstruction.meter(3, torch.device("cpu"))
    quality.update(images, images, masks)
    assert quality.results()["val_ssim"] == pytest.approx(1.0)
