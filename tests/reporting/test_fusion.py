"""petseg.reporting.fusion: chapter 4's sentences follow the numbers they are given."""

from __future__ import annotations

from petseg.reporting.fusion import (
    blockiness_words,
    fusion_results_text,
    fusion_verdict,
    vector_use_text,
    vector_use_words,
    versus,
)


def rows(concat: float, film: float, effnet: float, unet: float) -> dict[str, dict[str, float]]:
    return {key: {"mIoU": value, "Dice cat": value - 0.1, "Dice dog": value + 0.1}
            for key, value in (("fusion_concat", concat), ("fusion_film", film), ("efficientnet_unet", effnet),
                               ("unet", unet))}


def test_versus_calls_small_gaps_level_and_names_the_direction_otherwise() -> None:
    assert versus({"mIoU": 0.505}, {"mIoU": 0.5}, "A", "B") == "A and B are level on mIoU (0.505 vs 0.500)"
    assert versus({"mIoU": 0.45}, {"mIoU": 0.5}, "A", "B") == "A is behind B on mIoU by 0.050 (0.450 vs 0.500)"
    assert "ahead of" in versus({"Dice cat": 0.7}, {"Dice cat": 0.6}, "A", "B", column="Dice cat")


def test_results_text_adds_a_caveat_only_when_training_lengths_differ() -> None:
    same = {"fusion_concat": 480, "fusion_film": 480, "efficientnet_unet": 480, "unet": 480}
    text = fusion_results_text(rows(0.6, 0.62, 0.7, 0.55), same, "quick")
    assert text.startswith("**What this build measured**")
    assert "the better fusion (FiLM)" in text and "Training length differs" not in text
    shorter = {**same, "fusion_concat": 320, "fusion_film": 320}
    text = fusion_results_text(rows(0.6, 0.5, 0.7, 0.55), shorter, "quick")
    assert "**Training length differs**" in text and "profile `quick`" in text
    assert "Concat is ahead of the UNet *despite* the shorter schedule." in text
    assert "FiLM trails the UNet" in text and "320 optimiser steps" in text
    longer = {**same, "efficientnet_unet": 1200}
    text = fusion_results_text(rows(0.6, 0.5, 0.7, 0.55), longer, "quick")
    assert "EfficientNet-UNet trained longer than the UNet: part of its lead may be the longer schedule." in text


def test_this_build_is_set_beside_the_reference_and_says_no_verdict() -> None:
    reference = {"fusion_concat": 0.856, "fusion_film": 0.856, "efficientnet_unet": 0.878, "unet": 0.726}
    text = fusion_verdict(rows(0.42, 0.71, 0.79, 0.44), reference)
    assert text.startswith("**This build beside the reference run**") and "at fault" not in text
    assert "- FiLM minus concat: +0.290 mIoU in this build, +0.000 in the reference run: **not** the reference's" in text
    assert "- the better fusion minus the UNet: +0.270 mIoU in this build, +0.130 in the reference run: the same" in text
    swapped = fusion_verdict(rows(0.71, 0.42, 0.79, 0.44), {**reference, "fusion_film": 0.80})
    assert "- FiLM minus concat: -0.290 mIoU in this build, -0.056 in the reference run: the same direction." in swapped
    assert "no reference record" in fusion_verdict(rows(0.5, 0.6, 0.7, 0.55))


def test_vector_use_is_described_from_the_share_of_flipped_pixels() -> None:
    assert "**ignore**" in vector_use_words("concat", 0.5)
    assert "**partly**" in vector_use_words("concat", 20)
    assert "**driven by the vector**" in vector_use_words("FiLM", 70)
    assert [blockiness_words(s) for s in (1.0, 1.5, 2.5)] == ["not grid-aligned", "slightly grid-aligned",
                                                             "clearly blocky"]
    row = {"pet pixels flipped (%)": 70.0, "|margin change| pet": 1.5, "blockiness of the change": 1.0,
           "blockiness of the prediction": 1.0}
    text = vector_use_text(row, {**row, "pet pixels flipped (%)": 0.2}, row)
    assert "flips **70.0%** of the pet pixels of the concat model and **0.2%** of the FiLM model's" in text
    assert "**not found** on this build" in text
    assert "**measured**" in vector_use_text({**row, "blockiness of the change": 2.5}, row, row)


def test_subset_words_give_the_counts() -> None:
    from petseg.reporting.fusion import subset_words

    assert subset_words(255, 510) == "Measured on 255 of the 510 evaluated test images (every second one)."
