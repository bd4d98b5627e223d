"""Figures for the book: mask overlays, dataset statistics, galleries. Each function returns its Figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
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


def _predicted_labels(probabilities: np.ndarray, padding: np.ndarray | None) -> np.ndarray:
    """uint8 argmax over the class axis (first) of one sample, with padding pixels set to the ignore label."""
    labels = probabilities.argmax(0).astype(np.uint8)
    return labels if padding is None else np.where(padding, np.uint8(IGNORE_INDEX), labels)


def _without_padding(values: np.ndarray, padding: np.ndarray | None) -> np.ndarray:
    """``values`` with padding pixels masked out (drawn in the colour map's 'bad' colour)."""
    return values if padding is None else np.ma.masked_where(padding, values)


def prediction_panels(images: np.ndarray, targets: np.ndarray, probabilities: np.ndarray,
                      row_labels: Sequence[str] = (), padding: np.ndarray | None = None) -> Figure:
    """Per sample: input, ground truth, prediction, error map, and one confidence map per class.

    ``images`` (N, H, W, 3) uint8, ``targets`` (N, H, W), ``probabilities`` (N, C, H, W) softmax outputs.
    ``padding`` (N, H, W) bool, optional: pixels added by resize + pad, drawn white (ignored) in the
    prediction and confidence maps, since no metric counts what a model predicts there.
    """
    n, n_classes = len(images), probabilities.shape[1]
    n_cols = 4 + n_classes
    fig, axes = plt.subplots(n, n_cols, figsize=(2.1 * n_cols, 2.2 * n), squeeze=False)
    titles = ["input", "ground truth", "prediction", "errors (red)"] + [f"p({c})" for c in CLASS_NAMES[:n_classes]]
    confidence_colours = plt.get_cmap("magma").with_extremes(bad="white")
    for i in range(n):
        pad = None if padding is None else padding[i]
        prediction = _predicted_labels(probabilities[i], pad)
        shown_prediction = np.where(targets[i] == IGNORE_INDEX, IGNORE_INDEX, prediction)
        panels = [images[i], colourise(targets[i]), colourise(prediction), error_map(shown_prediction, targets[i])]
        for c, panel in enumerate(panels):
            axes[i][c].imshow(panel)
        for k in range(n_classes):
            im = axes[i][4 + k].imshow(_without_padding(probabilities[i, k], pad), vmin=0, vmax=1,
                                       cmap=confidence_colours)
    _finish_grid(fig, axes, titles, row_labels, im, "confidence")
    return fig


def _finish_grid(fig: Figure, axes: np.ndarray, titles: Sequence[str], row_labels: Sequence[str],
                 colour_source: ScalarMappable, colour_label: str) -> None:
    """No ticks, column titles on the first row, a label per row (as far as given), one colour bar beside
    the last column for ``colour_source`` (an image drawn in it)."""
    for i, row in enumerate(axes):
        for c, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[c], fontsize=9)
        if i < len(row_labels):
            row[0].set_ylabel(row_labels[i], fontsize=8)
    fig.colorbar(colour_source, ax=axes[:, -1].tolist(), fraction=0.05, pad=0.02, label=colour_label)


def reconstructions(images: np.ndarray, outputs: np.ndarray, labels: Sequence[str] = ()) -> Figure:
    """Top row the inputs, bottom row the autoencoder's reconstructions (both (N, H, W, 3) uint8)."""
    return pair_grid([list(images), list(outputs)], [*labels], row_labels=["input", "reconstruction"])


# ------------------------------------------------------------------ the report (chapters 6-8)

METRIC_NAMES = {"miou": "mIoU", "mdice": "mDice", "accuracy": "pixel accuracy", "pet_iou": "pet IoU",
                "pet_dice": "pet Dice", "binary_accuracy": "pixel accuracy (pet vs bg)"}


