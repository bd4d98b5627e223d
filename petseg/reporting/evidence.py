"""Uncertainty for the report's findings: bootstrap intervals over test images and paired comparisons.

A dataset-level mIoU is a ratio of sums (the summed confusion matrix), so the bootstrap resamples *images*
and recomputes the metric from the resampled images' confusion matrices, exactly as the test metric itself
is computed. Two models scored on the same images are compared with a *paired* bootstrap: each draw resamples
the same images for both, so the interval is that of their difference, not of two separate numbers.

A verdict ("A beats B") is given only where the 95% interval of the difference excludes 0 and, where
several seeds exist, the difference is larger than the seed-to-seed spread; otherwise the models are
"not distinguishable". Every sentence the report prints about an ordering comes from :func:`compare_words`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from petseg.data.labels import CLASS_NAMES

__all__ = ["BOOTSTRAP_DRAWS", "Comparison", "Interval", "compare", "compare_words", "confusion_table",
           "has_confusion", "interval", "metric_from_confusion", "paired_difference", "seed_spread"]

BOOTSTRAP_DRAWS = 2000
CONFIDENCE = 0.95
# metrics computed from summed confusion matrices; any other name is the mean of a per-image column
CONFUSION_METRICS = ("miou", "mdice", "pixel_accuracy", "pet_miou",
                     *(f"{kind}_{name}" for kind in ("iou", "dice") for name in CLASS_NAMES))


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval (``low``..``high``) over ``images`` test images."""

    estimate: float
    low: float
    high: float
    images: int

    def words(self, digits: int = 3) -> str:
        """'0.726 (95% CI 0.716-0.737)'."""
        return f"{self.estimate:.{digits}f} (95% CI {self.low:.{digits}f} to {self.high:.{digits}f})"

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def confusion_columns(class_names: Sequence[str] = CLASS_NAMES) -> list[str]:
    """The per-image columns holding one image's confusion matrix, row-major (true class, then predicted)."""
    return [f"n_{true}_as_{predicted}" for true in class_names for predicted in class_names]


def has_confusion(table: pd.DataFrame | None) -> bool:
    """Whether a per-image table holds the images' confusion matrices (records made before format 2 do not)."""
    return table is not None and all(column in table for column in confusion_columns())


def confusion_table(table: pd.DataFrame) -> np.ndarray:
    """``[N, C, C]`` int64 confusion matrices of a per-image table's rows."""
    if not has_confusion(table):
        raise ValueError("this per-image table has no n_<true>_as_<predicted> columns (record it again)")
    num_classes = len(CLASS_NAMES)
    return table[confusion_columns()].to_numpy(np.int64).reshape(len(table), num_classes, num_classes)


