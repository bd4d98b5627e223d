"""The book's reference figures, drawn from the committed records of the reference run (no weights needed):
test mIoU with bootstrap intervals, confusion matrices, reliability diagrams, per-breed scores and the mask
panel. Each function returns ``(figure or None, words)``: the words say what is drawn or why nothing is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from petseg import viz
from petseg.evaluation.calibration import Reliability
from petseg.reporting.conclusions import LABELS
from petseg.reporting.evidence import has_confusion, interval, metric_words
from petseg.reporting.record_evidence import decode_mask
from petseg.reporting.recorded import _RECORDED, load_per_image, load_reference_results
from petseg.reporting.study import STUDY_RESULTS

__all__ = ["interval_table", "reference_breeds", "reference_confusions", "reference_intervals",
           "reference_mask_panel", "reference_reliability"]

# our catalog model -> the study's row it corresponds to (only where the model is the study's own)
STUDY_ROWS = {"unet": "unet", "ae_unet_frozen": "ae_unet"}


def _with_tables(profile: str, root: str | Path) -> dict[str, tuple[dict[str, Any], pd.DataFrame]]:
    """Records (not ablations) whose per-image table holds confusions, keyed by record name."""
    found = {}
    for name, record in load_reference_results(profile, root).items():
        table = load_per_image(name, profile, root)
        if has_confusion(table):
            found[name] = (record, table)
    return found


def interval_table(metric: str = "miou", profile: str = "standard", root: str | Path = _RECORDED) -> pd.DataFrame:
    """One row per reference record with a per-image table: ``metric`` with its 95% bootstrap interval."""
    rows = []
    for name, (record, table) in _with_tables(profile, root).items():
        found = interval(table, metric)
        rows.append({"record": name, "model": LABELS[record["key"]], "key": record["key"], "seed": record.get("seed"),
                     metric: round(found.estimate, 4), "low": round(found.low, 4), "high": round(found.high, 4),
                     "test images": found.images})
    return pd.DataFrame(rows, columns=["record", "model", "key", "seed", metric, "low", "high", "test images"])


def reference_intervals(metric: str = "miou", profile: str = "standard",
                        root: str | Path = _RECORDED) -> tuple[Figure | None, str]:
    """Each recorded model's ``metric`` with its 95% interval (one line per seed), the study's number as a cross
    where the model is the study's own."""
    table = interval_table(metric, profile, root)
    if table.empty:
        return None, (f"No `{profile}` record holds a per-image table yet, so no interval can be drawn "
                      "(`petseg record MODEL --profile standard` writes one).")
    table = table.sort_values(metric)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))
    ax.errorbar(table[metric], y, xerr=[table[metric] - table["low"], table["high"] - table[metric]], fmt="o",
                color="tab:blue", capsize=3, label="reference run (95% bootstrap CI)")
    for position, key in zip(y, table["key"], strict=True):
        if key in STUDY_ROWS and metric == "miou":
            ax.plot(STUDY_RESULTS[STUDY_ROWS[key]]["mIoU"], position, "x", color="tab:red", markersize=8,
                    label="the study, as reported")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    ax.set_yticks(y, [f"{m} (s{s})" for m, s in zip(table["model"], table["seed"], strict=True)], fontsize=8)
    ax.set(xlabel=f"test {metric_words(metric)}", xlim=(0, 1))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    words = (f"Test {metric_words(metric)} of the `{profile}` reference records with 95% bootstrap intervals over their "
             f"{int(table['test images'].max()):,} test images.")
    return fig, words


def reference_confusions(profile: str = "standard", root: str | Path = _RECORDED) -> tuple[Figure | None, str]:
    """Row-normalised confusion matrices of the reference records (from their per-image tables)."""
    found = _with_tables(profile, root)
    if not found:
        return None, f"No `{profile}` record holds a per-image table yet."
    from petseg.reporting.evidence import confusion_table

    matrices = {f"{LABELS[r['key']]} (s{r.get('seed')})": confusion_table(t).sum(0) for r, t in found.values()}
    return viz.confusion_matrices(matrices), "Confusion matrices of the reference run, summed over its test images."


def reference_reliability(profile: str = "standard", root: str | Path = _RECORDED) -> tuple[Figure | None, str]:
    """Reliability diagrams of the reference records that hold calibration bins."""
    diagrams = {}
    for record in load_reference_results(profile, root).values():
        bins = record.get("calibration")
        if not bins:
            continue
        as_array = {k: np.asarray([np.nan if v is None else v for v in bins[k]], dtype=float)
                    for k in ("edges", "counts", "confidence", "accuracy")}
        diagrams[f"{LABELS[record['key']]} (s{record.get('seed')})"] = Reliability(
            as_array["edges"], as_array["counts"], as_array["confidence"], as_array["accuracy"], bins["ece"],
            bins["mce"])
    if not diagrams:
        return None, f"No `{profile}` record holds calibration bins yet."
    return viz.reliability_diagrams(diagrams), "Reliability of the reference run's models on the whole test split."


def reference_breeds(profile: str = "standard", root: str | Path = _RECORDED) -> tuple[Figure | None, pd.DataFrame]:
    """Mean per-image mIoU per (species, breed) (rows) and reference model (columns), from the per-image tables."""
    columns = {}
    for record, table in _with_tables(profile, root).values():
        if {"species", "breed", "miou"} <= set(table.columns):
            name = f"{LABELS[record['key']]} (s{record.get('seed')})"
            columns[name] = table.groupby(["species", "breed"])["miou"].mean()
    frame = pd.DataFrame(columns).round(3)
    if frame.empty:
        return None, frame
    return viz.breed_heatmap(frame), frame


def reference_mask_panel(key: str, prepared: Any, profile: str = "standard", seed: int = 0,
                         root: str | Path = _RECORDED) -> tuple[Figure | None, str]:
    """The recorded mask panel of ``key``: image, ground truth and the reference model's prediction for the study's
    three breeds and the model's five hardest test images. Images come from ``prepared`` (same size needed)."""
    record = load_reference_results(profile, root).get(f"{key}-s{seed}")
    panel = (record or {}).get("mask_panel")
    if not panel:
        return None, f"No `{profile}` record of {LABELS[key]} holds a mask panel yet."
    rows, labels = [], []
    for stem, why, miou, encoded in zip(panel["stems"], panel["why"], panel["miou"], panel["masks"], strict=True):
        predicted = decode_mask(encoded)
        try:
            image, mask = prepared.preprocessed(stem)
        except (KeyError, IndexError, ValueError):
            return None, f"The mask panel's image {stem} is not in this build's data."
        if image.shape[:2] != predicted.shape:
            return None, (f"The recorded masks are {predicted.shape[0]} px, this build's images "
                          f"{image.shape[0]} px: the panel is not drawn.")
        rows.append([image, viz.overlay(image, mask), viz.overlay(image, predicted)])
        labels.append(f"{stem}\n{why}, mIoU {miou:.2f}")
    fig = viz.pair_grid(rows, ["image", "ground truth", "reference prediction"], labels)
    return fig, (f"{LABELS[key]}, reference run (`{profile}`, seed {seed}): the study's example breeds, then the "
                 "model's hardest test images.")
