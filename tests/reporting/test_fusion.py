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


def test_the_verdict_follows_which_fusion_and_which_model_won() -> None:
    pet = {"fusion_concat": 0.8, "fusion_film": 0.81, "efficientnet_unet": 0.9}
    text = fusion_verdict(rows(0.5, 0.6, 0.7, 0.55), pet)
    assert "**The fusion was at fault, on this build**" in text and "gains 0.100 mIoU" in text
    assert "Global semantics **do** help" in text and "beat every global-vector model" in text
    assert "0.900 IoU against 0.810 (FiLM) and 0.800 (concat)" in text
    text = fusion_verdict(rows(0.6, 0.5, 0.55, 0.65), pet)
    assert "FiLM does **not** beat the study's concat fusion" in text
    assert "Neither fusion beats the UNet from scratch" in text and "do **not** beat the best" in text
    assert "end level here" in fusion_verdict(rows(0.6, 0.605, 0.7, 0.5), pet)


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