def seed_comparison(table: pd.DataFrame, metrics: Sequence[str] = ("miou", "mdice", "accuracy"),
                    baselines: dict[str, dict[str, float]] | None = None, title: str = "") -> Figure:
    """Grouped bars per model (rows of a seed table, column ``model``): the mean over seeds of each metric,
    an error bar from min to max over seeds, every seed as a dot, ``n`` under each model, and each
    baseline (name -> {metric: value}) as a dashed line per metric."""
    import textwrap

    models = list(dict.fromkeys(table["model"]))
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.9 * len(models) + 2.5), 4.2))
    x = np.arange(len(models))
    for k, metric in enumerate(metrics):
        offset = x - 0.4 + width * (k + 0.5)
        grouped = [table.loc[table.model == m, metric].dropna() for m in models]
        means = np.array([g.mean() if len(g) else np.nan for g in grouped])
        low = np.array([g.mean() - g.min() if len(g) else 0 for g in grouped])
        high = np.array([g.max() - g.mean() if len(g) else 0 for g in grouped])
        bars = ax.bar(offset, means, width, color=colours[k % 10], label=METRIC_NAMES.get(metric, metric),
                      yerr=[low, high], capsize=3,
                      error_kw={"elinewidth": 1})
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        for position, values in zip(offset, grouped, strict=True):
            ax.scatter(np.full(len(values), position), values, s=9, color="black", zorder=3)
        for b, values in enumerate((baselines or {}).values()):
            if metric in values and values[metric] is not None:
                ax.axhline(values[metric], color=colours[k % 10], ls=("--", ":", "-.")[b % 3], lw=1, alpha=0.8)
    counts = [int(table.loc[table.model == m, metrics[0]].notna().sum()) for m in models]
    ax.set_xticks(x, [f"{textwrap.fill(m, 22)}\n(n={n} seed{'s' if n != 1 else ''})"
                      for m, n in zip(models, counts, strict=True)], fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("test score (mean over seeds; bar = min..max)")
    if baselines:
        styles = [plt.Line2D([], [], color="grey", ls=("--", ":", "-.")[b % 3]) for b in range(len(baselines))]
        metric_legend = ax.legend(loc="upper left", bbox_to_anchor=(1, 1), title="metric")
        ax.add_artist(metric_legend)
        ax.legend(styles, [f"baseline: {n}" for n in baselines], loc="lower left", bbox_to_anchor=(1, 0), fontsize=8)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1, 1), title="metric")
    ax.set_title(title or "Test metrics per model")
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: dict[str, np.ndarray], class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """Row-normalised confusion matrices (rows = true class, columns = prediction), one heatmap per model."""
    import seaborn as sns

    n = len(matrices)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
    for ax, (name, matrix) in zip(axes.flat, matrices.items(), strict=False):
        matrix = np.asarray(matrix, dtype=float)
        totals = matrix.sum(axis=1, keepdims=True)
        normalised = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        sns.heatmap(normalised, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="Blues", cbar=False, ax=ax,
                    xticklabels=class_names, yticklabels=class_names, annot_kws={"fontsize": 9})
        ax.set(xlabel="predicted", ylabel="true", title=name)
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def reliability_diagrams(diagrams: dict, cols: int = 3) -> Figure:
    """One reliability diagram per model (``name -> petseg.evaluation.calibration.Reliability``): accuracy per confidence
    bin against the diagonal, the gap shaded, the pixel share per bin as grey bars, ECE in the title."""
    n = len(diagrams)
    cols = min(n, cols)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows), squeeze=False)
    for ax, (name, diagram) in zip(axes.flat, diagrams.items(), strict=False):
        centres = (diagram.edges[:-1] + diagram.edges[1:]) / 2
        width = diagram.edges[1] - diagram.edges[0]
        share = diagram.counts / max(diagram.pixels, 1)
        ax.bar(centres, share, width, color="lightgrey", label="share of pixels")
        filled = ~np.isnan(diagram.accuracy)
        ax.bar(centres[filled], diagram.accuracy[filled], width, fill=False, edgecolor="tab:blue", label="accuracy")
        ax.bar(centres[filled], (diagram.confidence - diagram.accuracy)[filled], width,
               bottom=diagram.accuracy[filled], color="tab:red", alpha=0.3, label="gap")
        ax.plot([0, 1], [0, 1], color="black", ls="--", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        ax.set_title(f"{name}\nECE {diagram.ece:.3f}", fontsize=9)
    list(axes.flat)[0].legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def robustness_curves(table: pd.DataFrame, metric: str = "mdice", ylabel: str = "mean Dice",
                      units: dict[str, str] | None = None) -> Figure:
    """A 2 x 4 grid, one panel per perturbation, one line per model: ``metric`` against the level."""
    names = list(dict.fromkeys(table["perturbation"]))
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.8 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):
        part = table[table.perturbation == name]
        for model, group in part.groupby("model", sort=False):
            group = group.sort_values("level_index")
            if group[metric].notna().any():
                ax.plot(group["level"], group[metric], marker="o", ms=3, label=model)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel((units or {}).get(name, "level"), fontsize=8)
        ax.grid(alpha=0.3)
        if name == "contrast_decrease":
            ax.invert_xaxis()
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def breed_heatmap(table: pd.DataFrame, metric: str = "mIoU", colour_label: str | None = None) -> Figure:
    """Per-breed scores (rows = (species, breed), columns = models) as an annotated heatmap."""
    import seaborn as sns

    data = table.drop(columns=[c for c in ("test images",) if c in table.columns])
    labels = [f"{breed} ({species})" for species, breed in data.index]
    fig, ax = plt.subplots(figsize=(1.4 * data.shape[1] + 2.5, 0.45 * data.shape[0] + 1.5))
    sns.heatmap(data.astype(float), annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax,
                yticklabels=labels, cbar_kws={"label": colour_label or f"mean per-image {metric}"})
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_xticklabels(ax.get_xticklabels(), rotation=20, ha="right")
    ax.set_title(f"Per-breed {metric} on the test split")
    fig.tight_layout()
    return fig


