"""Pins what training and evaluation compute, so that moving code around cannot change it.

The numbers below were computed by the code before the library was restructured (``petseg/train.py`` in
one file): the same config, data and seed must give the same metrics. The checkpoint test builds a
checkpoint dict the way that code wrote one (format 1) and checks it still loads.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from petseg.evaluation.segmentation import evaluate
from petseg.models import build_model
from petseg.training.checkpoints import load_model_from_checkpoint
from petseg.training.loop import train
from petseg.training.seeds import seed_everything

torch.set_num_threads(1)
os.environ.setdefault("PETSEG_PROGRESS", "0")
TOLERANCE = 1e-6


class Squares(Dataset):
    """``size`` x ``size`` images with one square pet (1 = cat, red; 2 = dog, blue), a 255 ring and padding."""

    def __init__(self, count: int, size: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for _ in range(count):
            label = int(rng.integers(1, 3))
            side = int(rng.integers(4, size // 2 + 1))
            top, left = (int(v) for v in rng.integers(1, size - 2 - side, 2))
            image = (0.5 + 0.1 * rng.standard_normal((3, size, size))).astype(np.float32)
            image[:, top:top + side, left:left + side] = np.array([0.9, 0.2, 0.2] if label == 1 else [0.2, 0.2, 0.9],
                                                                  np.float32)[:, None, None]
            mask = np.zeros((size, size), np.int64)
            mask[max(top - 1, 0):top + side + 1, max(left - 1, 0):left + side + 1] = 255
            mask[top:top + side, left:left + side] = label
            image[:, -2:] = 0.0
            mask[-2:] = 255
            self.items.append((torch.from_numpy(image.clip(0, 1)), torch.from_numpy(mask)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[index]


UNET = {"name": "unet", "depth": 3, "base_width": 4, "max_width": 16, "dropout": 0.1}
AUTOENCODER = {"name": "autoencoder", "depth": 3, "base_width": 4, "max_width": 16}
SAM2 = {"name": "sam2_effnet", "image_size": 64, "pretrained_trunk": False}
COMMON = {"batch_size": 4, "lr": 3e-3, "warmup_epochs": 0.5, "num_workers": 0, "seed": 3, "device": "cpu"}
HISTORY_KEYS = ("global_step", "lr", "train_loss", "val_loss", "val_miou", "val_mdice", "val_acc", "val_ssim",
                "val_psnr", "val_iou_pet")


def _history(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [{key: record[key] for key in HISTORY_KEYS if key in record} for record in summary["history"]]


def run_all(tmp: str | Path) -> dict[str, Any]:
    """Train the three tasks for a few steps and evaluate; every number the test compares."""
    tmp = Path(tmp)
    results: dict[str, Any] = {}
    seed_everything(0)
    unet = build_model(UNET)
    config = {**COMMON, "epochs": 2, "max_steps_per_epoch": 3, "dice_weight": 0.5, "class_weights": [1.0, 2.0, 2.0]}
    summary = train(unet, Squares(16), Squares(6, seed=1), config, tmp / "unet")
    results["segmentation"] = _history(summary) + [{"best_metric": summary["best_metric"],
                                                    "best_epoch": summary["best_epoch"]}]
    evaluated = evaluate(unet, Squares(5, seed=2), device="cpu", batch_size=2)
    results["evaluate"] = {"miou": evaluated["miou"], "mdice": evaluated["mdice"],
                           "pixel_accuracy": evaluated["pixel_accuracy"], "binary_miou": evaluated["binary"]["miou"],
                           "per_image_miou": [float(v) for v in evaluated["per_image"]["miou"]],
                           "pet_iou": [float(v) for v in evaluated["per_image"]["pet_iou"]]}
    seed_everything(0)
    autoencoder = build_model(AUTOENCODER)
    summary = train(autoencoder, Squares(8), Squares(4, seed=1), {**COMMON, "epochs": 1, "reconstruction_loss": "mse"},
                    tmp / "ae", task="reconstruction")
    results["reconstruction"] = _history(summary)
    seed_everything(0)
    sam = build_model(SAM2)
    summary = train(sam, Squares(4, size=64), Squares(2, size=64, seed=1), {**COMMON, "epochs": 1}, tmp / "sam",
                    task="prompted")
    results["prompted"] = _history(summary)
    return results


# Computed by the code before the restructuring (see the module docstring).
EXPECTED: dict[str, Any] = {"segmentation": [{"global_step": 3,
                   "lr": 0.002560660171779821,
                   "train_loss": 1.5200271606445312,
                   "val_loss": 1.391071120897929,
                   "val_miou": 0.16728351646546105,
                   "val_mdice": 0.24806742848285876,
                   "val_acc": 0.42632450331125826},
                  {"global_step": 6,
                   "lr": 0.0,
                   "train_loss": 1.4167184829711914,
                   "val_loss": 1.3546158075332642,
                   "val_miou": 0.18293788067792435,
                   "val_mdice": 0.25713120201028455,
                   "val_acc": 0.48923841059602646},
                  {"best_metric": 0.18293788067792435, "best_epoch": 2}],
 "evaluate": {"miou": 0.19017818768443492,
              "mdice": 0.26150740629259567,
              "pixel_accuracy": 0.49898785425101216,
              "binary_miou": 0.3281975081894728,
              "per_image_miou": [0.18576388888888887,
                                 0.23261526832955406,
                                 0.17460317460317462,
                                 0.1927927927927928,
                                 0.2244742198100407],
              "pet_iou": [0.08602150537634409,
                          0.0898876404494382,
                          0.23076923076923078,
                          0.16129032258064516,
                          0.11940298507462686]},
 "reconstruction": [{"global_step": 2,
                     "lr": 0.0,
                     "train_loss": 0.07765363901853561,
                     "val_loss": 0.07135378569364548,
                     "val_ssim": 0.07447056472301483,
                     "val_psnr": 11.465828895568848}],
 "prompted": [{"global_step": 1,
               "lr": 0.0,
               "train_loss": 1.7860510349273682,
               "val_loss": 1.7746143341064453,
               "val_miou": 0.1505354328667962,
               "val_mdice": 0.2551870092726124,
               "val_acc": 0.27039507439712673,
               "val_iou_pet": 0.0803556992724333}]}


def _assert_close(actual: Any, expected: Any, where: str = "") -> None:
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            _assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_close(a, e, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE) or (
            math.isnan(actual) and math.isnan(expected)), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, where


def test_same_config_data_and_seed_give_the_same_metrics(tmp_path: Path) -> None:
    _assert_close(run_all(tmp_path), EXPECTED)


def _format1_checkpoint(model: torch.nn.Module, config: dict[str, Any], task: str = "segmentation") -> dict[str, Any]:
    """A checkpoint dict as ``petseg.train.train`` wrote it (format 1) for ``model`` built from ``config``."""
    return {"format_version": 1, "model": model.state_dict(), "optimizer": {}, "scheduler": {}, "scaler": {},
            "epoch": 1, "global_step": 3, "steps_per_epoch": 3, "total_steps": 3, "metric_name": "val_miou",
            "best_metric": 0.5, "best_epoch": 1, "world_size": 1, "record": {"epoch": 1}, "rng": {},
            "config": {"epochs": 1}, "task": task, "model_config": config, "model_class": type(model).__name__}


@pytest.mark.parametrize("config", [
    UNET,
    {**AUTOENCODER, "name": "ae_unet", "autoencoder_checkpoint": "/nonexistent/autoencoder/best.pt"},
    {**SAM2},
    {"name": "fusion_unet", "fusion": "film", "depth": 3, "base_width": 4, "max_width": 16,
     "global_encoder": {"backend": "efficientnet_lite0", "pretrained": False, "image_size": 32}},
], ids=lambda config: config["name"])
def test_a_checkpoint_written_before_the_restructuring_still_loads(config: dict[str, Any], tmp_path: Path) -> None:
    build_config = {**config, "autoencoder_checkpoint": None} if config["name"] == "ae_unet" else config
    seed_everything(0)
    model = build_model(build_config).eval()
    path = tmp_path / "best.pt"
    torch.save(_format1_checkpoint(model, config), path)
    restored = load_model_from_checkpoint(path)
    assert type(restored) is type(model)
    original, loaded = model.state_dict(), restored.state_dict()
    assert list(loaded) == list(original)
    assert all(torch.equal(loaded[key], original[key]) for key in original)
