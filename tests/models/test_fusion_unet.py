"""Tests for petseg.models.fusion_unet, global_encoders and clip_weights: frozen global encoders (CLIP,
EfficientNet-Lite0) and the fused UNets (what the vector changes: tests/evaluation/test_fusion.py)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import torch

from petseg.models import build_model, describe_weights
from petseg.models.clip_weights import CLIP_WEIGHTS_ENV, ClipWeightsUnavailable
from petseg.models.fusion_unet import FusionUNet
from petseg.models.global_encoders import ClipImageEncoder, EfficientNetGlobalEncoder, build_global_encoder
from petseg.models.unet import UNet

torch.set_num_threads(1)

SMALL_UNET = {"depth": 3, "base_width": 8, "max_width": 16, "dropout": 0.0}
EFFNET_32 = {"backend": "efficientnet_lite0", "image_size": 32}
TINY_CLIP = "petseg-test-tiny-vit"


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register a tiny open_clip architecture (2-layer ViT, 32 px, 16-d embedding) for fast tests."""
    import open_clip

    folder = tmp_path_factory.mktemp("open_clip_configs")
    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16},
              "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1}}
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / f"{TINY_CLIP}.json")
    return TINY_CLIP


@pytest.fixture(scope="module")
def tiny_clip_file(tiny_clip_name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A random tiny CLIP saved as a full state-dict file, and the model itself."""
    import open_clip

    torch.manual_seed(3)
    model = open_clip.create_model(tiny_clip_name, pretrained=None).eval()
    path = tmp_path_factory.mktemp("clip_weights") / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path, model


def small_fusion(fusion: str, **kwargs) -> FusionUNet:
    torch.manual_seed(0)
    config = {"name": "fusion_unet", "fusion": fusion, "global_encoder": kwargs.pop("global_encoder", EFFNET_32),
              **SMALL_UNET, **kwargs}
    return build_model(config)


# ------------------------------------------------------------------------------------------ encoders


def test_efficientnet_global_encoder_gives_pooled_packaged_features() -> None:
    encoder = EfficientNetGlobalEncoder(image_size=64)
    assert encoder.output_dim == 1280 and "ImageNet" in encoder.description and "64 px" in encoder.description
    images = torch.rand(2, 3, 48, 48)
    vector = encoder(images)
    assert vector.shape == (2, 1280) and not vector.requires_grad
    resized = torch.nn.functional.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False,
                                              antialias=True)
    with torch.no_grad():
        expected = encoder.network.forward_head(encoder.network.forward_features((resized - 0.5) / 0.5),
                                                pre_logits=True)
    torch.testing.assert_close(vector, expected)
    assert "RANDOM" in EfficientNetGlobalEncoder(pretrained=False).description


def test_unknown_backend_and_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        build_global_encoder({"backend": "vgg"})
    with pytest.raises(ValueError, match="invalid global_encoder options"):
        build_global_encoder({"backend": "efficientnet_lite0", "model_name": "ViT-B-16"})


def test_clip_weights_file_round_trip_gives_identical_embeddings(tiny_clip_file) -> None:
    path, reference = tiny_clip_file
    encoder = ClipImageEncoder(TINY_CLIP, pretrained=str(path), preprocess_from=None)
    assert encoder.output_dim == 16 and str(path) in encoder.description
    assert "default preprocessing" in encoder.description  # a raw file: the description says whose statistics
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = reference.visual((images - encoder.mean) / encoder.std)
    torch.testing.assert_close(encoder(images), expected, rtol=0, atol=0)
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training


def test_clip_weights_from_the_environment_variable(tiny_clip_file, monkeypatch: pytest.MonkeyPatch) -> None:
    path, reference = tiny_clip_file
    monkeypatch.setenv(CLIP_WEIGHTS_ENV, str(path))
    encoder = ClipImageEncoder(TINY_CLIP, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25))
    assert CLIP_WEIGHTS_ENV in encoder.description and "from the config" in encoder.description
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference.visual((images - 0.5) / 0.25)
    torch.testing.assert_close(encoder(images), expected, rtol=0, atol=0)


def test_clip_offline_without_weights_fails_fast_and_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    import open_clip  # noqa: F401  (imported before timing: the limit is on the lookup, not the import)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(CLIP_WEIGHTS_ENV, raising=False)
    start = time.perf_counter()
    with pytest.raises(ClipWeightsUnavailable) as error:
        ClipImageEncoder("ViT-B-16", pretrained="openai", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 1.0
    message = str(error.value)
    assert "HF_HUB_OFFLINE" in message and CLIP_WEIGHTS_ENV in message and "weights file" in message
    with pytest.raises(ClipWeightsUnavailable, match="not a known open_clip tag"):
        ClipImageEncoder("ViT-B-16", pretrained=str(tmp_path / "missing.pt"))


def test_random_clip_only_when_asked_and_then_labelled(tiny_clip_name: str) -> None:
    encoder = ClipImageEncoder(tiny_clip_name, pretrained="none")
    assert "RANDOM" in encoder.description
    with pytest.raises(ValueError, match="takes 32 px"):
        ClipImageEncoder(tiny_clip_name, pretrained="none", image_size=64)


# --------------------------------------------------------------------------------------- fused UNets


@pytest.mark.parametrize("fusion", ["concat", "film"])
def test_fused_unet_shapes_and_vector_dimensions(fusion: str) -> None:
    model = small_fusion(fusion)
    assert isinstance(model.projection, torch.nn.Linear) and model.projection.in_features == 1280
    images = torch.rand(2, 3, 32, 32)
    assert model(images).shape == (2, 3, 32, 32)
    assert model.embed(images).shape == (2, 512)
    with pytest.raises(ValueError, match="embedding must be"):
        model(images, embedding=torch.zeros(2, 7))
    with pytest.raises(ValueError, match="fusion must be one of"):
        small_fusion("add")


def test_clip_backend_vector_is_used_as_is(tiny_clip_name: str) -> None:
    model = small_fusion("concat", global_encoder={"backend": "clip", "model_name": tiny_clip_name,
                                                   "pretrained": "none"}, embedding_dim=16)
    assert isinstance(model.projection, torch.nn.Identity)
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert "RANDOM" in model.weights_description


@pytest.mark.parametrize("fusion", ["concat", "film"])
def test_global_encoder_stays_frozen_through_a_training_step(fusion: str) -> None:
    model = small_fusion(fusion)
    model.train()
    assert not model.global_encoder.training and model.encoder.training
    before = copy.deepcopy(model.global_encoder.state_dict())
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in model.global_encoder.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    loss = model(torch.rand(2, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is None for p in model.global_encoder.parameters())
    assert model.projection.weight.grad is not None  # the learned projection trains
    optimizer.step()
    after = model.global_encoder.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # BatchNorm statistics included


def test_film_is_the_identity_at_initialisation() -> None:
    model = small_fusion("film").eval()
    plain = UNet(n_classes=3, **SMALL_UNET).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if k.split(".")[0] in ("encoder", "decoder", "head")})
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), plain(images), rtol=0, atol=0)
        torch.testing.assert_close(model(images, embedding=torch.randn(2, 512)), plain(images), rtol=0, atol=0)
    assert len(model.film.heads) == SMALL_UNET["depth"] - 1
    assert len(small_fusion("film", film_stages=1).film.heads) == 1
    with pytest.raises(ValueError, match="film_stages"):
        small_fusion("film", film_stages=5)


def test_concat_fusion_adds_a_spatially_uniform_offset_at_the_bottleneck() -> None:
    model = small_fusion("concat").eval()
    bottleneck = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        difference = model.fuse_bottleneck(bottleneck, torch.randn(2, 512)) - model.fuse_bottleneck(
            bottleneck, torch.randn(2, 512))
    assert difference.abs().amax() > 0
    torch.testing.assert_close(difference, difference[:, :, :1, :1].expand_as(difference))


@pytest.mark.parametrize("fusion", ["concat", "film"])
def test_checkpoint_round_trip_through_the_trainer_loader(fusion: str, tmp_path: Path) -> None:
    from petseg.training.checkpoints import load_model_from_checkpoint

    model = small_fusion(fusion)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    torch.save({"model": model.state_dict(), "model_config": model.petseg_config}, tmp_path / "best.pt")
    restored = load_model_from_checkpoint(tmp_path / "best.pt")
    assert isinstance(restored, FusionUNet) and restored.fusion == fusion
    images = torch.rand(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model(images), rtol=0, atol=0)


def test_a_checkpoint_written_before_the_rename_still_loads(tmp_path: Path) -> None:
    """Issue 15: runs of experiment ``clip_unet`` saved class ``GlobalFusionUNet``; the builder was ``fusion_unet``
    then as now and the state keys are unchanged, so such a checkpoint (and its run folder) loads as it was."""
    from petseg.demo.models import find_finished_runs, full_image_option

    model = small_fusion("film")
    run = tmp_path / "clip_unet-film-quick-s0-0123456789"  # the run folder name of the old experiment
    run.mkdir()
    torch.save({"model": model.state_dict(), "model_config": model.petseg_config, "model_class": "GlobalFusionUNet",
                "task": "segmentation", "config": {"epochs": 1}}, run / "best.pt")
    (run / "experiment.json").write_text(json.dumps({"config": {"experiment": "clip_unet", "task": "segmentation"},
                                                     "data": {"image_size": 32}}))
    (run / "results.json").write_text(json.dumps({"experiment": "clip_unet", "test": {"miou": 0.5}}))
    found = find_finished_runs(tmp_path, "segmentation")  # the demo offers it under the catalog model's key
    assert [(item.spec_key, item.path) for item in found] == [("fusion_film", run)]
    restored = full_image_option(found[0]).load().model
    assert isinstance(restored, FusionUNet) and restored.fusion == "film"
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model.eval()(images), rtol=0, atol=0)


@pytest.mark.parametrize("fusion", ["concat", "film"])
def test_weights_description_from_config_matches_the_built_model(fusion: str) -> None:
    model = small_fusion(fusion)
    assert describe_weights(model.petseg_config) == model.weights_description
    assert "EfficientNet-Lite0 with ImageNet weights" in model.weights_description
    assert "learned linear layer" in model.weights_description
    assert describe_weights({"name": "unet"}) is None
    assert "ImageNet" in describe_weights({"name": "efficientnet_unet"})


# ------------------------------------------------------------------------------- configs and catalog


def test_configs_and_catalog_name_the_encoder() -> None:
    from petseg import catalog
    from petseg.experiment import load_experiment_config

    for key, fusion in (("fusion_concat", "concat"), ("fusion_film", "film")):
        spec = catalog.get(key)
        assert "EfficientNet-Lite0" in spec.label and spec.chapter == "04_fusion_unet"
        config = load_experiment_config(spec.experiment, "quick", spec.overrides)
        assert config["model"]["fusion"] == fusion and config["model"]["global_encoder"]["backend"] == "efficientnet_lite0"
        assert config["data"]["image_size"] == 128
        full = load_experiment_config(spec.experiment, "full", spec.overrides)
        assert full["data"]["image_size"] == 512 and full["model"]["global_encoder"]["image_size"] == 224
    assert "EfficientNet-Lite0" in catalog.get("efficientnet_unet").label


def test_offline_tag_lookup_finds_weights_in_the_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from petseg.models.clip_weights import resolve_clip_weights

    snapshot = tmp_path / "models--timm--vit_base_patch16_clip_224.openai" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    (tmp_path / "models--timm--vit_base_patch16_clip_224.openai" / "refs").mkdir()
    (tmp_path / "models--timm--vit_base_patch16_clip_224.openai" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, tag_config, source = resolve_clip_weights("ViT-B-16", "openai", cache_dir=str(tmp_path))
    assert path == str(snapshot / "open_clip_pytorch_model.bin")
    assert tag_config["quick_gelu"] is True and tag_config["mean"][0] == pytest.approx(0.48145466)
    assert "openai" in source


# ----------------------------------------------------------------- reloading a CLIP fusion checkpoint


def test_clip_fusion_checkpoint_reloads_offline_with_the_training_preprocessing(
        tiny_clip_file, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The checkpoint holds the CLIP tower: a reload fetches nothing and keeps mean/std/activation."""
    from petseg.training.checkpoints import load_model_from_checkpoint

    weights, _ = tiny_clip_file
    copied = tmp_path / "tiny_copy.pt"
    copied.write_bytes(weights.read_bytes())
    monkeypatch.delenv(CLIP_WEIGHTS_ENV, raising=False)
    model = small_fusion("film", embedding_dim=16, global_encoder={
        "backend": "clip", "model_name": TINY_CLIP, "pretrained": str(copied),
        "image_mean": (0.4, 0.5, 0.6), "image_std": (0.2, 0.3, 0.25), "quick_gelu": True}).eval()
    saved = model.checkpoint_config()
    encoder = saved["global_encoder"]
    assert encoder["pretrained"] == "checkpoint" and encoder["quick_gelu"] is True
    assert encoder["image_mean"] == pytest.approx([0.4, 0.5, 0.6]) and str(copied) in encoder["weights_source"]
    assert model.petseg_config["global_encoder"]["pretrained"] == str(copied)  # the given config is untouched
    torch.save({"model": model.state_dict(), "model_config": saved}, tmp_path / "best.pt")
    copied.unlink()  # the original weights file is gone, and the hub is off
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    restored = load_model_from_checkpoint(tmp_path / "best.pt")
    assert "weights from a petseg checkpoint" in restored.global_encoder.description
    assert str(copied) in restored.global_encoder.description
    torch.testing.assert_close(restored.global_encoder.mean, model.global_encoder.mean)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model(images), rtol=0, atol=0)
    assert describe_weights(saved) == restored.weights_description


