"""Figures for the book: mask overlays, dataset statistics, galleries. Each function returns its Figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from petseg.data.labels import BACKGROUND, CAT, CLASS_NAMES, DOG, IGNORE_INDEX

LABEL_COLOURS = {BACKGROUND: (0, 0, 0), CAT: (230, 126, 34), DOG: (52, 152, 219), IGNORE_INDEX: (255, 255, 255)}
SPECIES_COLOURS = {"cat": "#e67e22", "dog": "#3498db"}


def colourise(mask: np.ndarray) -> np.ndarray:
    """A label mask as an RGB image (background black, cat orange, dog blue, ignore white)."""
    out = np.zeros((*mask.shape, 3), np.uint8)
    for label, colour in LABEL_COLOURS.items():
        out[mask == label] = colour
    return out


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colourised pet and ignore pixels of ``mask`` over ``image``; background stays as is."""
    blended = image.astype(np.float32).copy()
    painted = mask != BACKGROUND
    blended[painted] = (1 - alpha) * blended[painted] + alpha * colourise(mask)[painted]
    return blended.clip(0, 255).astype(np.uint8)


def label_legend(ax: plt.Axes, labels: Sequence[int] = (CAT, DOG, IGNORE_INDEX)) -> None:
    names = {**dict(enumerate(CLASS_NAMES)), IGNORE_INDEX: "ignore (255)"}
    handles = [Patch(facecolor=np.array(LABEL_COLOURS[k]) / 255, edgecolor="grey", label=names[k]) for k in labels]
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8)


