"""The original study's reported results, quoted as reported (not reproduced here).

They were measured on the full Oxford-IIIT Pet dataset with the study's own split and training; numbers in
this book come from this project's runs and differ in data, split, image size and training length, which
every comparison states next to the numbers.
"""

from __future__ import annotations

import pandas as pd

SOURCE = "the original study's report (full dataset, its own split; quoted, not re-measured)"

# test metrics as reported: mIoU, mDice, pixel accuracy (SAM2: binary pet vs background, 1 point prompt).
# Keyed by the study's own model names: "clip_unet" is the study's CLIP+UNet, which our experiment fusion_unet
# rebuilds (petseg.reporting.tables.STUDY_KEYS maps one to the other); it stays clip_unet because the study used CLIP.
STUDY_RESULTS = {
    "unet": {"model": "UNet", "mIoU": 0.69, "mDice": 0.75, "accuracy": 0.88},
    "clip_unet": {"model": "CLIP+UNet", "mIoU": 0.60, "mDice": 0.66, "accuracy": 0.82},
    "ae_unet": {"model": "AE+UNet", "mIoU": 0.33, "mDice": 0.25, "accuracy": 0.66},
    "sam2": {"model": "SAM2 (binary)", "mIoU": 0.815, "mDice": 0.889, "accuracy": 0.917},
}
STUDY_AUTOENCODER = {"SSIM": 0.88, "PSNR": 28.2, "cat Dice": 0.00}


def study_row(experiment: str) -> pd.DataFrame:
    """The study's reported row for ``experiment`` as a one-row DataFrame (index says where it is from)."""
    row = dict(STUDY_RESULTS[experiment])
    name = row.pop("model")
    return pd.DataFrame([row], index=[f"{name}, original study (as reported)"])


def autoencoder_claim_words() -> str:
    """The study's autoencoder result in one sentence, from :data:`STUDY_AUTOENCODER` (for chapter 3's opening)."""
    return (f"The original study pre-trained a convolutional autoencoder to reconstruct pet photographs, reached "
            f"SSIM {STUDY_AUTOENCODER['SSIM']:.2f} and PSNR {STUDY_AUTOENCODER['PSNR']:.1f} dB, reused its encoder in "
            f"a segmentation UNet, and got a cat Dice of **{STUDY_AUTOENCODER['cat Dice']:.2f}**: good "
            "reconstructions, no cats.")


def inconsistency_words(experiment: str) -> str:
    """A warning when the study's quoted row for ``experiment`` cannot be right as printed ('' when it can):
    a mean Dice below the mean IoU is impossible, since Dice >= IoU for every class."""
    row = STUDY_RESULTS[experiment]
    if row["mDice"] >= row["mIoU"]:
        return ""
    return (f"**The study's {row['model']} row is internally inconsistent**: its mDice {row['mDice']:.2f} is below "
            f"its mIoU {row['mIoU']:.2f}, which no set of predictions can give (for every class Dice = 2 IoU / "
            "(1 + IoU) >= IoU). At least one of its numbers is misreported, so this book compares with its "
            "direction only, never with its digits.")