def metric_from_confusion(matrices: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` of summed confusion matrices ``[..., C, C]`` (any leading axes): ``miou``, ``mdice``,
    ``pixel_accuracy``, ``pet_miou`` (background vs cat+dog), ``iou_<class>`` or ``dice_<class>``. A class
    absent from prediction and target is left out of the mean, as in :class:`petseg.evaluation.ConfusionMatrix`."""
    matrices = np.asarray(matrices, dtype=np.float64)
    if metric == "pet_miou":
        pet = matrices[..., 1:, :].sum(axis=-2)  # rows: background, pet
        matrices = np.stack([np.stack([matrices[..., 0, 0], matrices[..., 0, 1:].sum(-1)], -1),
                             np.stack([pet[..., 0], pet[..., 1:].sum(-1)], -1)], -2)
        metric = "miou"
    true_positive = np.diagonal(matrices, axis1=-2, axis2=-1)
    false_positive = matrices.sum(axis=-2) - true_positive
    false_negative = matrices.sum(axis=-1) - true_positive
    if metric == "pixel_accuracy":
        return true_positive.sum(-1) / np.maximum(matrices.sum(axis=(-2, -1)), 1)
    kind = "iou" if metric in ("miou",) or metric.startswith("iou_") else "dice"
    denominator = true_positive + false_positive + false_negative
    numerator = true_positive if kind == "iou" else 2 * true_positive
    denominator = denominator if kind == "iou" else denominator + true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)
    if metric in ("miou", "mdice"):
        present = ~np.isnan(per_class)
        return np.where(present, per_class, 0).sum(-1) / np.maximum(present.sum(-1), 1)
    name = metric.split("_", 1)[1]
    if name not in CLASS_NAMES:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(CONFUSION_METRICS)} or a column's mean")
    return per_class[..., CLASS_NAMES.index(name)]


def _weights(images: int, draws: int, seed: int) -> np.ndarray:
    """``[draws, images]`` resampling counts (each row: ``images`` draws with replacement)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(images, np.full(images, 1.0 / images), size=draws)


def _statistic(table: pd.DataFrame, metric: str, weights: np.ndarray | None) -> np.ndarray | float:
    """``metric`` of ``table`` (weights ``None``) or of each bootstrap draw (``weights [draws, N]``)."""
    if metric in CONFUSION_METRICS:
        matrices = confusion_table(table)
        summed = (matrices.sum(0) if weights is None
                  else (weights @ matrices.reshape(len(table), -1)).reshape(len(weights), *matrices.shape[1:]))
        return metric_from_confusion(summed, metric)
    if metric not in table:
        raise ValueError(f"no per-image column {metric!r} (columns: {', '.join(map(str, table.columns))})")
    values = table[metric].to_numpy(np.float64)
    finite = ~np.isnan(values)
    if weights is None:
        return float(values[finite].mean())
    return (weights[:, finite] @ values[finite]) / np.maximum(weights[:, finite].sum(1), 1)


def interval(table: pd.DataFrame, metric: str = "miou", draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> Interval:
    """The test ``metric`` of a per-image table with its 95% percentile-bootstrap interval over images."""
    if len(table) == 0:
        raise ValueError("an empty per-image table has no interval")
    samples = _statistic(table, metric, _weights(len(table), draws, seed))
    low, high = np.nanpercentile(samples, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return Interval(float(_statistic(table, metric, None)), float(low), float(high), len(table))


def paired_difference(table_a: pd.DataFrame, table_b: pd.DataFrame, metric: str = "miou",
                      draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> Interval:
    """``metric(A) - metric(B)`` with the 95% interval of a paired bootstrap over the images both were scored
    on (matched by ``stem``; ValueError when they share none)."""
    common = table_a[["stem"]].merge(table_b[["stem"]], on="stem")["stem"]
    if common.empty:
        raise ValueError("the two per-image tables share no test image: they cannot be compared")
    a = table_a.set_index("stem").loc[common].reset_index()
    b = table_b.set_index("stem").loc[common].reset_index()
    weights = _weights(len(common), draws, seed)
    samples = np.asarray(_statistic(a, metric, weights)) - np.asarray(_statistic(b, metric, weights))
    low, high = np.nanpercentile(samples, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    estimate = float(_statistic(a, metric, None)) - float(_statistic(b, metric, None))
    return Interval(estimate, float(low), float(high), len(common))


def seed_spread(values: Sequence[float]) -> float | None:
    """The range (max - min) of one model's metric over seeds; None with fewer than two seeds."""
    values = [float(value) for value in values]
    return max(values) - min(values) if len(values) >= 2 else None


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing model ``a`` with ``b`` on one metric: ``winner`` is a name or None."""

    a: str
    b: str
    metric: str
    difference: Interval
    spread: float | None
    winner: str | None


def compare(name_a: str, table_a: pd.DataFrame, name_b: str, table_b: pd.DataFrame, metric: str = "miou",
            spread: float | None = None) -> Comparison:
    """Compare two models on the same test images; ``spread``: the larger seed spread of the two (or None).

    The winner is the model ahead when the paired interval excludes 0 and the difference exceeds ``spread``."""
    difference = paired_difference(table_a, table_b, metric)
    beyond_seeds = spread is None or abs(difference.estimate) > spread
    winner = None
    if difference.excludes_zero() and beyond_seeds:
        winner = name_a if difference.estimate > 0 else name_b
    return Comparison(name_a, name_b, metric, difference, spread, winner)


METRIC_WORDS = {"miou": "mIoU", "mdice": "mDice", "pixel_accuracy": "pixel accuracy", "pet_miou": "pet-vs-background mIoU"}


def metric_words(metric: str) -> str:
    """How a metric is named in a sentence ('mIoU', 'cat IoU' ...)."""
    if metric in METRIC_WORDS:
        return METRIC_WORDS[metric]
    kind, _, name = metric.partition("_")
    return f"{name} {'IoU' if kind == 'iou' else 'Dice' if kind == 'dice' else kind}" if name else metric


def compare_words(comparison: Comparison) -> str:
    """The sentence for a :class:`Comparison`: who is ahead, by how much, with the interval, or that the two are
    not distinguishable and why."""
    c, d = comparison, comparison.difference
    what = metric_words(c.metric)
    low, high = (-d.high, -d.low) if c.winner == c.b else (d.low, d.high)  # the winner minus the other
    interval_words = f"paired 95% CI {low:+.3f} to {high:+.3f} over {d.images:,} test images"
    if c.winner is not None:
        loser = c.b if c.winner == c.a else c.a
        return f"**{c.winner} beats {loser}** on {what} by {abs(d.estimate):.3f} ({interval_words})."
    if not d.excludes_zero():
        reason = "the interval includes 0"
    else:
        reason = f"the difference is within the seed-to-seed spread of {c.spread:.3f}"
    return (f"**{c.a} and {c.b} are not distinguishable** on {what}: difference {d.estimate:+.3f} "
            f"({interval_words}; {reason}).")
