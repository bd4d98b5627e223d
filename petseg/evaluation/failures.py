"""Failure analysis helpers (chapter 7): the worst images, signs of overfitting."""

from __future__ import annotations

import numpy as np
import pandas as pd


def worst(per_image: pd.DataFrame, n: int = 3, column: str = "miou") -> list[int]:
    """Row positions of the ``n`` images with the lowest ``column`` (NaN rows last), worst first."""
    if column not in per_image:
        raise KeyError(f"no column {column!r}; columns: {', '.join(per_image.columns)}")
    order = per_image[column].fillna(np.inf).to_numpy().argsort(kind="stable")
    return [int(i) for i in order[:n]]


def overfitting_signs(history: pd.DataFrame, score: str | None = None) -> dict[str, float | int | None]:
    """From a run's per-epoch log: the epoch of lowest validation loss, the last epoch, the validation loss rise
    since its minimum, the final train/validation loss gap, and (when ``score``, e.g. ``val_miou``, is
    logged) the best and final validation score. A validation loss that rises while the training loss
    falls is the classic sign of overfitting."""
    if history.empty or not {"epoch", "train_loss", "val_loss"} <= set(history.columns):
        raise ValueError("history needs epoch, train_loss and val_loss columns with at least one row")
    val = history["val_loss"].to_numpy(float)
    best = int(np.nanargmin(val))
    last = history.iloc[-1]
    signs: dict[str, float | int | None] = {
        "epochs": int(last["epoch"]), "best_val_loss_epoch": int(history["epoch"].iloc[best]),
        "val_loss_rise": float(val[-1] - val[best]), "final_gap": float(last["val_loss"] - last["train_loss"]),
        "train_loss_drop": float(history["train_loss"].iloc[0] - last["train_loss"]),
    }
    if score and score in history and history[score].notna().any():
        signs["best_" + score] = float(history[score].max())
        signs["final_" + score] = float(last[score])
    return signs
