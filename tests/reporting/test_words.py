"""petseg.reporting.words: the chapters' sentences, from tiny tables and results shaped like the real ones."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from petseg.data.pipeline import PreparedData
from petseg.data.split import Split
from petseg.reporting import words
from petseg.reporting.tables import ModelRun, seed_summary


def _run(folder: str, test: int = 40, split_file: str = "/cache/splits/abc-seed0.json", size: int = 128):
    results = {"data": {"split": {"train": 100, "val": 20, "test": test}, "split_file": split_file,
                        "image_size": size}}
    return SimpleNamespace(path=Path("/runs") / folder, results=results)


def _model_run(key: str, label: str, seed: int, **kwargs) -> ModelRun:
    return ModelRun(SimpleNamespace(key=key, label=label), seed, _run(f"{key}-{seed}", **kwargs))


def test_split_words_names_the_source_the_unsplit_images_and_the_file() -> None:
    split = SimpleNamespace(test_source="official test list", unsplit=["a_1", "b_2"])
    assert words.split_words(split, Path("/cache/splits/abc.json")) == (
        "Test split: official test list; outside every split (2): a_1, b_2. "
        "The split is saved beside the cache as `splits/abc.json`.")
    assert "outside every split (0): none." in words.split_words(SimpleNamespace(test_source="x", unsplit=[]),
                                                                 Path("s/f.json"))


def test_reconstruction_words_explain_a_weak_build_only() -> None:
    weak = words.reconstruction_words(0.41, "quick", 2, 64)
    assert weak.startswith("**This build does not reproduce")
    assert "SSIM 0.41 against 0.88" in weak and "only 2 epochs at 64 px" in weak and "`quick` profile" in weak
    assert words.reconstruction_words(0.86, "full", 40, 512) == (
        "The autoencoder reaches SSIM 0.86 (the study reported 0.88).")


def _prompted(miou: float, subset: str | None = None) -> dict:
    test = {"one_click": {"miou": miou}}
    if subset:
        test["interactive_subset"] = subset
    return {"test": test, "train_summary": {"epochs_completed": 3},
            "baselines": {"all_background": {"binary": {"miou": 0.35}}}}


def test_one_click_words_compare_with_the_all_background_floor() -> None:
    text = words.one_click_words({"SAM 2 tiny": _prompted(0.37, "16"), "SAM 2 base": _prompted(0.8)})
    first, tiny, base = text.split("\n\n")
    assert first == ("The 20-click protocol ran on: **SAM 2 tiny**: 16 of the test images scored; "
                     "**SAM 2 base**: all of the test images scored (the profile's budget, "
                     "`evaluation.interactive_images`; the 1-click and box metrics use every test image "
                     "scored).")
    assert tiny == ("**SAM 2 tiny** (3 epochs in this profile): 1-click pet-vs-background mIoU 0.370, against "
                    "0.350 for predicting background everywhere: it has not learned to segment: a click tells it "
                    "nothing it can use yet.")
    assert base.endswith("mIoU 0.800, against 0.350 for predicting background everywhere: it segments the pet "
                         "from the click.")
    assert words.one_click_words({}) == ""


def test_seeds_words_count_seeds_per_model_in_table_order() -> None:
    table = pd.DataFrame({"model": ["UNet", "UNet", "UNet", "AE+UNet"], "seed": [0, 1, 2, 0]})
    assert words.seeds_words(table, "quick") == (
        "Seeds in this build (profile `quick`): **UNet**: 3 seeds (0, 1, 2); **AE+UNet**: 1 seed (0).")


def test_same_split_words_state_the_split_and_sizes_and_refuse_two_splits() -> None:
    model_runs = [_model_run("unet", "UNet", 0), _model_run("unet", "UNet", 1),
                  _model_run("sam2", "SAM 2", 0, size=256)]
    assert words.same_split_words(model_runs, 0) == (
        "Every model is scored on the same **40 test images** (split `abc-seed0.json`), each at its own input "
        "size: UNet 128 px, SAM 2 256 px. Label 255 (the trimap border and the padding) is ignored everywhere.")
    with pytest.raises(RuntimeError, match="not tested on one split"):
        words.same_split_words([*model_runs, _model_run("ae", "AE", 0, test=41)], 0)
    with pytest.raises(RuntimeError, match="not tested on one split"):
        words.same_split_words([*model_runs, _model_run("ae", "AE", 0, split_file="/c/other.json")], 0)


def _seed_table(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": model, "seed": seed, "miou": v}
                         for model, vs in values.items() for seed, v in enumerate(vs)])


def test_overlap_words_name_overlapping_pairs_and_single_seed_models() -> None:
    summary = seed_summary(_seed_table({"UNet": [0.60, 0.64], "Fusion": [0.62], "AE": [0.30]}), metrics=["miou"])
    assert words.overlap_words(summary) == (
        "**Not conclusive** (mIoU ranges over seeds overlap): UNet vs Fusion. Trained with one seed only in this "
        "build: Fusion, AE. Their position is one draw; a difference to another model smaller than the spread "
        "seen for the models with several seeds (UNet) is not a ranking.")
    apart = seed_summary(_seed_table({"UNet": [0.60, 0.64], "AE": [0.30, 0.31]}), metrics=["miou"])
    assert words.overlap_words(apart) == "No two models' mIoU ranges over seeds overlap in this build."


def test_breed_count_words() -> None:
    index = pd.MultiIndex.from_tuples([("cat", "Abyssinian"), ("dog", "beagle")], names=["species", "breed"])
    breed_table = pd.DataFrame({"UNet": [0.5, 0.6], "test images": [3, 7]}, index=index)
    assert words.breed_count_words(breed_table) == (
        "This build's data has **2 breed(s)**; the full dataset has 37. A per-breed number here rests on 3-7 "
        "test images per breed.")


def test_reference_words() -> None:
    assert words.written_reference_words("seed table") == (
        "This is a `full` build: its seed table was written to `book/reference_run/`.")
    written = words.written_reference_words("sweep", "robustness.csv")
    assert written.endswith("`book/reference_run/robustness.csv`.")
    assert words.no_reference_words("quick").endswith(
        "All numbers on this page are from this build's `quick` profile.")
    meta = {"provenance": {"utc_time": "2024-05-01T10:00", "gpu_names": ["H100"], "hostname": "gpu1",
                           "git": {"commit": "abc123"}}, "note": "Data: 7,349 images."}
    assert words.reference_run_words(meta) == (
        "Reference run: profile `full`, recorded 2024-05-01T10:00 on H100 (host `gpu1`, commit `abc123`). "
        "Data: 7,349 images.")
    cpu = words.reference_run_words({"provenance": {"gpu_names": None}})
    assert "on CPU (host `None`, commit `None`). " in cpu


def test_runs_words_and_ssim_words() -> None:
    runs = [_run("unet-0"), _run("sam2-0")]
    assert words.runs_words("Data: 40 images.", 0, runs) == "Data: 40 images. Runs with seed 0: `unet-0`, `sam2-0`."
    by_species = pd.DataFrame({"ssim": [0.41, 0.45], "miou": [0.52, 0.61]},
                              index=pd.Index(["cat", "dog"], name="species"))
    assert words.ssim_words(-0.25, by_species) == (
        "In this build the rank correlation between an image's reconstruction SSIM and the frozen-encoder model's "
        "mIoU on it is **-0.25**: a weak relation. Mean reconstruction SSIM per species is cat 0.41, dog 0.45; "
        "mean mIoU cat 0.52, dog 0.61.")
    assert ": no useful relation." in words.ssim_words(0.1, by_species)
    assert ": a moderate relation." in words.ssim_words(0.5, by_species)
    assert ": a strong relation." in words.ssim_words(-0.7, by_species)


def test_fusion_drop_and_overfitting_words() -> None:
    drop = pd.Series([0.2, -0.1, 0.0, 0.05])
    assert words.fusion_drop_words("Fusion (concat)", drop) == (
        "**Fusion (concat)**: where it falls furthest below the UNet from scratch (on 2 of 4 test images it is "
        "worse).")
    sign = {"best_val_loss_epoch": 3, "epochs": 5, "val_loss_rise": 0.0123, "final_gap": 0.2}
    assert words.overfitting_words("SAM 2", sign) == (
        "**SAM 2**: validation loss lowest at epoch 3 of 5, then rose after its minimum (by 0.012); final "
        "validation - training loss gap 0.200.")
    flat = words.overfitting_words("SAM 2", {**sign, "val_loss_rise": 0.0})
    assert "then did not rise after its minimum (by 0.000)" in flat


def test_sweep_words() -> None:
    runs = [_run("unet-0")]
    plain = words.sweep_words("Data.", "all 40 test images", 0, runs, "full")
    assert plain == "Data. The sweep uses **all 40 test images**; models: the runs with seed 0 (`unet-0`)."
    assert words.sweep_words("Data.", "n", 0, runs, "quick", ["SAM 2 tiny"]) == (
        "Data. The sweep uses **n**; models: the runs with seed 0 (`unet-0`). Not in this `quick` sweep: SAM 2 "
        "tiny (random weights, a CPU smoke run at chance even on clean images; the `full` profile includes it).")
    table = pd.DataFrame([{"model": m, "perturbation": p, "level_index": i, "seconds": 0.5}
                          for m in ("UNet", "AE") for p in ("blur", "gaussian_noise") for i in range(10)])
    assert words.sweep_size_words(table, 2, 12.4) == (
        "40 rows (2 models x 2 perturbations x 10 levels) in 12 s in this build (stored sweeps are reused; model "
        "time summed over conditions when computed: 20 s).")
    assert words.no_sweep_reference_words("quick", "a subset").endswith("`quick` profile (a subset).")


def test_robustness_words_pick_the_hardest_perturbation_and_most_robust_model() -> None:
    summary = pd.DataFrame([
        {"model": "UNet", "perturbation": "blur", "drop": 0.10, "mean over levels": 0.60},
        {"model": "AE", "perturbation": "blur", "drop": 0.20, "mean over levels": 0.40},
        {"model": "UNet", "perturbation": "gaussian_noise", "drop": 0.30, "mean over levels": 0.50},
        {"model": "AE", "perturbation": "gaussian_noise", "drop": 0.10, "mean over levels": 0.45},
    ])
    assert words.robustness_words(summary, "all 40 test images") == (
        "In this build the perturbation that costs the models most mean Dice on average is **gaussian noise** "
        "(mean drop 0.200); the model with the highest mean Dice averaged over all 20 conditions is **UNet** "
        "(0.550). These are all 40 test images, one seed per model.")


class _Prepared:
    """The parts of a PreparedData the scope sentences read, with its own subset logic."""

    stems = PreparedData.stems
    subset_note = PreparedData.subset_note

    def __init__(self, test: int, used: int, profile: str = "quick") -> None:
        stems = [f"t{i}" for i in range(test)]
        self.split = Split(train=["a0"], val=[], test=stems, seed=0, val_fraction=0.2, test_source="official")
        self.subsets = {"test": stems[:used]} if used < test else {}
        self.config = {"profile": profile}


def test_scored_images_name_a_capped_subset_or_the_whole_split() -> None:
    capped, whole = _Prepared(3292, 510), _Prepared(3292, 3292, "full")
    assert words.scored_images(capped) == "a breed-stratified subset of 510 of the 3,292 test images"
    assert words.scored_images(whole) == "all 3,292 test images"
    assert words.scored_images_words(capped) == (
        "In this build (profile `quick`) every test number is computed on **a breed-stratified subset of 510 "
        "of the 3,292 test images**, the same images for every model; the recorded `standard` reference run "
        "tests the whole split.")
    assert words.scored_images_words(whole) == (
        "In this build (profile `full`) every test number is computed on **all 3,292 test images**.")


def test_one_click_words_name_the_scored_images_from_the_results() -> None:
    capped = {**_prompted(0.8, "16 evenly spaced images"),
              "data": {"split": {"test": 3292}, "evaluated": {"test": 510}}}
    whole = {**_prompted(0.8), "data": {"split": {"test": 3292}}}
    first = words.one_click_words({"A": capped, "B": whole}).split("\n\n")[0]
    assert first == ("The 20-click protocol ran on: **A**: 16 evenly spaced images of the 510 test images "
                     "scored (of 3,292); **B**: all of the 3,292 test images scored (the profile's budget, "
                     "`evaluation.interactive_images`; the 1-click and box metrics use every test image "
                     "scored).")


def test_full_target_words_quote_the_target_and_the_study() -> None:
    assert words.full_target_words(0.8) == (
        "The quality target for it is **a test mIoU of at least 0.80 on this book's test split**. The "
        "study's UNet reached mIoU 0.69 on the *full* dataset (37 breeds, its own split): the two are "
        "different data and should not be ranked against each other.")


def _record(root: str = ".../oxford-iiit-pet-256", evaluated: int = 3292) -> dict:
    return {"test": {"miou": 0.7263}, "train_summary": {"epochs_completed": 12},
            "data": {"root": root, "image_size": 128, "breeds": 37, "usable_pairs": 6997,
                     "split": {"train": 2922, "val": 730, "test": 3292}, "evaluated": {"test": evaluated}}}


def test_reference_beside_study_words_set_the_record_beside_the_study_with_what_differs() -> None:
    assert words.reference_beside_study_words(_record()) == (
        "**The recorded `standard` reference run** of the UNet reaches test mIoU **0.726**, beside the "
        "study's **0.69**. What differs: *data*: the 256 px copy of 37 breeds (folder `oxford-iiit-pet-256`, "
        "6,997 usable images), tested on all 3,292 test images of this book's split (the study: the full "
        "dataset, its own split); *resolution*: 128 px training (the study: 512 px); *training*: 12 epochs "
        "over 2,922 training images. Neither number ranks the other.")
    other = words.reference_beside_study_words(_record("/data/pets", 500))
    assert ("*data*: a copy of 37 breeds (folder `pets`, 6,997 usable images), tested on 500 of the "
            "3,292 ") in other
    assert words.reference_beside_study_words(None) == (
        "No `standard` reference run of the UNet is recorded yet, so only this build's numbers stand beside "
        "the study's mIoU 0.69.")


def test_overfitting_scale_words_rank_the_models_by_trainable_parameters() -> None:
    assert words.overfitting_scale_words(2922, {"UNet": 1_900_000, "SAM 2": 4_100_000}) == (
        "This build trains on **2,922 training images**. Trainable parameters, most first: SAM 2 4,100,000 "
        "(1,403 per training image); UNet 1,900,000 (650 per training image).")


def test_input_size_words_name_the_drawn_size_and_each_models() -> None:
    assert words.input_size_words({"UNet": 128, "SAM 2": 256}, 128) == (
        "Drawn at 128 x 128 px. Every model gets the perturbed photograph resized and padded to its own "
        "input size: UNet 128 px, SAM 2 256 px.")
