"""Tests for petseg.models.unet and the build_model factory."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from petseg.models import MODEL_REGISTRY, available_models, build_model, register_model
from petseg.models.unet import InstanceNorm, UNet, UNetDecoder, UNetEncoder, stage_widths

torch.set_num_threads(1)


def test_stage_widths_double_and_cap() -> None:
    assert stage_widths(6, 32, 512) == [32, 64, 128, 256, 512, 512]
    assert stage_widths(4, 4, 16) == [4, 8, 16, 16]
    with pytest.raises(ValueError):
        stage_widths(0, 4, 16)


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_forward_shape_and_default_depth(upsample: str) -> None:
    torch.manual_seed(0)
    model = UNet(depth=3, base_width=4, upsample=upsample)
    logits = model(torch.rand(2, 3, 16, 16))
    assert logits.shape == (2, 3, 16, 16)
    default = UNet()
    assert default.depth == 6 and default.encoder.widths == [32, 64, 128, 256, 512, 512]


def test_encoder_returns_skip_features_and_decoder_consumes_them() -> None:
    encoder = UNetEncoder(depth=4, base_width=4, max_width=16)
    features = encoder(torch.rand(1, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in features] == [(4, 32, 32), (8, 16, 16), (16, 8, 8), (16, 4, 4)]
    decoder = UNetDecoder(encoder.widths)
    assert decoder(features).shape == (1, 4, 32, 32)
    with pytest.raises(ValueError, match="feature maps"):
        decoder(features[:-1])


def test_blocks_use_instance_norm_leaky_relu_and_spatial_dropout() -> None:
    model = UNet(depth=3, base_width=4, dropout=0.3)
    kinds = {type(module) for module in model.modules()}
    assert {InstanceNorm, nn.LeakyReLU, nn.Dropout2d, nn.MaxPool2d, nn.ConvTranspose2d} <= kinds
    norms = [m for m in model.modules() if isinstance(m, InstanceNorm)]
    assert all(norm.affine and norm.num_groups == norm.num_channels for norm in norms)
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, nn.Dropout2d))
    assert all(m.negative_slope == 0.01 for m in model.modules() if isinstance(m, nn.LeakyReLU))
    assert isinstance(model.encoder, UNetEncoder) and isinstance(model.decoder, UNetDecoder)
    assert model.head.out_channels == 3


@pytest.mark.parametrize("size", [(18, 16), (16, 10)])
def test_input_size_not_divisible_raises_clear_error(size: tuple[int, int]) -> None:
    model = UNet(depth=3, base_width=4)  # needs multiples of 4
    with pytest.raises(ValueError, match="not divisible by 4 \\(depth=3, stem=full\\)"):
        model(torch.rand(1, 3, *size))


def test_one_pixel_bottleneck_raises_clear_error() -> None:
    model = UNet(depth=4, base_width=4)
    with pytest.raises(ValueError, match="bottleneck"):
        model(torch.rand(1, 3, 8, 8))


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = UNet(depth=3, base_width=4, dropout=0.0)
    model(torch.rand(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_freeze_encoder_keeps_it_in_eval_mode() -> None:
    model = UNet(depth=3, base_width=4, dropout=0.5)
    model.freeze_encoder(True)
    model.train()
    assert not model.encoder.training and model.decoder.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.freeze_encoder(False)
    assert model.encoder.training and all(p.requires_grad for p in model.encoder.parameters())


# ---------------------------------------------------------------------------------------- factory


def test_build_model_unet_and_config_is_attached() -> None:
    config = {"name": "unet", "depth": 3, "base_width": 4, "dropout": 0.0}
    model = build_model(config)
    assert isinstance(model, UNet) and model.depth == 3
    assert model.petseg_config == config


def test_build_model_unknown_name_lists_valid_names() -> None:
    valid = ", ".join(available_models())
    assert {"ae_unet", "autoencoder", "unet"} <= set(available_models())
    with pytest.raises(ValueError, match=f"valid names: {re.escape(valid)}$"):
        build_model({"name": "resnet"})
    with pytest.raises(ValueError, match="'name'"):
        build_model({"depth": 3})


def test_build_model_rejects_unknown_kwargs() -> None:
    with pytest.raises(ValueError, match="invalid arguments"):
        build_model({"name": "unet", "dept": 3})


def test_registry_is_extendable() -> None:
    @register_model("tiny_test_model")
    def _build(width: int = 2) -> nn.Module:
        return nn.Conv2d(3, width, 1)

    try:
        assert "tiny_test_model" in available_models()
        assert build_model({"name": "tiny_test_model", "width": 5}).out_channels == 5
        with pytest.raises(ValueError, match="already registered"):
            register_model("tiny_test_model")(lambda: nn.Identity())
    finally:
        MODEL_REGISTRY.pop("tiny_test_model")


def test_instance_norm_is_torch_instance_norm_with_the_same_parameters() -> None:
    """GroupNorm's kernel with one group per channel computes nn.InstanceNorm2d(affine=True), forward and
    backward, and the two share their state-dict keys (checkpoints load either way)."""
    torch.manual_seed(0)
    ours, torchs = InstanceNorm(6), nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
    torchs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 6, 9, 7, requires_grad=True)
    y_ours, y_torch = ours(x), torchs(x)
    torch.testing.assert_close(y_ours, y_torch, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(y_ours)
    (g_ours,) = torch.autograd.grad(y_ours, x, grad)
    (g_torch,) = torch.autograd.grad(y_torch, x, grad)
    torch.testing.assert_close(g_ours, g_torch, atol=1e-5, rtol=1e-4)
    channels_last = ours(x.detach().contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, y_torch.detach(), atol=1e-5, rtol=1e-5)


def test_strided_stem_halves_every_stage_and_returns_full_size_logits() -> None:
    torch.manual_seed(0)
    model = UNet(depth=3, base_width=4, max_width=16, stem="strided")
    features = model.encoder(torch.rand(2, 3, 32, 32))
    assert [f.shape[-1] for f in features] == [16, 8, 4]
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    assert model.encoder.hyperparameters()["stem"] == "strided"
    with pytest.raises(ValueError, match="not divisible by 8 \\(depth=3, stem=strided\\)"):
        model(torch.rand(1, 3, 36, 36))
    with pytest.raises(ValueError, match="stem must be one of"):
        UNet(stem="wide")
    full = UNet(depth=3, base_width=4, max_width=16)
    assert sum(p.numel() for p in full.parameters()) == sum(p.numel() for p in model.parameters())
