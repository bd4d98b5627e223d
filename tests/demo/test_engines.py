"""The demo's models: SAM 2 with the embedding cache, full-image models mapped back, model discovery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from petseg.demo.engines import FullImageEngine, PromptEngine, segment_full_image
from petseg.demo.models import demo_options, find_finished_runs, random_sam2_predictor
from tests.demo.conftest import DEMO_SAM2_SIZE, TINY_RUN, pet_like_image, write_tiny_run


class BrightIsCat(nn.Module):
    """Logits that say "cat" where the input is bright, "background" elsewhere (never "dog")."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        bright = (images.mean(dim=1, keepdim=True) > 0.5).float()
        return torch.cat([1 - bright, bright, torch.zeros_like(bright) - 1], dim=1) * 10


def test_full_image_prediction_maps_back_through_resize_and_pad() -> None:
    image = np.zeros((90, 200, 3), np.uint8)  # wide: padding above and below at the model's input
    image[:, 120:] = 255
    labels = segment_full_image(BrightIsCat(), image, image_size=64)
    assert labels.shape == (90, 200)
    assert (labels[:, :115] == 0).all() and (labels[:, 125:] == 1).all()  # the edge stays within a few pixels
    tall = np.zeros((200, 90, 3), np.uint8)
    tall[:50] = 255
    labels = segment_full_image(BrightIsCat(), tall, image_size=64)
    assert labels.shape == (200, 90) and (labels[:45] == 1).all() and (labels[56:] == 0).all()


def test_full_image_engine_caches_per_image() -> None:
    engine = FullImageEngine(BrightIsCat(), image_size=32)
    first, timing = engine.segment(pet_like_image(), "k1")
    again, cached = engine.segment(pet_like_image(), "k1")
    assert not timing.cached and cached.cached and again is first


@pytest.fixture(scope="module")
def prompt_engine() -> PromptEngine:
    torch.manual_seed(0)
    return PromptEngine(random_sam2_predictor(DEMO_SAM2_SIZE), cache_size=2)


def test_embedding_is_computed_once_per_image(prompt_engine: PromptEngine) -> None:
    image = pet_like_image()
    assert not prompt_engine.embed(image, "a").cached
    assert prompt_engine.embed(image, "a").cached
    mask, _ = prompt_engine.predict(image, "a", [(80, 60)], [1], None)
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    again, _ = prompt_engine.predict(image, "a", [(80, 60)], [1], None)
    assert np.array_equal(mask, again)  # deterministic for the same prompts


def test_cached_embeddings_are_restored_for_the_right_image(prompt_engine: PromptEngine) -> None:
    first, second = pet_like_image(), pet_like_image()[::-1].copy()
    prompts = ([(40, 30), (100, 90)], [1, 0], (20, 10, 140, 110))
    prompt_engine.embed(first, "first")
    reference, _ = prompt_engine.predict(first, "first", *prompts)
    prompt_engine.embed(second, "second")  # the predictor now holds the second image
    restored, _ = prompt_engine.predict(first, "first", *prompts)
    assert np.array_equal(reference, restored)
    prompt_engine.embed(pet_like_image(60, 80), "third")  # cache_size=2: the least recently used goes
    assert not prompt_engine.is_cached("second") and prompt_engine.is_cached("first")


def test_discovery_lists_finished_catalog_runs_only(tmp_path: Path) -> None:
    write_tiny_run(tmp_path)
    (tmp_path / "unet-quick-s0-abcdefabcd").mkdir()  # unfinished: no results.json / best.pt
    (tmp_path / "notes").mkdir()
    runs = find_finished_runs(tmp_path, "segmentation")
    assert [run.path.name for run in runs] == [TINY_RUN] and runs[0].spec_key == "unet"
    assert find_finished_runs(tmp_path / "missing", "segmentation") == []


def test_discovery_offers_standard_profile_runs_too(tmp_path: Path) -> None:
    write_tiny_run(tmp_path)
    standard = tmp_path / TINY_RUN.replace("-quick-", "-standard-")
    (tmp_path / TINY_RUN).rename(standard)
    runs = find_finished_runs(tmp_path, "segmentation")
    assert [(run.path.name, run.profile) for run in runs] == [(standard.name, "standard")]
    assert find_finished_runs(tmp_path, "segmentation", "quick") == []


def test_options_fall_back_to_labelled_random_sam2(tmp_path: Path) -> None:
    write_tiny_run(tmp_path, image_size=32)
    options = demo_options(None, tmp_path, random_image_size=DEMO_SAM2_SIZE)
    assert [o.kind for o in options] == ["prompted", "segmentation"]
    assert options[0].random_weights and "RANDOM WEIGHTS" in options[0].label
    assert "random weights" in options[0].description
    assert "mIoU 0.250" in options[1].label
    engine = options[1].load()
    labels, _ = engine.segment(pet_like_image(50, 70), "x")
    assert labels.shape == (50, 70) and set(np.unique(labels)) <= {0, 1, 2}


def test_missing_sam2_path_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--sam2"):
        demo_options(tmp_path / "nothing.pt", tmp_path)


def test_run_dir_name_must_match_a_catalog_model(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path)
    run.rename(tmp_path / "mystery-quick-s0-0123456789")
    assert find_finished_runs(tmp_path, "segmentation") == []
    assert json.loads((tmp_path / "mystery-quick-s0-0123456789" / "results.json").read_text())


def test_profile_filter_and_options_table(tmp_path: Path) -> None:
    from petseg.demo.models import options_table

    write_tiny_run(tmp_path)
    assert demo_options(None, tmp_path, profile="full")[1:] == []
    options = demo_options(None, tmp_path, profile="quick")
    table = options_table(options)
    assert list(table["weights"]) == ["random (untrained)", "trained"]
    assert list(table["input"]) == ["point/box prompts", "image only"]


def test_a_finished_sam2_run_replaces_the_random_fallback(tmp_path: Path) -> None:
    """A petseg SAM 2 run (tiny, untrained weights here) is found, loaded through
    petseg.models.sam2.load_sam2_predictor and answers prompts through the engine."""
    from petseg.models import build_model

    torch.manual_seed(0)
    model = build_model({"name": "sam2_effnet", "image_size": 64, "pretrained_trunk": False})
    run = tmp_path / "sam2_effnet-quick-s0-abcdef0123"
    run.mkdir()
    torch.save({"model": model.state_dict(), "model_config": model.petseg_config}, run / "best.pt")
    (run / "results.json").write_text(json.dumps({"test": {}}))
    options = demo_options(None, tmp_path)
    assert options[0].key == f"run:{run.name}" and not options[0].random_weights
    assert all(not o.key.startswith("sam2:random") for o in options)
    engine = options[0].load()
    image = pet_like_image()
    mask, _ = engine.predict(image, "k", [(80, 60)], [1], None)
    boxed, _ = engine.predict(image, "k", [], [], (20, 10, 140, 110))
    assert mask.shape == boxed.shape == image.shape[:2]
