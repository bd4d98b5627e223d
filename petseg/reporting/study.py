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
