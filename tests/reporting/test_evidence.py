"""Bootstrap intervals and paired comparisons (petseg.reporting.evidence) on small synthetic per-image tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from petseg.evaluation.metrics import ConfusionMatrix, per_image_metrics
from petseg.reporting.evidence import (
    compare,
    compare_words,
    confusion_columns,
    interval,
    metric_from_confusion,
    paired_difference,
    seed_spread,
)
from petseg.reporting.record_evidence import decode_mask


def _table(accuracy: float, images: int = 60, seed: int = 0, size: int = 16) -> pd.DataFrame:
    """Per-image confusion columns of a model that labels each pixel right with probability ``accuracy``."""
    rng = np.random.default_rng(seed)
    target = torch.from_numpy(rng.integers(0, 3, size=(images, size, size)))
    wrong = torch.from_numpy(rng.random((images, size, size)) > accuracy)
    pred = torch.where(wrong, (target + 1) % 3, target)
    matrices = per_image_metrics(pred, target)["confusion"].reshape(images, -1)
    table = pd.DataFrame(matrices, columns=confusion_columns())
    table.insert(0, "stem", [f"img_{i}" for i in range(images)])
    return table


def test_metric_from_confusion_matches_the_confusion_matrix_meter() -> None:
    rng = np.random.default_rng(1)
    target = torch.from_numpy(rng.integers(0, 3, size=(5, 8, 8)))
    pred = torch.from_numpy(rng.integers(0, 3, size=(5, 8, 8)))
    target[0, 0, :4] = 255  # ignored pixels
    meter = ConfusionMatrix()
    meter.update(pred, target)
    expected = meter.compute()
    summed = per_image_metrics(pred, target)["confusion"].sum(0)
    assert metric_from_confusion(summed, "miou") == pytest.approx(expected["miou"])
    assert metric_from_confusion(summed, "mdice") == pytest.approx(expected["mdice"])
    assert metric_from_confusion(summed, "pixel_accuracy") == pytest.approx(expected["pixel_accuracy"])
    assert metric_from_confusion(summed, "iou_cat") == pytest.approx(expected["iou"][1])
    assert metric_from_confusion(summed, "dice_dog") == pytest.approx(expected["dice"][2])
    assert metric_from_confusion(summed, "pet_miou") == pytest.approx(meter.to_binary().compute()["miou"])


def test_interval_brackets_the_estimate_and_narrows_with_more_images() -> None:
    small, large = interval(_table(0.8, images=20)), interval(_table(0.8, images=400))
    for result in (small, large):
        assert result.low <= result.estimate <= result.high
    assert large.high - large.low < small.high - small.low


def test_a_clearly_better_model_wins_and_swapping_swaps_the_sentence() -> None:
    good, bad = _table(0.9, seed=0), _table(0.6, seed=0)
    comparison = compare("Good", good, "Bad", bad)
    assert comparison.winner == "Good"
    assert compare_words(comparison).startswith("**Good beats Bad**")
    swapped = compare("Bad", bad, "Good", good)
    assert swapped.winner == "Good"
    assert swapped.difference.estimate == pytest.approx(-comparison.difference.estimate)
    assert compare_words(swapped).startswith("**Good beats Bad**")
    both = f"{comparison.difference.low:+.3f} to {comparison.difference.high:+.3f}"
    assert both in compare_words(comparison) and both in compare_words(swapped)  # always the winner's gain


def test_an_interval_including_zero_is_not_distinguishable() -> None:
    a = _table(0.8, seed=0)
    b = a.copy()  # the same predictions but three images, so the difference is tiny and its interval spans 0
    b.loc[:2, confusion_columns()] = _table(0.78, seed=5).loc[:2, confusion_columns()].to_numpy()
    comparison = compare("A", a, "B", b)
    assert comparison.difference.low <= 0 <= comparison.difference.high
    assert comparison.winner is None
    assert "not distinguishable" in compare_words(comparison) and "includes 0" in compare_words(comparison)


def test_a_difference_within_the_seed_spread_is_not_a_ranking() -> None:
    good, bad = _table(0.9, seed=0), _table(0.6, seed=0)
    comparison = compare("Good", good, "Bad", bad, spread=1.0)
    assert comparison.difference.excludes_zero() and comparison.winner is None
    assert "seed-to-seed spread" in compare_words(comparison)


def test_pairing_uses_the_common_images_only_and_refuses_disjoint_tables() -> None:
    a, b = _table(0.9), _table(0.7)
    assert paired_difference(a, b.iloc[:30]).images == 30
    b = b.assign(stem=[f"other_{i}" for i in range(len(b))])
    with pytest.raises(ValueError, match="share no test image"):
        paired_difference(a, b)


def test_mean_of_a_per_image_column_and_unknown_metrics() -> None:
    table = pd.DataFrame({"stem": ["a", "b", "c", "d"], "one_click_iou": [0.5, 0.7, np.nan, 0.9]})
    assert interval(table, "one_click_iou").estimate == pytest.approx(0.7)
    with pytest.raises(ValueError, match="no per-image column"):
        interval(table, "box_iou")
    with pytest.raises(ValueError, match="n_<true>_as_<predicted>"):
        interval(table, "miou")


def test_seed_spread() -> None:
    assert seed_spread([0.7]) is None
    assert seed_spread([0.70, 0.74, 0.71]) == pytest.approx(0.04)


def test_committed_records_hold_no_path_of_the_machine_that_made_them() -> None:
    root = Path(__file__).resolve().parents[2] / "book" / "reference_run"
    for path in root.rglob("*.json"):
        text = path.read_text()
        json.loads(text)
        for marker in ('"/', " /work", " /home", " /tmp", " /root"):
            assert marker not in text, f"{path.name} holds an absolute path ({marker!r})"


def test_the_reference_records_stay_small_and_their_tables_exist() -> None:
    root = Path(__file__).resolve().parents[2] / "book" / "reference_run"
    total = sum(path.stat().st_size for path in root.rglob("*") if path.is_file())
    assert total < 10 * 2**20, f"book/reference_run/ holds {total / 2**20:.1f} MB (limit 10 MB)"
    for path in root.rglob("*.json"):
        record = json.loads(path.read_text())
        for mask in (record.get("mask_panel") or {}).get("masks", []):
            decode_mask(mask)  # every committed mask still decodes
        table = record.get("per_image")
        if table:
            assert (path.parent / table["file"]).is_file(), f"{path.name} names a missing {table['file']}"
