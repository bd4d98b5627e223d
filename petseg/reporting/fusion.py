"""Chapter 4's sentences about the global-vector fusion models, from this build's numbers.

The chapter's code cells compute tables; these functions turn rows of them into the Markdown the page shows,
so the words follow the numbers of every build (no number is written by hand). Rows are mappings (pandas
Series or dicts) with the columns of :func:`petseg.reporting.runs.metrics_table` (``mIoU``, ``Dice cat``, ...)
or of :func:`petseg.evaluation.fusion.fusion_diagnostics`. ``rows`` are keyed by the catalog keys
``fusion_concat``, ``fusion_film``, ``efficientnet_unet`` and ``unet``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["blockiness_words", "fusion_results_text", "fusion_verdict", "vector_use_text", "vector_use_words",
           "versus"]

Row = Mapping[str, Any]
LEVEL = 0.01  # gaps below this (mIoU) are called level
KEYS = ("fusion_concat", "fusion_film", "efficientnet_unet", "unet")


def versus(a: Row, b: Row, name_a: str, name_b: str, column: str = "mIoU") -> str:
    """``"A is ahead of B on mIoU by 0.012 (0.512 vs 0.500)"``, or level when the gap is below 0.01."""
    gap = a[column] - b[column]
    if abs(gap) < LEVEL:
        return f"{name_a} and {name_b} are level on {column} ({a[column]:.3f} vs {b[column]:.3f})"
    return (f"{name_a} is {'ahead of' if gap > 0 else 'behind'} {name_b} on {column} by {abs(gap):.3f} "
            f"({a[column]:.3f} vs {b[column]:.3f})")


def _training_length_caveat(rows: Mapping[str, Row], steps: Mapping[str, int], profile: str) -> str:
    """The paragraph saying that the models trained for different numbers of optimiser steps ('' when they did
    not)."""
    if steps["fusion_concat"] == steps["unet"] and steps["efficientnet_unet"] == steps["unet"]:
        return ""
    caveat = (f"\n\n**Training length differs**: the fusion models trained for {steps['fusion_concat']:,} optimiser "
              f"steps, the EfficientNet-UNet for {steps['efficientnet_unet']:,}, the chapter 2 UNet for "
              f"{steps['unet']:,} (profile `{profile}`: the frozen encoder's forward pass makes each fusion step "
              "dearer, and the chapter must fit its CI budget).")
    named = (("Concat", "fusion_concat"), ("FiLM", "fusion_film"), ("EfficientNet-UNet", "efficientnet_unet"))
    shorter = [name for name, key in named if steps[key] < steps["unet"]]
    longer = [name for name, key in named if steps[key] > steps["unet"] and rows[key]["mIoU"] > rows["unet"]["mIoU"]]
    ahead = [name for name, key in named if name in shorter and rows[key]["mIoU"] > rows["unet"]["mIoU"]]
    behind = [name for name in shorter if name not in ahead]
    if ahead:
        caveat += f" {', '.join(ahead)} {'is' if len(ahead) == 1 else 'are'} ahead of the UNet *despite* the shorter schedule."
    if behind:
        caveat += (f" {', '.join(behind)} {'trails' if len(behind) == 1 else 'trail'} the UNet and may be short of "
                   "training rather than of ideas (FiLM starts as exactly the UNet).")
    if longer:
        caveat += (f" {', '.join(longer)} {'trained' if len(longer) > 1 else 'trained'} longer than the UNet: part of "
                   f"{'its' if len(longer) == 1 else 'their'} lead may be the longer schedule.")
    return caveat


def fusion_results_text(rows: Mapping[str, Row], steps: Mapping[str, int], profile: str) -> str:
    """"What this build measured": each fusion against the UNet and each other, the pretrained-encoder UNet
    against both, and a caveat when the training lengths differ."""
    concat, film, effnet, unet = (rows[key] for key in KEYS)
    best_fusion = "FiLM" if film["mIoU"] > concat["mIoU"] else "concat"
    lines = [
        f"- Concat fusion vs the plain UNet: {versus(concat, unet, 'concat fusion', 'the UNet')}; cat Dice "
        f"{concat['Dice cat']:.3f} vs {unet['Dice cat']:.3f}, dog Dice {concat['Dice dog']:.3f} vs {unet['Dice dog']:.3f}.",
        f"- FiLM vs concat: {versus(film, concat, 'FiLM', 'concat')}; FiLM vs the UNet: {versus(film, unet, 'FiLM', 'the UNet')}.",
        f"- The pretrained-encoder UNet: {versus(effnet, unet, 'EfficientNet-UNet', 'the UNet')}, and "
        f"{versus(effnet, film if best_fusion == 'FiLM' else concat, 'EfficientNet-UNet', 'the better fusion (' + best_fusion + ')')}; "
        f"its cat/dog Dice {effnet['Dice cat']:.3f}/{effnet['Dice dog']:.3f}.",
    ]
    return ("**What this build measured** (global vector: EfficientNet-Lite0, ImageNet):\n\n" + "\n".join(lines)
            + _training_length_caveat(rows, steps, profile))


def blockiness_words(score: float) -> str:
    """Words for a blockiness score (1 = no jump at the bottleneck grid lines)."""
    return "clearly blocky" if score > 2 else ("slightly grid-aligned" if score > 1.3 else "not grid-aligned")


def vector_use_words(name: str, flipped: float) -> str:
    """What a fusion model does with its vector, from the share (%) of pet pixels another species' vector flips."""
    if flipped < 1:
        return f"the {name} model has learned to **ignore** the vector (its species decision comes from the image path)"
    if flipped < 50:
        return (f"the {name} model **partly** relies on the vector: another species' vector flips a minority of its pet "
                "pixels, so image path and vector share the species decision")
    return (f"the {name} model's species decision is **driven by the vector**: another species' vector flips most of "
            "its pet pixels, so the image path finds the pet and the vector names it")


