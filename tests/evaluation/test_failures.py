"""Failure-analysis helpers."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from petseg.evaluation.failures import overfitting_signs, worst
from petseg.evaluation.reconstruction import per_image_reconstruction


def test_per_image_reconstruction_perfect_and_poor():
    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    class Grey(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(x, 0.5)

    data = [(torch.rand(3, 16, 16), torch.zeros(16, 16)) for _ in range(3)]
    perfect = per_image_reconstruction(Identity(), data, batch_size=2)
    assert len(perfect) == 3 and perfect.ssim.min() > 0.999 and perfect.psnr.min() > 60
    poor = per_image_reconstruction(Grey(), data)
    assert (poor.ssim < 0.2).all() and (poor.psnr < 15).all()


def test_worst_orders_ascending_with_nan_last():
    frame = pd.DataFrame({"miou": [0.5, float("nan"), 0.1, 0.9]})
    assert worst(frame, 3) == [2, 0, 3]
    with pytest.raises(KeyError, match="columns"):
        worst(frame, 1, "dice")


def test_overfitting_signs():
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [1.0, 0.6, 0.4, 0.2],
                            "val_loss": [1.1, 0.7, 0.8, 0.9], "val_miou": [0.3, 0.5, 0.45, 0.4]})
    signs = overfitting_signs(history, "val_miou")
    assert signs["best_val_loss_epoch"] == 2 and signs["val_loss_rise"] == pytest.approx(0.2)
    assert signs["final_gap"] == pytest.approx(0.7) and signs["best_val_miou"] == 0.5
    assert signs["final_val_miou"] == 0.4 and signs["train_loss_drop"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="val_loss"):
        overfitting_signs(pd.DataFrame({"epoch": [1]}))
