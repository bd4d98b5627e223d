"""Reconstruction quality (chapter 3): SSIM and PSNR of an autoencoder's output against its input.

The one place SSIM and PSNR are computed (``data_range=1``: images in ``[0, 1]``): split means with
torchmetrics' meters (:func:`image_quality_meters`, used by training's validation too, and
:func:`reconstruction_metrics`), and per image (:func:`per_image_quality`, :func:`per_image_reconstruction`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["image_quality_meters", "per_image_quality", "per_image_reconstruction", "reconstruction_metrics"]


def image_quality_meters(device: torch.device | str) -> tuple[Any, Any]:
    """torchmetrics ``(StructuralSimilarityIndexMeasure, PeakSignalNoiseRatio)`` with ``data_range=1.0`` on
    ``device``: SSIM averaged over images, PSNR from the mean squared error over every pixel seen."""
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    return (StructuralSimilarityIndexMeasure(data_range=1.0).to(device),
            PeakSignalNoiseRatio(data_range=1.0).to(device))


def per_image_quality(output: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM ``[B]`` and PSNR ``[B]`` (dB; MSE floored at 1e-12) of each reconstruction against its image."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    ssim = structural_similarity_index_measure(output, images, data_range=1.0, reduction="none")
    mse = (output - images).pow(2).flatten(1).mean(dim=1).clamp_min(1e-12)
    return ssim, 10 * torch.log10(1.0 / mse)


@torch.no_grad()
def reconstruction_metrics(model: nn.Module, loader: Iterable, device: torch.device | str | None = None
                           ) -> dict[str, float]:
    """Mean SSIM and PSNR (torchmetrics, ``data_range=1.0``) of ``model(images)`` against ``images``.

    ``loader`` yields ``(images, masks)`` batches (masks are ignored) or bare image batches. The model is
    put in eval mode for the pass and restored to its previous mode afterwards. SSIM is averaged over
    images; PSNR is computed from the mean squared error over all pixels of the loader.
    """
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    ssim, psnr = image_quality_meters(device)
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            images = batch[0] if isinstance(batch, list | tuple) else batch
            images = images.to(device)
            reconstruction = model(images).float().clamp(0, 1)
            ssim.update(reconstruction, images)
            psnr.update(reconstruction, images)
    finally:
        model.train(was_training)
    return {"ssim": float(ssim.compute()), "psnr": float(psnr.compute())}


@torch.no_grad()
def per_image_reconstruction(model: torch.nn.Module, dataset: Iterable, batch_size: int = 16,
                             device: str = "cpu") -> pd.DataFrame:
    """SSIM and PSNR (data range 1) of an autoencoder's reconstruction of every image, in dataset order.

    The whole network input is scored, padding included, as :func:`reconstruction_metrics` does for the split means.
    """
    model = model.to(device).eval()
    ssim, psnr = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = (batch[0] if isinstance(batch, list | tuple) else batch).to(device)
        output = model(images).float().clamp(0, 1)
        image_ssim, image_psnr = per_image_quality(output, images)
        ssim.append(image_ssim.cpu())
        psnr.append(image_psnr.cpu())
    return pd.DataFrame({"ssim": torch.cat(ssim).numpy(), "psnr": torch.cat(psnr).numpy()})