def breed_counts(breeds: dict[str, int], species_of: dict[str, str]) -> Figure:
    """Horizontal bar chart of usable images per breed, coloured by species."""
    names = sorted(breeds, key=lambda b: (species_of[b], -breeds[b]))
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2))
    ax.barh(names, [breeds[n] for n in names], color=[SPECIES_COLOURS[species_of[n]] for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("usable images")
    ax.legend(handles=[Patch(color=c, label=s) for s, c in SPECIES_COLOURS.items()], loc="lower right")
    ax.set_title("Images per breed")
    fig.tight_layout()
    return fig


def image_sizes(sizes: Sequence[tuple[int, int]], species: Sequence[str]) -> Figure:
    """Scatter of original image width x height by species, with the aspect-ratio histogram."""
    array = np.asarray(sizes, dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, colour in SPECIES_COLOURS.items():
        chosen = np.asarray(species) == name
        left.scatter(array[chosen, 1], array[chosen, 0], s=8, alpha=0.6, color=colour, label=name)
        right.hist(array[chosen, 1] / array[chosen, 0], bins=30, alpha=0.6, color=colour, label=name)
    left.set(xlabel="width (px)", ylabel="height (px)", title="Original image sizes")
    right.set(xlabel="aspect ratio (width / height)", ylabel="images", title="Aspect ratios")
    left.legend()
    fig.tight_layout()
    return fig


def pair_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str] = (), row_labels: Sequence[str] = (),
              size: float = 2.6) -> Figure:
    """A grid of images (uint8 RGB, or label masks, which are colourised), each in a thin grey frame.

    ``titles`` label the panels in reading order (row by row); give just one row's worth to title the top row.
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            picture = row[c]
            ax.imshow(colourise(picture) if picture.ndim == 2 else picture)
            for spine in ax.spines.values():
                spine.set_edgecolor("#bbbbbb")
            k = r * n_cols + c
            if k < len(titles):
                ax.set_title(titles[k], fontsize=9)
        if r < len(row_labels):
            axes[r][0].set_ylabel(row_labels[r], fontsize=9)
    fig.tight_layout()
    return fig


def species_balance(table: pd.DataFrame) -> Figure:
    """Grouped bars: one group per scheme (rows of ``table``), one bar per species (columns)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    table.plot.bar(ax=ax, color=[SPECIES_COLOURS.get(c, "grey") for c in table.columns], rot=0)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set_ylabel("training items per epoch")
    ax.set_title("Species balance of the training split")
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Train/validation loss per epoch and, when present, validation mIoU (or SSIM for autoencoders)."""
    score = next((c for c in ("val_miou", "val_ssim") if c in history and history[c].notna().any()), None)
    fig, axes = plt.subplots(1, 2 if score else 1, figsize=(10 if score else 5, 3.4), squeeze=False)
    loss_ax = axes[0][0]
    loss_ax.plot(history["epoch"], history["train_loss"], marker="o", ms=3, label="train")
    loss_ax.plot(history["epoch"], history["val_loss"], marker="o", ms=3, label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_ax.legend()
    if score:
        ax = axes[0][1]
        ax.plot(history["epoch"], history[score], marker="o", ms=3, color="tab:green")
        best = history[score].idxmax()
        ax.axvline(history["epoch"][best], color="grey", ls=":", label=f"best epoch {history['epoch'][best]}")
        ax.set(xlabel="epoch", ylabel=score.removeprefix("val_"), title=f"Validation {score.removeprefix('val_')}")
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def per_class_bars(table: pd.DataFrame, metric: str = "Dice", classes: Sequence[str] = CLASS_NAMES) -> Figure:
    """Grouped bars of ``<metric> <class>`` columns, one group per row (model or baseline) of ``table``."""
    columns = [f"{metric} {c}" for c in classes]
    data = table[columns].rename(columns=lambda c: c.removeprefix(f"{metric} "))
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    data.plot.bar(ax=ax, rot=0, color=["#555555", SPECIES_COLOURS["cat"], SPECIES_COLOURS["dog"]][: len(classes)])
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"Per-class {metric} on the test split")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def error_map(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """RGB: correct pixels dark grey, wrong pixels red, ignored pixels white."""
    out = np.full((*target.shape, 3), 60, np.uint8)
    out[(prediction != target)] = (220, 40, 40)
    out[target == IGNORE_INDEX] = 255
    return out


def prediction_panels(images: np.ndarray, targets: np.ndarray, probabilities: np.ndarray,
                      row_labels: Sequence[str] = ()) -> Figure:
    """Per sample: input, ground truth, prediction, error map, and one confidence map per class.

    ``images`` (N, H, W, 3) uint8, ``targets`` (N, H, W), ``probabilities`` (N, C, H, W) softmax outputs.
    """
    n, n_classes = len(images), probabilities.shape[1]
    n_cols = 4 + n_classes
    fig, axes = plt.subplots(n, n_cols, figsize=(2.1 * n_cols, 2.2 * n), squeeze=False)
    titles = ["input", "ground truth", "prediction", "errors (red)"] + [f"p({c})" for c in CLASS_NAMES[:n_classes]]
    for i in range(n):
        prediction = probabilities[i].argmax(0)
        shown_prediction = np.where(targets[i] == IGNORE_INDEX, IGNORE_INDEX, prediction)
        panels = [images[i], colourise(targets[i]), colourise(prediction.astype(np.uint8)),
                  error_map(shown_prediction, targets[i])]
        for c, panel in enumerate(panels):
            axes[i][c].imshow(panel)
        for k in range(n_classes):
            im = axes[i][4 + k].imshow(probabilities[i, k], vmin=0, vmax=1, cmap="magma")
        for c in range(n_cols):
            axes[i][c].set_xticks([])
            axes[i][c].set_yticks([])
            if i == 0:
                axes[i][c].set_title(titles[c], fontsize=9)
        if i < len(row_labels):
            axes[i][0].set_ylabel(row_labels[i], fontsize=8)
    fig.colorbar(im, ax=axes[:, -1].tolist(), fraction=0.05, pad=0.02, label="confidence")
    return fig


def reconstructions(images: np.ndarray, outputs: np.ndarray, labels: Sequence[str] = ()) -> Figure:
    """Top row the inputs, bottom row the autoencoder's reconstructions (both (N, H, W, 3) uint8)."""
    return pair_grid([list(images), list(outputs)], [*labels], row_labels=["input", "reconstruction"])
