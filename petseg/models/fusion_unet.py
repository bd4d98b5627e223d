"""The global-vector fusion UNet (:class:`FusionUNet`): the chapter 2 UNet with one frozen global image vector
fused in, the way the study's "CLIP+UNet" did, plus a FiLM alternative. The vector comes from ImageNet
EfficientNet-Lite0 by default; CLIP (the study's choice) is one option of ``global_encoder``.

The study fed a frozen CLIP ViT-B/16's global 512-d image embedding into its UNet: broadcast over the
bottleneck, concatenated with the bottleneck features, then a 1x1 convolution. This module rebuilds that
(``fusion="concat"``) and adds FiLM modulation of several decoder stages (``fusion="film"``), so that
"global semantics do not help" can be told apart from "this fusion is poor". The frozen encoders that give
the vector are :mod:`petseg.models.global_encoders`; what the vector changes is measured by
:mod:`petseg.evaluation.fusion`.

Fusions (the UNet itself is :class:`petseg.models.unet.UNetEncoder` + :class:`~petseg.models.unet.UNetDecoder`):

* ``"concat"`` (the study's): ``bottleneck <- conv1x1([bottleneck, broadcast(g)])``. The vector's share of
  that convolution is the same at every bottleneck position: a per-channel constant offset at 1/32 of the
  input resolution (4 x 4 at 128 px with depth 6).
* ``"film"``: after each of the ``film_stages`` coarsest decoder blocks, ``x <- x * (1 + gamma_s(g)) +
  beta_s(g)`` with ``gamma_s, beta_s`` from a small MLP on ``g``. The last layer starts at zero, so at
  initialisation the model is exactly the plain UNet (FiLM is the identity) and the vector's influence is
  learned, at several resolutions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from petseg.models.clip_weights import CHECKPOINT_WEIGHTS, NO_WEIGHTS, requested_weights, weights_word
from petseg.models.global_encoders import (
    EfficientNetGlobalEncoder,
    build_global_encoder,
    checkpoint_model_config,
)
from petseg.models.pretrained import LITE0_WEIGHTS_PACKAGE
from petseg.models.unet import UNetDecoder, UNetEncoder, check_input_size, init_weights

__all__ = ["FUSIONS", "VECTOR_CONTROLS", "FiLM", "FusionUNet", "describe_config_weights", "describe_fusion_weights"]

FUSIONS = ("concat", "film")


VECTOR_CONTROLS = ("none", "shuffled", "random")


class FiLM(nn.Module):
    """Per-stage scale and shift from a vector: ``forward(g [B, E]) -> [(gamma, beta) [B, C_s, 1, 1]]``.

    A shared hidden layer (Linear + ReLU) then one zero-initialised Linear per stage, so every
    ``(gamma, beta)`` starts at zero and ``x * (1 + gamma) + beta`` starts as the identity.
    """

    def __init__(self, embedding_dim: int, stage_channels: Sequence[int], hidden: int = 256) -> None:
        super().__init__()
        self.stage_channels = list(stage_channels)
        self.trunk = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.ReLU(inplace=True))
        self.heads = nn.ModuleList(nn.Linear(hidden, 2 * channels) for channels in self.stage_channels)
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, embedding: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        hidden = self.trunk(embedding)
        out = []
        for head in self.heads:
            gamma, beta = head(hidden)[:, :, None, None].chunk(2, dim=1)
            out.append((gamma, beta))
        return out


class FusionUNet(nn.Module):
    """The chapter 2 UNet with a frozen global image vector fused in (``fusion="concat"`` or ``"film"``).

    ``forward(images [B, 3, H, W] in [0, 1], embedding=None) -> logits [B, n_classes, H, W]``; pass
    ``embedding`` ([B, embedding_dim], e.g. another image's :meth:`embed`) to replace the image's own vector
    (used to measure what the vector changes). ``global_encoder``: see :func:`build_global_encoder`;
    ``film_stages``: how many decoder stages FiLM modulates, coarsest first (None: all ``depth - 1``).
    ``vector_control``: the controls that tell "the vector's information" from "more parameters": ``"none"`` fuses
    each image's own vector; ``"shuffled"`` the vector of another image of the batch (rolled by one: a batch of
    one keeps its own); ``"random"`` Gaussian noise with the batch vectors' overall mean and spread (no
    information about any image). Both apply in training and testing; an ``embedding`` passed in is used as is.
    The UNet arguments are those of :class:`petseg.models.unet.UNet`.
    """

    def __init__(self, fusion: str = "concat", global_encoder: Mapping[str, Any] | None = None,
                 embedding_dim: int = 512, film_stages: int | None = None, film_hidden: int = 256,
                 in_channels: int = 3, n_classes: int = 3, depth: int = 6, base_width: int = 32,
                 max_width: int = 512, dropout: float = 0.1, upsample: str = "transpose",
                 vector_control: str = "none") -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if vector_control not in VECTOR_CONTROLS:
            raise ValueError(f"vector_control must be one of {VECTOR_CONTROLS}, got {vector_control!r}")
        self.vector_control = vector_control
        if in_channels != 3:
            raise ValueError("the global image encoders take RGB images: in_channels must be 3")
        self.fusion = fusion
        self.n_classes = n_classes
        self.global_encoder = build_global_encoder(global_encoder)
        self.embedding_dim = embedding_dim
        self.projection: nn.Module = (nn.Identity() if self.global_encoder.output_dim == embedding_dim
                                      else nn.Linear(self.global_encoder.output_dim, embedding_dim))
        self.encoder = UNetEncoder(in_channels, depth, base_width, max_width, dropout)
        widths = self.encoder.widths
        self.decoder = UNetDecoder(widths, upsample, dropout)
        self.head = nn.Conv2d(widths[0], n_classes, kernel_size=1)
        decoder_channels = [widths[stage] for stage in range(depth - 2, -1, -1)]  # coarsest first
        self.film: FiLM | None = None
        self.fuse: nn.Conv2d | None = None
        if fusion == "concat":
            self.fuse = nn.Conv2d(widths[-1] + embedding_dim, widths[-1], kernel_size=1)
        else:
            stages = len(decoder_channels) if film_stages is None else film_stages
            if not 1 <= stages <= len(decoder_channels):
                raise ValueError(f"film_stages must be between 1 and {len(decoder_channels)}, got {film_stages}")
            self.film = FiLM(embedding_dim, decoder_channels[:stages], film_hidden)
        for part in (self.encoder, self.decoder, self.head, self.fuse):
            if part is not None:
                init_weights(part)  # never the pretrained global encoder

    @property
    def depth(self) -> int:
        return self.encoder.depth

    @property
    def weights_description(self) -> str:
        return describe_fusion_weights(self.fusion, self.global_encoder.description,
                                       self.global_encoder.output_dim, self.embedding_dim)

    def check_input_size(self, height: int, width: int) -> None:
        check_input_size(height, width, self.depth)

    def checkpoint_config(self) -> dict[str, Any] | None:
        """The config a checkpoint of this model stores (:func:`checkpoint_model_config`), or None when the
        model was not built by :func:`petseg.models.build_model`."""
        config = getattr(self, "petseg_config", None)
        return None if config is None else checkpoint_model_config(config, self)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The (projected) global vector of each image, [B, embedding_dim]."""
        return self.projection(self.global_encoder(images))

    def controlled(self, embedding: torch.Tensor) -> torch.Tensor:
        """The vector the model fuses under its ``vector_control`` (the image's own for ``"none"``)."""
        if self.vector_control == "shuffled":
            return embedding.roll(1, dims=0)
        if self.vector_control == "random":
            return torch.randn_like(embedding) * embedding.std() + embedding.mean()
        return embedding

    def fuse_bottleneck(self, bottleneck: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Concat fusion: broadcast the vector over the bottleneck, concatenate, 1x1 conv."""
        tiled = embedding[:, :, None, None].expand(-1, -1, *bottleneck.shape[-2:])
        return self.fuse(torch.cat([bottleneck, tiled.to(bottleneck.dtype)], dim=1))

    def forward(self, images: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        features = self.encoder(images)
        if embedding is None:
            embedding = self.controlled(self.embed(images))
        elif embedding.shape != (images.shape[0], self.embedding_dim):
            raise ValueError(f"embedding must be [{images.shape[0]}, {self.embedding_dim}], "
                             f"got {tuple(embedding.shape)}")
        x = features[-1]
        if self.fuse is not None:
            x = self.fuse_bottleneck(x, embedding)
        modulations = self.film(embedding) if self.film is not None else []
        skips = reversed(features[:-1])
        for stage, (up, block, skip) in enumerate(zip(self.decoder.ups, self.decoder.blocks, skips, strict=True)):
            x = block(torch.cat([up(x), skip], dim=1))
            if stage < len(modulations):
                gamma, beta = modulations[stage]
                x = x * (1 + gamma) + beta
        return self.head(x)


def describe_fusion_weights(fusion: str, encoder_description: str, encoder_dim: int, embedding_dim: int) -> str:
    """Words for a fusion model's weights (they follow "weights initialised"): which frozen encoder gives
    the vector, what is trained."""
    projection = ("used as is" if encoder_dim == embedding_dim
                  else f"mapped {encoder_dim} -> {embedding_dim} by a learned linear layer")
    how = {"concat": "broadcast over the bottleneck, concatenated, 1x1 conv (the study's fusion)",
           "film": "FiLM scale/shift of the decoder stages"}[fusion]
    return (f"at random for the UNet and fusion layers (trained); the global vector comes from "
            f"{encoder_description} ({encoder_dim}-d, {projection}; fusion: {how})")


def describe_config_weights(config: Mapping[str, Any]) -> str:
    """:func:`describe_fusion_weights` from a ``fusion_unet`` model config, without building the model."""
    encoder = dict(config.get("global_encoder") or {"backend": "efficientnet_lite0"})
    embedding_dim = int(config.get("embedding_dim", 512))
    if encoder.get("backend") == "clip":
        name = encoder.get("model_name", "ViT-B-16")
        pretrained, _ = requested_weights(encoder.get("pretrained"))
        random = weights_word(pretrained) in NO_WEIGHTS
        from_checkpoint = weights_word(pretrained) == CHECKPOINT_WEIGHTS
        words = (f"CLIP {name} image tower with RANDOM weights (pretrained: none; not a pretrained CLIP)" if random
                 else f"CLIP {name} image tower, weights from a petseg checkpoint (originally "
                      f"{encoder.get('weights_source') or 'unknown'}), frozen" if from_checkpoint
                 else f"CLIP {name} image tower, weights {pretrained!r}, frozen")
        dim = embedding_dim  # ViT-B-16's embedding; other towers are described once built
    else:
        size = encoder.get("image_size") or EfficientNetGlobalEncoder.native_size
        words = (f"EfficientNet-Lite0 with ImageNet weights (pip package {LITE0_WEIGHTS_PACKAGE}), frozen, "
                 f"{size} px input" if encoder.get("pretrained", True)
                 else "EfficientNet-Lite0 with RANDOM weights (pretrained=false: not a pretrained encoder)")
        dim = 1280
    return describe_fusion_weights(config.get("fusion", "concat"), words, dim, embedding_dim)
