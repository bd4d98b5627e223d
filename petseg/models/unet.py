"""A plain UNet written from scratch: encoder and decoder are separate modules so others can reuse them.

Design (in the spirit of nnU-Net):

* ``depth`` stages (default 6). Stage ``i`` works at resolution ``S / 2**i`` with ``widths[i]`` channels,
  ``widths[i] = min(base_width * 2**i, max_width)``.
* Every stage is a :class:`ConvBlock`: (Conv3x3 -> InstanceNorm(affine) -> LeakyReLU(0.01)) x 2, then
  spatial dropout (``nn.Dropout2d``, which drops whole channels). :class:`InstanceNorm` is
  ``nn.InstanceNorm2d(affine=True)`` computed by GroupNorm's kernel with one group per channel: the same
  numbers and parameters, faster on CPU.
* ``stem="full"`` (the study's): stage 0 works at the input resolution. ``stem="strided"``: the first
  convolution has stride 2, so every stage works at half the resolution (about a quarter of the FLOPs) and the
  logits are up-sampled bilinearly to the input size at the end.
* Down-sampling: 2x2 max-pooling. Up-sampling: 2x2 transposed convolution (``upsample="transpose"``)
  or bilinear interpolation followed by a 1x1 convolution (``upsample="bilinear"``).
* Skip connections concatenate encoder stage ``i`` with the up-sampled decoder features.
* A 1x1 convolution maps the last decoder features to ``n_classes`` logits.

The input height and width must be divisible by ``2**(depth - 1)`` and leave a bottleneck of at least
2x2 pixels (instance normalisation needs more than one pixel): ``UNet.check_input_size`` raises a clear
``ValueError`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBlock", "InstanceNorm", "UNet", "UNetDecoder", "UNetEncoder", "Upsample", "stage_widths"]

UPSAMPLE_MODES = ("transpose", "bilinear")
STEMS = ("full", "strided")


def stage_widths(depth: int, base_width: int, max_width: int) -> list[int]:
    """Channel widths of the ``depth`` stages: ``base_width`` doubling per stage, capped at ``max_width``."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if base_width < 1 or max_width < base_width:
        raise ValueError(f"need 1 <= base_width <= max_width, got {base_width} and {max_width}")
    return [min(base_width * 2**stage, max_width) for stage in range(depth)]


def check_input_size(height: int, width: int, depth: int, stem: str = "full") -> None:
    """Raise ValueError unless an input of this size fits a ``depth``-stage encoder (see module docstring)."""
    factor = 2 ** (depth - 1) * (2 if stem == "strided" else 1)
    if height % factor or width % factor:
        raise ValueError(f"input size {height}x{width} is not divisible by {factor} "
                         f"(depth={depth}, stem={stem}); resize or pad the images, e.g. to a multiple of {factor}")
    if depth > 1 and (height // factor < 2 or width // factor < 2):
        raise ValueError(f"input size {height}x{width} leaves a {height // factor}x{width // factor} "
                         f"bottleneck at depth={depth}; instance normalisation needs at least 2x2, so use "
                         f"inputs of at least {2 * factor}x{2 * factor} or a smaller depth")


class InstanceNorm(nn.GroupNorm):
    """Instance normalisation with a learned scale and shift per channel: ``nn.InstanceNorm2d(affine=True)``
    computed by GroupNorm's kernel (one group per channel), which is 1.5-2x faster on CPU. Same parameters
    (``weight``, ``bias``), same outputs, no running statistics: checkpoints load either way."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__(num_groups=channels, num_channels=channels, eps=eps, affine=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dtype == torch.float32:  # fp32: on the channels_last features directly (fastest overall)
            return super().forward(features)
        # bf16 (CPU autocast): GroupNorm's backward on channels_last is 4x slower than on NCHW, so convert in
        # and back out for the convolutions around it (benchmarks/README.md, "Where the time goes").
        normalised = F.group_norm(features.contiguous(), self.num_groups, self.weight, self.bias, self.eps)
        return normalised.contiguous(memory_format=torch.channels_last)


class ConvBlock(nn.Sequential):
    """(Conv3x3 -> InstanceNorm(affine) -> LeakyReLU(0.01)) x 2 -> Dropout2d(p); keeps the spatial size
    (``stride=2`` on the first convolution halves it: the strided stem)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0, stride: int = 1) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for index in range(2):
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size=3, padding=1, stride=stride if index == 0 else 1,
                          bias=False),
                InstanceNorm(out_channels),
                nn.LeakyReLU(0.01, inplace=True),
            ]
            channels = out_channels
        layers.append(nn.Dropout2d(p=dropout))
        super().__init__(*layers)


