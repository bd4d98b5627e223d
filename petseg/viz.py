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