def test_checkpoint_config_of_an_older_clip_checkpoint_keeps_the_tag_preprocessing() -> None:
    from petseg.models.global_encoders import checkpoint_model_config

    config = {"name": "fusion_unet", "fusion": "concat",
              "global_encoder": {"backend": "clip", "model_name": "ViT-B-16", "pretrained": "openai"}}
    rebuilt = checkpoint_model_config(config)["global_encoder"]
    assert rebuilt["pretrained"] == "checkpoint" and rebuilt["preprocess_from"] == "openai"
    assert config["global_encoder"]["pretrained"] == "openai"  # a copy
    assert checkpoint_model_config(checkpoint_model_config(config)) == checkpoint_model_config(config)
    random = {"name": "fusion_unet", "global_encoder": {"backend": "clip", "model_name": "ViT-B-16", "pretrained": ""}}
    rebuilt_random = checkpoint_model_config(random)["global_encoder"]  # "" built random weights: no tag's table
    assert "preprocess_from" not in rebuilt_random and rebuilt_random["pretrained"] == "checkpoint"
    effnet = {"name": "fusion_unet", "global_encoder": dict(EFFNET_32)}
    assert checkpoint_model_config(effnet) == effnet


def test_vector_controls_replace_the_images_own_vector() -> None:
    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32)
    own = FusionUNet("concat", EFFNET_32, embedding_dim=8, **SMALL_UNET).eval()
    shuffled = FusionUNet("concat", EFFNET_32, embedding_dim=8, vector_control="shuffled", **SMALL_UNET).eval()
    shuffled.load_state_dict(own.state_dict())
    vectors = own.embed(images)
    torch.testing.assert_close(shuffled.controlled(vectors), vectors[[2, 0, 1]])
    with torch.no_grad():  # the shuffled model is the own-vector model fed each image's neighbour's vector
        torch.testing.assert_close(shuffled(images), own(images, embedding=vectors[[2, 0, 1]]))
    random = FusionUNet("film", EFFNET_32, embedding_dim=8, vector_control="random", **SMALL_UNET)
    noise = random.controlled(vectors)
    assert noise.shape == vectors.shape and not torch.allclose(noise, vectors)
    with pytest.raises(ValueError, match="vector_control"):
        FusionUNet("concat", EFFNET_32, vector_control="zeros", **SMALL_UNET)
    model = build_model({"name": "fusion_unet", "fusion": "concat", "global_encoder": EFFNET_32, "embedding_dim": 8,
                         "vector_control": "shuffled", **SMALL_UNET})
    assert model.vector_control == "shuffled"
