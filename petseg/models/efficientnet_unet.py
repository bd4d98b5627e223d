"""UNet with an ImageNet-pretrained EfficientNet-Lite0 encoder (timm ``tf_efficientnet_lite0``, offline).

* Encoder: timm's ``features_only`` EfficientNet-Lite0 (see :mod:`petseg.models.pretrained`): five feature
  maps with 16, 24, 40, 112, 320 channels at strides 2, 4, 8, 16, 32. BatchNorm + ReLU6, as pretrained.
* Inputs are RGB in [0, 1]; ``forward`` normalises them with the statistics the weights were trained with
  (mean 0.5, std 0.5 per channel, see :mod:`petseg.models.pretrained`), so data pipelines stay unchanged.
* Decoder: starting from the stride-32 map, four stages each double the resolution (:class:`Upsample`),
  concatenate the encoder map of that stride and apply a :class:`ConvBlock` (the blocks of
  :mod:`petseg.models.unet`: conv3x3-InstanceNorm-LeakyReLU twice, spatial dropout). A fifth stage
  up-samples from stride 2 to the input size with no skip. ``decoder_widths`` gives the five stage widths
  (strides 16, 8, 4, 2, 1).
* Head: 1x1 convolution to ``n_classes`` logits at the input size.

Input height and width must be multiples of 32 (:meth:`EfficientNetUNet.check_input_size`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from petseg.models.pretrained import (
    EFFICIENTNET_LITE0_MEAN,
    EFFICIENTNET_LITE0_STD,
    LITE0_FEATURE_CHANNELS,
    load_efficientnet_lite0,
)
from petseg.models.unet import ConvBlock, FreezableEncoder, Upsample, init_weights

__all__ = ["EfficientNetUNet", "SkipDecoder"]

INPUT_MULTIPLE = 32


class SkipDecoder(nn.Module):
    """UNet decoder for an encoder whose skip maps have their own widths.

    ``forward(features)`` takes ``len(skip_channels)`` maps, finest first, each at half the resolution of
    the previous one, and returns ``widths[-1]`` channels at twice the resolution of ``features[0]``.
    ``widths`` has ``len(skip_channels)`` entries: one per skip stage (coarse to fine) plus the final stage.
    """

    def __init__(self, skip_channels: Sequence[int], widths: Sequence[int], dropout: float = 0.0,
                 upsample: str = "transpose") -> None:
        super().__init__()
        self.skip_channels = list(skip_channels)
        self.widths = list(widths)
        if len(self.widths) != len(self.skip_channels):
            raise ValueError(f"need {len(self.skip_channels)} decoder widths (one per stride "
                             f"{len(self.skip_channels) - 1} skips + final), got {len(self.widths)}")
        if any(width < 1 for width in self.widths):
            raise ValueError(f"decoder widths must be positive, got {self.widths}")
        skips = [*reversed(self.skip_channels[:-1]), 0]  # the final stage has no skip
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        channels = self.skip_channels[-1]
        for width, skip in zip(self.widths, skips, strict=True):
            self.ups.append(Upsample(channels, width, upsample))
            self.blocks.append(ConvBlock(width + skip, width, dropout))
            channels = width

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.skip_channels):
            raise ValueError(f"decoder expects {len(self.skip_channels)} feature maps, got {len(features)}")
        x = features[-1]
        skips: list[torch.Tensor | None] = [*reversed(features[:-1]), None]
        for up, block, skip in zip(self.ups, self.blocks, skips, strict=True):
            x = up(x)
            x = block(x if skip is None else torch.cat([x, skip], dim=1))
        return x


class EfficientNetUNet(FreezableEncoder, nn.Module):
    """``forward(images [B, 3, H, W] in [0, 1]) -> logits [B, n_classes, H, W]``; H, W multiples of 32.

    ``encoder`` (timm features model), ``decoder`` (:class:`SkipDecoder`) and ``head`` (1x1 conv) are
    submodules. ``pretrained`` loads the packaged ImageNet weights into the encoder (random init otherwise,
    e.g. before loading a checkpoint). :meth:`freeze_encoder` (also the ``freeze_encoder`` argument) sets
    ``requires_grad=False`` on the encoder and keeps it in eval mode (BatchNorm statistics fixed) even after
    ``model.train()``.
    """

    def __init__(self, n_classes: int = 3, pretrained: bool = True,
                 decoder_widths: Sequence[int] = (128, 64, 48, 32, 16), freeze_encoder: bool = False,
                 dropout: float = 0.1, upsample: str = "transpose") -> None:
        super().__init__()
        self.n_classes = n_classes
        self.encoder = load_efficientnet_lite0(pretrained=pretrained, features_only=True)
        channels = tuple(self.encoder.feature_info.channels())
        if channels != LITE0_FEATURE_CHANNELS:
            raise ValueError(f"unexpected encoder channels {channels}, expected {LITE0_FEATURE_CHANNELS}")
        self.decoder = SkipDecoder(channels, decoder_widths, dropout, upsample)
        self.head = nn.Conv2d(self.decoder.widths[-1], n_classes, kernel_size=1)
        init_weights(self.decoder)
        init_weights(self.head)
        self.register_buffer("mean", torch.tensor(EFFICIENTNET_LITE0_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(EFFICIENTNET_LITE0_STD).view(1, 3, 1, 1), persistent=False)
        self.encoder_frozen = False
        self.freeze_encoder(freeze_encoder)

    @staticmethod
    def check_input_size(height: int, width: int) -> None:
        """Raise ValueError unless ``height`` and ``width`` are positive multiples of 32."""
        if height < INPUT_MULTIPLE or width < INPUT_MULTIPLE or height % INPUT_MULTIPLE or width % INPUT_MULTIPLE:
            raise ValueError(f"input size {height}x{width} must be a multiple of {INPUT_MULTIPLE} in both "
                             f"dimensions (the encoder's output stride); resize or pad the images")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] RGB to the encoder's input statistics."""
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        self.check_input_size(images.shape[-2], images.shape[-1])
        features = self.encoder(self.normalize(images))
        return self.head(self.decoder(features))