class Upsample(nn.Module):
    """Double the spatial size and map ``in_channels`` to ``out_channels`` (transposed conv or bilinear+1x1)."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "transpose") -> None:
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {mode!r}")
        self.mode = mode
        if mode == "transpose":
            self.layer: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        else:
            self.layer = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, kernel_size=1),
            )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer(features)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal initialisation for LeakyReLU(0.01) on every (transposed) convolution; zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(layer.weight, a=0.01, nonlinearity="leaky_relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class UNetEncoder(nn.Module):
    """The contracting path: ``forward(x)`` returns the list of ``depth`` feature maps, finest first.

    Feature ``i`` has ``widths[i]`` channels at ``1 / 2**i`` of the input resolution; the last one is the
    bottleneck. Stage 0 has no pooling; every other stage starts with a 2x2 max-pool.
    """

    def __init__(self, in_channels: int = 3, depth: int = 6, base_width: int = 32, max_width: int = 512,
                 dropout: float = 0.0, stem: str = "full") -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        self.in_channels = in_channels
        self.depth = depth
        self.base_width = base_width
        self.max_width = max_width
        self.dropout = dropout
        self.stem = stem
        self.widths = stage_widths(depth, base_width, max_width)
        self.pool = nn.MaxPool2d(kernel_size=2)
        channels = [in_channels, *self.widths]
        self.stages = nn.ModuleList(
            ConvBlock(channels[stage], channels[stage + 1], dropout,
                      stride=2 if stage == 0 and stem == "strided" else 1) for stage in range(depth)
        )

    def hyperparameters(self) -> dict[str, int | float | str]:
        """The constructor arguments, so a matching encoder (or UNet) can be rebuilt."""
        return {"in_channels": self.in_channels, "depth": self.depth, "base_width": self.base_width,
                "max_width": self.max_width, "dropout": self.dropout, "stem": self.stem}

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        check_input_size(images.shape[-2], images.shape[-1], self.depth, self.stem)
        features = []
        x = images.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout for convolutions
        for stage_index, stage in enumerate(self.stages):
            if stage_index > 0:
                x = self.pool(x)
            x = stage(x)
            features.append(x)
        return features


class UNetDecoder(nn.Module):
    """The expanding path: ``forward(features)`` takes the encoder's list and returns ``widths[0]`` channels
    at full resolution (no classification head). ``skips=False`` builds the stages without skip inputs (the
    autoencoder's decoder, which has its own ``forward``)."""

    def __init__(self, widths: Sequence[int], upsample: str = "transpose", dropout: float = 0.0,
                 skips: bool = True) -> None:
        super().__init__()
        self.widths = list(widths)
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for stage in range(len(self.widths) - 2, -1, -1):
            self.ups.append(Upsample(self.widths[stage + 1], self.widths[stage], upsample))
            self.blocks.append(ConvBlock((2 if skips else 1) * self.widths[stage], self.widths[stage], dropout))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.widths):
            raise ValueError(f"decoder expects {len(self.widths)} feature maps, got {len(features)}")
        x = features[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(features[:-1]), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return x


class FreezableEncoder:
    """``freeze_encoder()`` for a model with an ``encoder`` submodule: a frozen encoder gets no gradients and
    stays in eval mode (no dropout, fixed norm statistics) whatever ``train()`` is called with. Mix in before
    ``nn.Module``; set ``self.encoder_frozen = False`` in ``__init__``."""

    encoder: nn.Module
    encoder_frozen: bool

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Freeze (``requires_grad=False`` + eval mode) or unfreeze the encoder."""
        self.encoder_frozen = frozen
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(not frozen)
        self.train(self.training)  # type: ignore[attr-defined]

    def train(self, mode: bool = True) -> Self:
        super().train(mode)  # type: ignore[misc]
        if self.encoder_frozen:
            self.encoder.eval()
        return self


class UNet(FreezableEncoder, nn.Module):
    """UNet for semantic segmentation: ``forward(images [B, C_in, H, W]) -> logits [B, n_classes, H, W]``.

    ``encoder`` (:class:`UNetEncoder`), ``decoder`` (:class:`UNetDecoder`) and ``head`` (1x1 conv) are
    separate submodules. :meth:`freeze_encoder` stops gradients through the encoder *and* keeps it in eval
    mode (its dropout off) even when ``model.train()`` is called.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 3, depth: int = 6, base_width: int = 32,
                 max_width: int = 512, dropout: float = 0.1, upsample: str = "transpose", stem: str = "full") -> None:
        super().__init__()
        self.n_classes = n_classes
        self.encoder = UNetEncoder(in_channels, depth, base_width, max_width, dropout, stem)
        self.decoder = UNetDecoder(self.encoder.widths, upsample, dropout)
        self.head = nn.Conv2d(self.encoder.widths[0], n_classes, kernel_size=1)
        self.encoder_frozen = False
        init_weights(self)

    @property
    def depth(self) -> int:
        return self.encoder.depth

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ValueError if ``height x width`` inputs do not fit this network's depth (and stem)."""
        check_input_size(height, width, self.depth, self.encoder.stem)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.decoder(self.encoder(images)))
        if self.encoder.stem == "strided":  # the stages worked at half resolution
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits
