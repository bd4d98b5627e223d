"""Demo fixtures: synthetic images, a tiny finished full-image run, and the app served on a free local port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

DEMO_SAM2_SIZE = 256  # random-weight SAM 2 at 256 px: the app's mechanics at test speed
TINY_RUN = "unet-quick-s0-0123456789"


def pet_like_image(height: int = 120, width: int = 160) -> np.ndarray:
    """A smooth gradient with a bright disc (compresses well, differs from frame to frame)."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                      np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    disc = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(height, width) / 4) ** 2
    image[disc] = (240, 230, 220)
    return image


def write_image(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path)
    return path


def write_tiny_run(runs_dir: Path, image_size: int = 32) -> Path:
    """A finished run directory of a tiny UNet as ``petseg train`` lays it out (what the demo reads)."""
    from petseg.models import build_model

    torch.manual_seed(0)
    config = {"name": "unet", "depth": 2, "base_width": 4, "max_width": 8}
    model = build_model(config)
    run = runs_dir / TINY_RUN
    run.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "model_config": config}, run / "best.pt")
    (run / "experiment.json").write_text(json.dumps({"config": {"task": "segmentation"},
                                                     "data": {"image_size": image_size}}))
    (run / "results.json").write_text(json.dumps({"test": {"miou": 0.25}}))
    return run


@pytest.fixture(scope="session")
def demo_runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    write_tiny_run(runs)
    return runs


@pytest.fixture(scope="session")
def demo_server(demo_runs_dir: Path) -> Iterator[str]:
    """The app (random SAM 2 at 256 px + the tiny UNet run) on 127.0.0.1:<free port>; closed afterwards."""
    from petseg.demo.app import close_quietly, serve_in_background
    from petseg.demo.models import demo_options

    app, url = serve_in_background(demo_options(None, demo_runs_dir, random_image_size=DEMO_SAM2_SIZE))
    try:
        yield url
    finally:
        close_quietly(app)
