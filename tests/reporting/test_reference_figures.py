"""Reference figures drawn from records alone (petseg.reporting.reference_figures)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

from petseg.evaluation.metrics import per_image_metrics
from petseg.reporting import reference_figures as figures
from petseg.reporting.evidence import confusion_columns
from petseg.reporting.record_evidence import encode_mask

matplotlib.use("Agg")


class _Prepared:
    """Stands in for PreparedData: 16 px images and masks by stem."""

    def preprocessed(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        return np.full((16, 16, 3), 128, np.uint8), np.ones((16, 16), np.uint8)


def _records(root: Path) -> None:
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 3, size=(30, 16, 16)))
    pred = torch.where(torch.from_numpy(rng.random((30, 16, 16)) > 0.8), (target + 1) % 3, target)
    metrics = per_image_metrics(pred, target)
    table = pd.DataFrame(metrics["confusion"].reshape(30, -1), columns=confusion_columns())
    table.insert(0, "stem", [f"pug_{i}" for i in range(30)])
    table.insert(1, "breed", ["pug"] * 15 + ["Bombay"] * 15)
    table.insert(1, "species", ["dog"] * 15 + ["cat"] * 15)
    table["miou"] = metrics["miou"]
    folder = root / "standard"
    folder.mkdir(parents=True)
    table.to_csv(folder / "unet-s0.per_image.csv.gz", index=False)
    bins = {"edges": [0, 0.5, 1.0], "counts": [10, 90], "confidence": [0.4, 0.9], "accuracy": [0.5, None],
            "ece": 0.05, "mce": 0.1}
    panel = {"stems": ["pug_0"], "why": ["hardest"], "miou": [0.4], "masks": [encode_mask(np.zeros((16, 16)))]}
    record = {"format": 2, "key": "unet", "seed": 0, "profile": "standard", "label": None, "test": {"miou": 0.7},
              "calibration": bins, "mask_panel": panel}
    (folder / "unet-s0.json").write_text(json.dumps(record))


def test_every_reference_figure_is_drawn_from_records(tmp_path: Path) -> None:
    _records(tmp_path)
    table = figures.interval_table(root=tmp_path)
    assert len(table) == 1 and table.loc[0, "low"] <= table.loc[0, "miou"] <= table.loc[0, "high"]
    for figure, words in (figures.reference_intervals(root=tmp_path), figures.reference_confusions(root=tmp_path),
                          figures.reference_reliability(root=tmp_path),
                          figures.reference_mask_panel("unet", _Prepared(), root=tmp_path)):
        assert figure is not None and words
    figure, breeds = figures.reference_breeds(root=tmp_path)
    assert figure is not None and set(breeds.index) == {("dog", "pug"), ("cat", "Bombay")}


def test_without_records_nothing_is_drawn_and_the_words_say_why(tmp_path: Path) -> None:
    assert figures.reference_intervals(root=tmp_path)[0] is None
    figure, words = figures.reference_mask_panel("unet", _Prepared(), root=tmp_path)
    assert figure is None and "mask panel" in words
