"""The losses of the three tasks: segmentation (cross-entropy + soft Dice), reconstruction (L1/MSE) and
prompted (SAM 2's recipe)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from petseg.data.labels import IGNORE_INDEX, to_binary
from petseg.training.config import RECONSTRUCTION_LOSSES

__all__ = ["PromptedLoss", "ReconstructionLoss", "SegmentationLoss", "soft_dice_loss"]


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                   eps: float = 1e-7) -> torch.Tensor:
    """Soft Dice loss ``1 - mean_c dice_c`` of softmax(logits ``[B, C, H, W]``) against labels ``[B, H, W]``.

    Sums run over the whole batch. Pixels labelled ``ignore_index`` contribute nothing, and the mean runs
    over the classes present in the (valid) target of the batch; a batch without valid pixels gives 0
    (with a gradient of zero).
    """
    num_classes = logits.shape[1]
    valid = target != ignore_index
    probabilities = logits.float().softmax(dim=1) * valid.unsqueeze(1)
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    one_hot = F.one_hot(safe_target, num_classes).permute(0, 3, 1, 2).to(probabilities.dtype)
    one_hot = one_hot * valid.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (probabilities * one_hot).sum(dims)
    target_sum = one_hot.sum(dims)
    cardinality = probabilities.sum(dims) + target_sum
    dice = 2 * intersection / cardinality.clamp_min(eps)
    present = target_sum > 0
    if not bool(present.any()):
        return probabilities.sum() * 0.0
    return 1 - dice[present].mean()


class SegmentationLoss(nn.Module):
    """``CrossEntropy(weight=class_weights, ignore_index) + dice_weight * soft_dice_loss``."""

    def __init__(self, class_weights: list[float] | None = None, dice_weight: float = 0.0,
                 ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weight)
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Weighted mean over valid pixels, written out so that a batch without valid pixels gives 0, not NaN.
        loss_sum = F.cross_entropy(logits.float(), target, weight=self.class_weights,
                                   ignore_index=self.ignore_index, reduction="sum")
        valid = target != self.ignore_index
        if self.class_weights is None:
            normaliser = valid.sum().to(loss_sum.dtype)
        else:
            normaliser = (self.class_weights[torch.where(valid, target, torch.zeros_like(target))] * valid).sum()
        loss = loss_sum / normaliser.clamp_min(torch.finfo(torch.float32).tiny)
        if self.dice_weight > 0:
            loss = loss + self.dice_weight * soft_dice_loss(logits, target, self.ignore_index)
        return loss


class ReconstructionLoss(nn.Module):
    """L1 or MSE between the reconstruction and the input image."""

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        if kind not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"reconstruction loss must be one of {RECONSTRUCTION_LOSSES}, got {kind!r}")
        self.kind = kind

    def forward(self, reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "l1":
            return F.l1_loss(reconstruction.float(), images.float())
        return F.mse_loss(reconstruction.float(), images.float())


def _binary_target(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float pet target (labels 1 and 2 -> 1) and boolean valid map (not ``IGNORE_INDEX``) of label masks."""
    valid = masks != IGNORE_INDEX
    return (to_binary(masks) == 1).float(), valid


class PromptedLoss(nn.Module):
    """Loss of a promptable binary model (SAM 2's recipe, with BCE in place of focal loss).

    ``outputs``: ``logits [B, M, H, W]`` (M candidate masks), ``iou_predictions [B, M]`` and ``candidates``
    (bool ``[B, M]``: which masks answer each image's prompt). Per image and candidate mask: BCE over valid
    pixels (255 = trimap border and padding are skipped) + ``dice_weight`` * soft Dice of the pet; the mask
    loss of an image is that of its best candidate (only the best of an ambiguous prompt's masks learns, as
    in SAM). The IoU head learns the true IoU of every candidate (MSE, weight ``iou_weight``).
    """

    def __init__(self, dice_weight: float = 1.0, iou_weight: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.dice_weight, self.iou_weight, self.eps = dice_weight, iou_weight, eps

    def forward(self, outputs: Mapping[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        logits = outputs["logits"].float()
        candidates = outputs["candidates"]
        target, valid = _binary_target(masks)
        target, valid = target.unsqueeze(1).expand_as(logits), valid.unsqueeze(1).float().expand_as(logits)
        pixels = valid.sum(dim=(2, 3)).clamp_min(1.0)
        bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid).sum(dim=(2, 3)) / pixels
        probabilities = logits.sigmoid() * valid
        intersection = (probabilities * target).sum(dim=(2, 3))
        dice = 1 - (2 * intersection + self.eps) / (probabilities.sum(dim=(2, 3)) + (target * valid).sum(dim=(2, 3))
                                                     + self.eps)
        per_mask = bce + self.dice_weight * dice
        mask_loss = per_mask.masked_fill(~candidates, float("inf")).min(dim=1).values.mean()
        with torch.no_grad():
            predicted = (logits > 0).float() * valid
            hard_intersection = (predicted * target).sum(dim=(2, 3))
            union = predicted.sum(dim=(2, 3)) + (target * valid).sum(dim=(2, 3)) - hard_intersection
            true_iou = torch.where(union > 0, hard_intersection / union.clamp_min(1.0), torch.ones_like(union))
        iou_error = (outputs["iou_predictions"].float() - true_iou) ** 2
        iou_loss = (iou_error * candidates).sum() / candidates.sum().clamp_min(1)
        return mask_loss + self.iou_weight * iou_loss
