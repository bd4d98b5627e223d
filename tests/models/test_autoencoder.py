"""Tests for petseg.models.autoencoder: shapes, no skips, encoder transfer, SSIM/PSNR."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from petseg.evaluation.reconstruction import reconstruction_metrics
from petseg.models import build_model
from petseg.models.autoencoder import ConvAutoencoder, unet_from_autoencoder
from petseg.models.unet import UNet, UNetEncoder

torch.set_num_threads(1)


def tiny_autoencoder(**kwargs) -> ConvAutoencoder:
    torch.manual_seed(0)
    return ConvAutoencoder(depth=3, base_width=4, max_width=16, **kwargs)


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_reconstruction_shape_and_range(upsample: str) -> None:
    model = tiny_autoencoder(upsample=upsample)
    images = torch.rand(2, 3, 16, 16)
    output = model(images)
    assert output.shape == images.shape
    assert output.min() >= 0 and output.max() <= 1
    assert isinstance(model.encoder, UNetEncoder)
    assert model.encode(images).shape == (2, 16, 4, 4)


def test_decoder_has_no_skip_connections() -> None:
    model = tiny_autoencoder().eval()
    images = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        features = model.encoder(images)
        # the decoder only ever sees the bottleneck: changing finer features cannot matter
        assert torch.equal(model.decoder(features[-1]), model(images))
    first_block = model.decoder.blocks[0][0]
    assert first_block.in_channels == model.encoder.widths[-2]  # not doubled by a concatenation


@pytest.mark.parametrize("freeze", [True, False])
def test_unet_from_autoencoder_copies_encoder(freeze: bool) -> None:
    autoencoder = tiny_autoencoder(dropout=0.2)
    unet = unet_from_autoencoder(autoencoder, freeze_encoder=freeze)
    assert isinstance(unet, UNet) and unet.depth == 3 and unet.encoder.widths == autoencoder.encoder.widths
    for (name, value), (other_name, other) in zip(unet.encoder.state_dict().items(),
                                                  autoencoder.encoder.state_dict().items(), strict=True):
        assert name == other_name and torch.equal(value, other)
    assert unet(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    unet.train()
    assert all(p.requires_grad != freeze for p in unet.encoder.parameters())
    assert unet.encoder.training != freeze
    assert all(p.requires_grad for p in unet.decoder.parameters())
    # a copy, not shared storage: training the UNet leaves the autoencoder alone
    with torch.no_grad():
        next(unet.encoder.parameters()).add_(1.0)
    assert not torch.equal(next(unet.encoder.parameters()), next(autoencoder.encoder.parameters()))


def test_frozen_encoder_gets_no_gradient_but_decoder_does() -> None:
    unet = unet_from_autoencoder(tiny_autoencoder(), freeze_encoder=True)
    unet(torch.rand(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is None for p in unet.encoder.parameters())
    assert all(p.grad is not None for p in unet.decoder.parameters())


def test_reconstruction_metrics_perfect_and_imperfect() -> None:
    images = torch.rand(4, 3, 16, 16)
    loader = DataLoader(TensorDataset(images, torch.zeros(4, 16, 16, dtype=torch.long)), batch_size=2)

    class Identity(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    perfect = reconstruction_metrics(Identity(), loader)
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-4) and perfect["psnr"] > 60
    model = tiny_autoencoder().train()
    metrics = reconstruction_metrics(model, loader)
    assert set(metrics) == {"ssim", "psnr"} and metrics["ssim"] < 0.9 and 0 < metrics["psnr"] < 40
    assert model.training  # mode restored


def test_build_model_autoencoder_and_ae_unet(tmp_path) -> None:
    autoencoder = build_model({"name": "autoencoder", "depth": 3, "base_width": 4, "max_width": 16})
    assert isinstance(autoencoder, ConvAutoencoder)
    path = tmp_path / "ae.pt"
    torch.save({"model": autoencoder.state_dict()}, path)
    unet = build_model({"name": "ae_unet", "autoencoder_checkpoint": str(path), "freeze_encoder": True,
                        "depth": 3, "base_width": 4, "max_width": 16})
    assert isinstance(unet, UNet) and unet.encoder_frozen
    assert torch.equal(unet.encoder.stages[0][0].weight, autoencoder.encoder.stages[0][0].weight)