def vector_use_text(concat: Row, film: Row, unet: Row) -> str:
    """The vector-swap diagnostics in words: rows of ``fusion_diagnostics`` for concat, FiLM and the UNet."""
    flipped, margin = "pet pixels flipped (%)", "|margin change| pet"
    change, prediction = "blockiness of the change", "blockiness of the prediction"
    text = [
        f"- Swapping in the other species' vector flips **{concat[flipped]:.1f}%** of the pet pixels of the "
        f"concat model and **{film[flipped]:.1f}%** of the FiLM model's "
        f"(mean cat-dog margin change on pet pixels {concat[margin]:.2f} and {film[margin]:.2f}).",
        f"- Spatial artifacts: the concat model's change map scores {concat[change]:.2f} "
        f"({blockiness_words(concat[change])}), FiLM's {film[change]:.2f} "
        f"({blockiness_words(film[change])}). The predictions themselves score {concat[prediction]:.2f} "
        f"(concat), {film[prediction]:.2f} (FiLM) and {unet[prediction]:.2f} (the plain UNet).",
        f"- Use of the vector: {vector_use_words('concat', concat[flipped])}; {vector_use_words('FiLM', film[flipped])}.",
    ]
    grid = max(concat[change], concat[prediction])
    text.append("- Bottleneck-grid artifacts of the naive fusion: " + (
        "**measured**: the change it causes follows the bottleneck grid." if grid > 1.3 else
        "**not found** on this build: neither the change the vector causes nor the prediction jumps at the "
        "bottleneck grid lines (presumably the decoder's transposed convolutions and skip connections spread the "
        "per-cell offset). The artifacts the concat model does show are of another kind: mixed cat and dog "
        "pixels inside one pet when image path and vector disagree (swapped panels above)."))
    return "\n".join(text)


def fusion_verdict(rows: Mapping[str, Row], reference: Mapping[str, float] | None = None) -> str:
    """This build's fusion comparisons set beside the reference run's, one line each; no verdict.

    The verdicts of chapter 4 come from the reference records
    (:func:`petseg.reporting.conclusions.recorded_comparisons`); this build is undertrained and tested on a subset,
    so each of its gaps is only said to agree or not with the reference's direction. ``reference``: mIoU of
    the reference records keyed like ``rows`` (missing keys: not recorded)."""
    reference = reference or {}
    concat, film, effnet, unet = (rows[key] for key in KEYS)
    best = "fusion_film" if film["mIoU"] > concat["mIoU"] else "fusion_concat"
    pairs = (("fusion_film", "fusion_concat", "FiLM", "concat"), (best, "unet", "the better fusion", "the UNet"),
             ("efficientnet_unet", best, "EfficientNet-UNet", "the better fusion"))
    lines = []
    for a, b, name_a, name_b in pairs:
        gap = rows[a]["mIoU"] - rows[b]["mIoU"]
        line = f"- {name_a} minus {name_b}: {gap:+.3f} mIoU in this build"
        if a in reference and b in reference:
            reference_gap = reference[a] - reference[b]
            same = (abs(gap) < LEVEL and abs(reference_gap) < LEVEL) or (gap * reference_gap > 0 and abs(gap) >= LEVEL
                                                                          and abs(reference_gap) >= LEVEL)
            line += (f", {reference_gap:+.3f} in the reference run: "
                     + ("the same direction." if same else "**not** the reference's direction."))
        else:
            line += "; no reference record to compare with."
        lines.append(line)
    return ("**This build beside the reference run** (this build: quick profile, one seed, no interval; it shows "
            "that the pipeline runs and decides nothing):\n\n" + "\n".join(lines)
            + "\n\nWhere this build's direction differs from the reference's, the likely reason is its training "
            "budget: a few hundred optimiser steps against the reference's several thousand.")


def subset_words(used: int, evaluated: int) -> str:
    """'Measured on 255 of the 510 evaluated test images.'"""
    return f"Measured on {used:,} of the {evaluated:,} evaluated test images (every second one)."