def metric_scatter(frame: pd.DataFrame, x: str, y: str, hue: str | None = None, title: str = "",
                   xlabel: str = "", ylabel: str = "") -> Figure:
    """A scatter of two columns (e.g. per-image reconstruction SSIM against segmentation mIoU), coloured
    by ``hue``, with each group's Spearman rank correlation in the legend."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    groups = frame.groupby(hue, sort=False) if hue else [("all", frame)]
    for name, group in groups:
        rho = group[x].rank().corr(group[y].rank())
        colour = SPECIES_COLOURS.get(str(name))
        ax.scatter(group[x], group[y], s=12, alpha=0.6, color=colour, label=f"{name} (Spearman {rho:.2f})")
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def vector_swap_panels(images: np.ndarray, own: np.ndarray, swapped: np.ndarray, margin_change: np.ndarray,
                       block: int | None = None, row_labels: Sequence[str] = (),
                       padding: np.ndarray | None = None) -> Figure:
    """What a global image vector changes: per row an input, the prediction with its own vector, the
    prediction with another image's vector, and the change of the cat-minus-dog logit margin (blue: towards
    dog, red: towards cat; one colour scale for all rows), with the bottleneck grid every ``block`` px.

    ``images`` (N, H, W, 3) uint8; ``own``/``swapped`` (N, C, H, W) probabilities; ``margin_change`` (N, H, W);
    ``padding`` (N, H, W) bool, optional: resize + pad pixels, drawn white and left out of the colour scale.
    """
    n = len(images)
    fig, axes = plt.subplots(n, 4, figsize=(10.5, 2.5 * n), squeeze=False)
    shown = np.abs(margin_change) if padding is None else np.abs(margin_change)[~padding]
    limit = float(np.nanmax(shown, initial=0.0)) or 1.0
    titles = ["input", "prediction, own vector", "prediction, swapped vector", "margin change (cat - dog)"]
    change_colours = plt.get_cmap("RdBu_r").with_extremes(bad="white")
    for i in range(n):
        pad = None if padding is None else padding[i]
        axes[i][0].imshow(images[i])
        axes[i][1].imshow(colourise(_predicted_labels(own[i], pad)))
        axes[i][2].imshow(colourise(_predicted_labels(swapped[i], pad)))
        im = axes[i][3].imshow(_without_padding(margin_change[i], pad), cmap=change_colours, vmin=-limit,
                               vmax=limit)
        if block:
            for position in range(block, margin_change.shape[-1], block):
                axes[i][3].axvline(position - 0.5, color="black", lw=0.5, alpha=0.5)
            for position in range(block, margin_change.shape[-2], block):
                axes[i][3].axhline(position - 0.5, color="black", lw=0.5, alpha=0.5)
    _finish_grid(fig, axes, titles, row_labels, im, "logit margin change")
    return fig


def click_curves(curves: dict[str, Sequence[float]], thresholds: Sequence[float] = (0.85, 0.90)) -> Figure:
    """Mean pet IoU after each click (interactive protocol), one line per model, with the NoC thresholds."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", ms=3, label=name)
    for threshold in thresholds:
        ax.axhline(threshold, color="grey", ls=":", lw=1)
        ax.text(0.99, threshold, f"IoU {threshold:.2f}", va="bottom", ha="right", fontsize=8, color="grey",
                transform=ax.get_yaxis_transform())
    ax.set(xlabel="number of clicks", ylabel="mean pet IoU", ylim=(0, 1), title="IoU per click")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def prompt_panels(examples: dict, title: str = "") -> Figure:
    """Rows of input with click / ground truth / 1-click prediction / input with box / box prediction, from
    :func:`petseg.evaluation.clicks.prompt_examples` (green + positive click, red x negative, yellow box)."""
    count = len(examples["images"])
    fig, axes = plt.subplots(count, 5, figsize=(12, 2.5 * count), squeeze=False)
    titles = ("input + click", "ground truth", "prediction (1 click)", "input + box", "prediction (box)")
    for row in range(count):
        image, mask = examples["images"][row], examples["masks"][row]
        pet = np.where(mask == IGNORE_INDEX, IGNORE_INDEX, (mask != BACKGROUND) * CAT).astype(np.uint8)
        panels = (image, overlay(image, pet), overlay(image, examples["point_predictions"][row].astype(np.uint8)),
                  image, overlay(image, examples["box_predictions"][row].astype(np.uint8)))
        for column, panel in enumerate(panels):
            ax = axes[row][column]
            ax.imshow(panel)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[column], fontsize=9)
        for click in examples["clicks"][row]:
            style = {"marker": "+", "color": "lime"} if click.label == 1 else {"marker": "x", "color": "red"}
            axes[row][0].scatter([click.x], [click.y], s=120, linewidths=2.5, **style)
        x0, y0, x1, y1 = examples["boxes"][row]
        axes[row][3].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="yellow", lw=2))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
