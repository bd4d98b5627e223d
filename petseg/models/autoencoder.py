"""Convolutional autoencoder whose encoder is a :class:`~petseg.models.unet.UNetEncoder`.

The decoder mirrors the UNet decoder but has **no skip connections**: everything it knows about the image
has to pass through the bottleneck, so the encoder is forced to learn a compact description. The output is
a sigmoid, i.e. an RGB image in ``[0, 1]`` like the inputs.

:func:`unet_from_autoencoder` turns a (pre-trained) autoencoder into a segmentation UNet that starts from
the autoencoder's encoder weights, either frozen or fine-tuned. :func:`petseg.evaluation.reconstruction.reconstruction_metrics`
reports SSIM and PSNR (``data_range=1``) of the reconstructions over a data loader.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from petseg.models.unet import UNet, UNetDecoder, UNetEncoder, init_weights

__all__ = ["AutoencoderDecoder", "ConvAutoencoder", "unet_from_autoencoder"]


class AutoencoderDecoder(UNetDecoder):
    """Up-sample the bottleneck stage by stage (no skips) and map to ``out_channels`` through a sigmoid."""

    def __init__(self, widths: Sequence[int], out_channels: int = 3, upsample: str = "transpose",
                 dropout: float = 0.0) -> None:
        super().__init__(widths, upsample, dropout, skips=False)
        self.head = nn.Conv2d(self.widths[0], out_channels, kernel_size=1)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        x = bottleneck
        for up, block in zip(self.ups, self.blocks, strict=True):
            x = block(up(x))
        return torch.sigmoid(self.head(x))


class ConvAutoencoder(nn.Module):
    """``forward(images [B, C, H, W] in [0, 1]) -> reconstruction [B, C, H, W] in [0, 1]``.

    ``encoder`` is a :class:`UNetEncoder` with the same hyper-parameters a :class:`UNet` would use; only its
    bottleneck (last feature map) reaches the decoder.
    """

    def __init__(self, in_channels: int = 3, depth: int = 6, base_width: int = 32, max_width: int = 512,
                 dropout: float = 0.0, upsample: str = "transpose") -> None:
        super().__init__()
        self.upsample = upsample
        self.encoder = UNetEncoder(in_channels, depth, base_width, max_width, dropout)
        self.decoder = AutoencoderDecoder(self.encoder.widths, in_channels, upsample, dropout)
        init_weights(self)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The bottleneck features ``[B, widths[-1], H / 2**(depth-1), W / 2**(depth-1)]``."""
        return self.encoder(images)[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(images))


def unet_from_autoencoder(autoencoder: ConvAutoencoder, freeze_encoder: bool, n_classes: int = 3,
                          dropout: float | None = None, upsample: str | None = None) -> UNet:
    """Build a segmentation :class:`UNet` whose encoder is a copy of ``autoencoder.encoder``.

    The UNet has the autoencoder's encoder hyper-parameters; its decoder and head are freshly initialised.
    ``dropout`` (for the whole UNet) and ``upsample`` default to the autoencoder's. With
    ``freeze_encoder=True`` the encoder parameters get ``requires_grad=False`` and the encoder stays in eval
    mode (dropout off) whatever ``model.train()`` says; otherwise it is fine-tuned with the rest.
    The autoencoder itself is not modified.
    """
    hyper = autoencoder.encoder.hyperparameters()
    unet = UNet(
        in_channels=int(hyper["in_channels"]),
        n_classes=n_classes,
        depth=int(hyper["depth"]),
        base_width=int(hyper["base_width"]),
        max_width=int(hyper["max_width"]),
        dropout=float(hyper["dropout"]) if dropout is None else dropout,
        upsample=autoencoder.upsample if upsample is None else upsample,
        stem=str(hyper.get("stem", "full")),
    )
    encoder_state = copy.deepcopy(autoencoder.encoder.state_dict())
    unet.encoder.load_state_dict(encoder_state)
    unet.freeze_encoder(freeze_encoder)
    return unet
