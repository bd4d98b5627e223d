"""petseg.reporting.runs: how a run's numbers were produced, in words."""

from __future__ import annotations


def test_a_runs_description_names_the_capped_subsets_it_was_evaluated_on() -> None:
    from petseg.reporting.runs import evaluated_words

    split = {"train": 2922, "val": 730, "test": 3292}
    assert evaluated_words({"split": split, "evaluated": {"val": 295, "test": 992}}) == (
        " (validated on 295 and tested on 992 of them: breed-stratified subsets)")
    assert evaluated_words({"split": split, "evaluated": {"val": 730, "test": 3292}}) == ""
    assert evaluated_words({"split": split}) == ""  # results written before subsets existed


def test_a_runs_description_names_reduced_precision_only() -> None:
    from petseg.reporting.runs import precision_words

    assert precision_words({"precision": "bf16 autocast"}) == ", training in bf16 autocast"
    assert precision_words({"precision": "fp32"}) == ""
    assert precision_words({}) == ""  # results written before the precision was recorded



def _run(experiment: str, fingerprint: str = "abc", profile: str = "quick", precision: str = "fp32"):
    from pathlib import Path
    from types import SimpleNamespace

    results = {"data": {"image_size": 128, "fingerprint": fingerprint}, "parameters": 2_000_000,
               "trainable_parameters": 1_500_000, "train_seconds": 61.4,
               "train_summary": {"epochs_completed": 6, "precision": precision}}
    return SimpleNamespace(path=Path("/runs") / f"{experiment}-{profile}-s0", results=results,
                           config={"experiment": experiment, "profile": profile, "train": {"epochs": 6}})


def test_a_brief_run_names_the_folder_size_epochs_parameters_and_time() -> None:
    from petseg.reporting.runs import brief_run

    assert brief_run(_run("sam2_hiera", precision="bf16 autocast")) == (
        "**sam2_hiera** (`sam2_hiera-quick-s0`): 128 px, 6 epochs, training in bf16 autocast, 2,000,000 "
        "parameters (1,500,000 trainable), trained in 61 s")


def test_other_runs_words_state_the_shared_data_and_any_difference() -> None:
    from petseg.reporting.runs import other_runs_words

    first = _run("sam2_effnet")
    assert other_runs_words(first, []) == ""
    assert other_runs_words(first, [_run("sam2_hiera"), _run("unet", fingerprint="xyz", profile="full")]) == (
        "Also on this page, with the same data (fingerprint `abc`) and profile `quick` unless stated: "
        "**sam2_hiera** (`sam2_hiera-quick-s0`): 128 px, 6 epochs, 2,000,000 parameters (1,500,000 "
        "trainable), trained in 61 s; **unet** (`unet-full-s0`): 128 px, 6 epochs, 2,000,000 parameters "
        "(1,500,000 trainable), trained in 61 s (data fingerprint `xyz`, profile `full`).")
