"""Collecting catalog runs over seeds, and the report's tables (synthetic results, no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from petseg import catalog
from petseg.catalog import ModelSpec
from petseg.experiment import Run
from petseg.reporting import tables as report


def _results(miou: float, pet_iou: float = 0.8) -> dict:
    iou = [0.9, miou, 3 * miou - 0.9 - miou]
    return {"test": {"iou": iou, "dice": [2 * v / (1 + v) for v in iou], "miou": miou, "mdice": miou + 0.05,
                     "pixel_accuracy": 0.85, "confusion_matrix": [[5, 1, 0], [1, 4, 1], [0, 1, 3]],
                     "binary": {"iou": [0.9, pet_iou], "dice": [0.95, 2 * pet_iou / (1 + pet_iou)],
                                "miou": (0.9 + pet_iou) / 2, "mdice": 0.9, "pixel_accuracy": 0.9}},
            "train_seconds": 10.0}


BREEDS = {"Abyssinian_1": "Abyssinian", "Abyssinian_2": "Abyssinian", "beagle_1": "beagle"}
SPECIES = {"Abyssinian_1": "cat", "Abyssinian_2": "cat", "beagle_1": "dog"}


class FakeSpec(ModelSpec):
    """A spec whose runs are made up from a table of mIoU per seed (no training)."""

    def run(self, profile="quick", data=None, seed=0, **kwargs):  # noqa: ARG002 - same signature as ModelSpec
        folder = Path(self.overrides["folder"]) / f"{self.key}-s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"stem": ["Abyssinian_1", "Abyssinian_2", "beagle_1"],
                      "miou": [0.5 + seed / 10, 0.7, 0.2],
                      # true pet pixels predicted as background / cat / dog
                      "pet_as_background": [10, 0, 5], "pet_as_cat": [60, 100, 45 + seed],
                      "pet_as_dog": [30, 0, 50 - seed]}).to_csv(folder / "per_image_test.csv", index=False)
        return Run(folder, {}, _results(self.overrides["miou"][seed]), reused=True)


@pytest.fixture
def runs(tmp_path):
    specs = [FakeSpec("unet", "UNet", "unet", "02", overrides={"folder": tmp_path, "miou": [0.60, 0.62, 0.58]}),
             FakeSpec("ae_unet_frozen", "AE frozen", "ae_unet", "03", overrides={"folder": tmp_path, "miou": [0.3]})]
    return specs, report.collect_runs(specs, "quick", seeds={"unet": (0, 1, 2), "*": (0,)})


def test_seeds_per_profile():
    assert report.seeds_for("unet", "quick") == report.SEEDS["quick"]["unet"]
    assert report.seeds_for("anything", "full") == (0, 1, 2)
    assert report.seeds_for("x", "quick", {"x": [4, 5]}) == (4, 5)
    with pytest.raises(ValueError, match="profile"):
        report.seeds_for("unet", "huge")
    with pytest.raises(ValueError, match="no seeds"):
        report.seeds_for("x", "quick", {"y": (0,)})


def test_collect_runs_and_seed_table(runs):
    specs, model_runs = runs
    assert [(r.spec.key, r.seed) for r in model_runs] == [("unet", 0), ("unet", 1), ("unet", 2),
                                                          ("ae_unet_frozen", 0)]
    table = report.seed_table(model_runs)
    assert list(table.miou) == [0.60, 0.62, 0.58, 0.3]
    assert table.pet_iou.iloc[0] == pytest.approx(0.8) and table.iou_cat.iloc[0] == pytest.approx(0.60)
    shifted = report.collect_runs(specs[:1], "quick", seeds={"*": (0, 1)}, base_seed=1)  # book seed 1
    assert [r.seed for r in shifted] == [1, 2] and shifted[0].run.results["test"]["miou"] == 0.62


def test_flat_metrics_of_a_binary_prompted_model():
    binary_only = {"test": {"iou": [0.9, 0.7], "dice": [0.95, 0.82], "miou": 0.8, "mdice": 0.885,
                            "pixel_accuracy": 0.91}}
    row = report.flat_metrics(binary_only, task="prompted")
    assert math.isnan(row["miou"]) and math.isnan(row["dice_cat"])
    assert row["pet_iou"] == 0.7 and row["binary_accuracy"] == 0.91 and row["binary_mdice"] == 0.885


def test_summary_mean_std_and_overlap(runs):
    _, model_runs = runs
    summary = report.seed_summary(report.seed_table(model_runs))
    unet = summary[(summary.model == "UNet") & (summary.metric == "miou")].iloc[0]
    assert unet["n"] == 3 and unet["mean"] == pytest.approx(0.60) and unet["std"] == pytest.approx(0.02)
    assert (unet["min"], unet["max"]) == (0.58, 0.62)
    frozen = summary[(summary.model == "AE frozen") & (summary.metric == "miou")].iloc[0]
    assert frozen["n"] == 1 and math.isnan(frozen["std"])
    readable = report.mean_pm_std(summary)
    assert readable.loc["UNet", "mIoU"] == "0.600 ± 0.020 (n=3)" and "1 seed" in readable.loc["AE frozen", "mIoU"]
    assert report.overlapping(summary, "miou") == []
    assert report.overlapping(summary, "pet_iou") == [("UNet", "AE frozen")]  # identical pet IoU


def test_per_breed_averages_over_seeds(runs):
    _, model_runs = runs
    breeds, species = BREEDS, SPECIES
    table = report.per_breed(model_runs, breeds, species)
    # UNet: Abyssinian images 0.5+s/10 and 0.7 -> per seed 0.6, 0.65, 0.7 -> 0.65
    assert table.loc[("cat", "Abyssinian"), "UNet"] == pytest.approx(0.65)
    assert table.loc[("dog", "beagle"), "AE frozen"] == pytest.approx(0.2)
    assert table.loc[("cat", "Abyssinian"), "test images"] == 2
    with pytest.raises(KeyError, match="without a breed"):
        report.per_breed(model_runs, {}, {})


def test_study_comparison_quotes_the_right_rows(runs):
    specs, model_runs = runs
    summary = report.seed_summary(report.seed_table(model_runs), metrics=report.SUMMARY_METRICS
                                  + ("binary_miou", "binary_mdice", "binary_accuracy"))
    prompted = ModelSpec("sam2", "SAM 2", "sam2", "05", task="prompted")
    assert report.study_key(prompted) == "sam2" and report.study_key(specs[1]) == "ae_unet"
    # our global-vector fusion UNet is compared with the study's CLIP+UNet row, which keeps the study's name
    assert {report.study_key(catalog.get(key)) for key in ("fusion_concat", "fusion_film")} == {"clip_unet"}
    assert report.STUDY_RESULTS["clip_unet"]["model"] == "CLIP+UNet"
    table = report.study_comparison(specs, summary)
    assert table.loc["UNet", "mIoU (study)"] == report.STUDY_RESULTS["unet"]["mIoU"]
    assert table.loc["UNet", "mIoU (ours)"] == pytest.approx(0.6) and table.loc["UNet", "seeds"] == 3
    assert table.loc["AE frozen", "study's model"] == "AE+UNet"


def test_reference_run_round_trip(tmp_path, runs):
    _, model_runs = runs
    table = report.seed_table(model_runs)
    assert report.load_reference(tmp_path / "none") is None
    report.export_reference(table, tmp_path / "ref", extra={"robustness": pd.DataFrame({"a": [1]})}, note="test")
    loaded, meta = report.load_reference(tmp_path / "ref")
    assert list(loaded.miou) == list(table.miou) and meta["note"] == "test"
    assert (tmp_path / "ref" / "robustness.csv").is_file() and "git" in meta["provenance"]


def test_environment_page_lists_chapter_times(tmp_path):
    generated = tmp_path / "book" / "generated"
    generated.mkdir(parents=True)
    times = {"01_data": {"seconds": 90.0, "profile": "quick", "finished": "t", "host": {"cpu_count": 2}},
             "02_unet": {"seconds": 30.0, "profile": "quick", "finished": "t", "host": {"cpu_count": 2}}}
    (generated / "execution_times.json").write_text(json.dumps(times))
    text = report.write_environment_page(tmp_path).read_text()
    assert "| `01_data` | 1.5 min (90 s) | quick |" in text and "**2.0 min**" in text
    assert "| Python |" in text and "| torch |" in text


def test_species_confusion_and_breed_findings(runs):
    _, model_runs = runs
    breeds, species = BREEDS, SPECIES
    confusion = report.species_confusion(model_runs, breeds, species)
    # a cat breed's pixels called dog: 30 of 200 per seed; the beagle's called cat: (45+46+47) of 300
    assert confusion.loc[("cat", "Abyssinian"), "UNet"] == pytest.approx(0.15)
    assert confusion.loc[("dog", "beagle"), "UNet"] == pytest.approx(138 / 300, abs=1e-3)
    scores = report.per_breed(model_runs, breeds, species)
    assert report.worst_breeds(scores, "UNet", n=1) == [("dog", "beagle")]
    text = report.breed_findings(scores, confusion, "UNet", n=1)
    assert "the worst breeds are beagle (dog, 0.20)" in text and "cat breeds average 0.65" in text
    assert "beagle (dog, 46% of its pet pixels)" in text
