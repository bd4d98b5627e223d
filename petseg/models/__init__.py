"""Model zoo: ``build_model(config)`` builds any registered model from a plain dict.

``config["name"]`` selects the builder; every other key is passed to it as a keyword argument::

    build_model({"name": "unet", "depth": 5, "base_width": 32, "dropout": 0.1})

Add a model by registering a builder (keep heavy imports inside the builder so ``petseg.models`` stays
cheap to import)::

    @register_model("clip_unet")
    def _build_clip_unet(**kwargs) -> nn.Module:
        from petseg.models.clip_unet import ClipUNet
        return ClipUNet(**kwargs)

The returned module carries the config it was built from as ``model.petseg_config``; the trainer stores it
in checkpoints so a model can be rebuilt from a checkpoint alone.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

__all__ = ["MODEL_REGISTRY", "available_models", "build_model", "register_model"]

ModelBuilder = Callable[..., nn.Module]
MODEL_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder(**kwargs) -> nn.Module`` under ``name`` (error if already taken)."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in MODEL_REGISTRY and MODEL_REGISTRY[name] is not builder:
            raise ValueError(f"a model named {name!r} is already registered")
        MODEL_REGISTRY[name] = builder
        return builder

    return decorator


def available_models() -> list[str]:
    """Sorted names accepted by :func:`build_model`."""
    return sorted(MODEL_REGISTRY)


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """Build the model named ``config["name"]`` with the remaining keys as keyword arguments.

    Raises ValueError for a missing or unknown name (listing the valid ones) and for keyword arguments the
    builder does not accept.
    """
    if "name" not in config:
        raise ValueError(f"model config needs a 'name' key; valid names: {', '.join(available_models())}")
    kwargs = dict(config)
    name = kwargs.pop("name")
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(available_models())}")
    builder = MODEL_REGISTRY[name]
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as error:
        raise ValueError(f"invalid arguments for model {name!r}: {error}") from error
    model = builder(**kwargs)
    model.petseg_config = copy.deepcopy(dict(config))
    return model


@register_model("unet")
def _build_unet(**kwargs: Any) -> nn.Module:
    from petseg.models.unet import UNet

    return _call_with_signature_of(UNet, kwargs)


@register_model("autoencoder")
def _build_autoencoder(**kwargs: Any) -> nn.Module:
    from petseg.models.autoencoder import ConvAutoencoder

    return _call_with_signature_of(ConvAutoencoder, kwargs)


@register_model("efficientnet_unet")
def _build_efficientnet_unet(**kwargs: Any) -> nn.Module:
    from petseg.models.efficientnet_unet import EfficientNetUNet

    return _call_with_signature_of(EfficientNetUNet, kwargs)


@register_model("ae_unet")
def _build_ae_unet(autoencoder_checkpoint: str | None = None, freeze_encoder: bool = True,
                   n_classes: int = 3, in_channels: int = 3, depth: int = 6, base_width: int = 32,
                   max_width: int = 512, dropout: float = 0.0, upsample: str = "transpose") -> nn.Module:
    """UNet initialised from an autoencoder's encoder.

    With ``autoencoder_checkpoint`` (a checkpoint written by :func:`petseg.train.train` for an
    ``autoencoder`` with the same encoder arguments) the encoder weights are copied from it; without one
    the encoder is random, which is what you want when about to load a trained ``ae_unet`` checkpoint.
    ``freeze_encoder`` is applied either way.
    """
    from petseg.models.autoencoder import ConvAutoencoder, unet_from_autoencoder

    autoencoder = ConvAutoencoder(in_channels, depth, base_width, max_width, dropout, upsample)
    if autoencoder_checkpoint is not None:
        from petseg.train import load_checkpoint

        load_checkpoint(autoencoder_checkpoint, autoencoder)
    return unet_from_autoencoder(autoencoder, freeze_encoder=freeze_encoder, n_classes=n_classes)


def _call_with_signature_of(cls: type[nn.Module], kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate ``cls(**kwargs)``, turning unknown keywords into a ValueError naming the valid ones."""
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as error:
        valid = ", ".join(inspect.signature(cls).parameters)
        raise ValueError(f"invalid arguments for {cls.__name__}: {error}; valid: {valid}") from error
    return cls(**kwargs)
