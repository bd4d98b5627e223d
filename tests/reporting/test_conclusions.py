"""Verdicts of the conclusions chapter follow the records (petseg.reporting.conclusions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from petseg.evaluation.metrics import per_image_metrics
from petseg.reporting.conclusions import claims, number_verdict, study_row_problems, this_build_words
from petseg.reporting.evidence import Interval, confusion_columns, interval
from petseg.reporting.study import STUDY_RESULTS


def _write_record(root: Path, key: str, accuracy: float, images: int = 80) -> None:
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 3, size=(images, 12, 12)))
    wrong = torch.from_numpy(rng.random((images, 12, 12)) > accuracy)
    pred = torch.where(wrong, (target + 1) % 3, target)
    table = pd.DataFrame(per_image_metrics(pred, target)["confusion"].reshape(images, -1), columns=confusion_columns())
    table.insert(0, "stem", [f"img_{i}" for i in range(images)])
    folder = root / "standard"
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / f"{key}-s0.per_image.csv.gz", index=False)
    record = {"format": 2, "key": key, "seed": 0, "profile": "standard", "label": None,
              "test": {"miou": interval(table).estimate}, "per_image": {"file": f"{key}-s0.per_image.csv.gz"}}
    (folder / f"{key}-s0.json").write_text(json.dumps(record))


def _verdict(root: Path, start: str) -> str:
    return next(c for c in claims("standard", root) if c.claim.startswith(start)).verdict


def test_the_paradox_verdict_follows_the_records_and_swaps_with_them(tmp_path: Path) -> None:
    _write_record(tmp_path / "a", "unet", 0.9)
    _write_record(tmp_path / "a", "ae_unet_frozen", 0.6)
    assert _verdict(tmp_path / "a", "Reusing the autoencoder") == "reproduced"
    _write_record(tmp_path / "b", "unet", 0.6)
    _write_record(tmp_path / "b", "ae_unet_frozen", 0.9)
    assert _verdict(tmp_path / "b", "Reusing the autoencoder") == "reversed"
    _write_record(tmp_path / "c", "unet", 0.8)
    _write_record(tmp_path / "c", "ae_unet_frozen", 0.8)
    assert _verdict(tmp_path / "c", "Reusing the autoencoder") == "not reproduced (not distinguishable)"


def test_missing_records_are_pending_never_a_verdict(tmp_path: Path) -> None:
    rows = claims("standard", tmp_path)
    assert all(row.verdict.startswith(("pending", "not testable")) for row in rows)


def test_a_quoted_number_is_reproduced_exceeded_or_not() -> None:
    assert number_verdict(0.69, Interval(0.72, 0.71, 0.73, 100)) == "reproduced"
    assert number_verdict(0.69, Interval(0.80, 0.78, 0.82, 100)) == "exceeded"
    assert number_verdict(0.69, Interval(0.50, 0.48, 0.52, 100)) == "not reproduced"


def test_the_studys_autoencoder_row_is_flagged_as_inconsistent() -> None:
    assert study_row_problems(STUDY_RESULTS["ae_unet"]) and "below its mIoU" in study_row_problems(
        STUDY_RESULTS["ae_unet"])[0]
    assert study_row_problems(STUDY_RESULTS["unet"]) == []


@pytest.mark.parametrize(("build", "expected"), [(0.70, "agrees."), (0.44, "does not agree (480 steps)."),
                                                 (None, "no mIoU")])
def test_this_build_is_set_beside_the_reference(build: float | None, expected: str) -> None:
    assert expected in this_build_words(0.726, build, "mIoU", "480 steps")


def _probe(accuracy: float, low: float, high: float, what: str) -> dict:
    return {"encoder": what, "accuracy": accuracy, "interval": [low, high], "balanced_accuracy": accuracy,
            "balanced_interval": [low, high],
            "majority_accuracy": 0.67, "test_images": 100, "train_images": 200, "features": 8}


def test_the_probe_words_follow_the_recorded_intervals(tmp_path: Path) -> None:
    from petseg.reporting.conclusions import probe_table, probe_words

    assert "No reference record holds the species probe" in probe_words(probe_table("standard", tmp_path))
    folder = tmp_path / "standard"
    folder.mkdir()
    record = {"format": 2, "key": "autoencoder", "seed": 0, "profile": "standard", "label": None, "test": {},
              "species_probe": {"trained": _probe(0.70, 0.66, 0.74, "after training"),
                                "initial": _probe(0.62, 0.58, 0.66, "random init")}}
    (folder / "autoencoder-s0.json").write_text(json.dumps(record))
    assert "**not distinguishable** from" in probe_words(probe_table("standard", tmp_path))
    record["species_probe"]["trained"] = _probe(0.80, 0.77, 0.83, "after training")
    (folder / "autoencoder-s0.json").write_text(json.dumps(record))
    assert "**above** that of" in probe_words(probe_table("standard", tmp_path))


def test_this_build_table_sets_the_build_beside_each_record(tmp_path: Path) -> None:
    from petseg.reporting.conclusions import beyond_study_words, this_build_table

    _write_record(tmp_path, "unet", 0.9)
    table = this_build_table({"unet": {"test": {"miou": 0.2}}, "fusion_film": {"test": {"miou": 0.5}}},
                             {"unet": 480}, "standard", tmp_path)
    assert "does not agree" in table.iloc[0]["agreement"] and "no reference recorded" in table.iloc[1]["agreement"]
    assert "No prompted model is recorded" in beyond_study_words("standard", tmp_path)
