"""How a run is described beside its numbers: the sentence saying how they were produced, metric tables,
and which test images to show."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from petseg.data.labels import BINARY_CLASS_NAMES, CLASS_NAMES

if TYPE_CHECKING:
    from petseg.experiment import Run

__all__ = ["brief_run", "describe_run", "metrics_table", "other_runs_words", "pick_examples"]


def describe_run(run: Run) -> str:
    """A Markdown sentence saying how a run's numbers were produced (data, profile, training, hardware)."""
    from petseg.models import describe_weights

    results, config = run.results, run.config
    data = results["data"]
    provenance = results.get("provenance", {})
    train = config["train"]
    summary = results.get("train_summary", {})
    epochs = summary.get("epochs_completed", summary.get("epochs", train["epochs"]))
    if provenance.get("cuda_available") and provenance.get("gpu_names"):
        hardware = ", ".join(provenance["gpu_names"])
    else:
        hardware = f"CPU only, {provenance.get('cpu_count', '?')} cores"
    origin = "reused from an earlier identical run" if run.reused else "trained while building this page"
    steps = train.get("max_steps_per_epoch")
    epochs = f"{epochs} epochs" + (f" of at most {steps} steps" if steps else "")
    return (
        f"**{config['experiment']}** (`{run.path.name}`, {origin}): profile `{config['profile']}`, "
        f"{data['image_size']} px, {epochs}, batch {train['batch_size']}{precision_words(summary)}, "
        f"seed {results['seed']}, "
        f"{results['parameters']:,} parameters ({results['trainable_parameters']:,} trainable), "
        f"trained in {results['train_seconds']:.0f} s ({hardware}, host `{provenance.get('hostname', '?')}`); "
        f"data: {data['usable_pairs']:,} images of "
        f"{data['breeds']} breeds (fingerprint `{data['fingerprint']}`), {data['split']['train']:,} train / "
        f"{data['split']['val']:,} validation / {data['split']['test']:,} test{evaluated_words(data)}; "
        f"weights initialised "
        f"{config.get('initialisation') or describe_weights(config.get('model') or {}) or ('from the autoencoder run ' + config['upstream_run'] if config.get('upstream_run') else 'at random (trained from scratch)')}."
    )


def brief_run(run: Run) -> str:
    """A run in one line, for a page whose "How these numbers were made" note already describes the data and
    the profile: experiment, run folder, input size, epochs, parameters and training time."""
    results = run.results
    summary = results.get("train_summary", {})
    epochs = summary.get("epochs_completed", summary.get("epochs", run.config["train"]["epochs"]))
    return (f"**{run.config['experiment']}** (`{run.path.name}`): {results['data']['image_size']} px, "
            f"{epochs} epochs{precision_words(summary)}, {results['parameters']:,} parameters "
            f"({results['trainable_parameters']:,} trainable), trained in {results['train_seconds']:.0f} s")


def other_runs_words(first: Run, others: Iterable[Run]) -> str:
    """The page's other runs in one line each (:func:`brief_run`) after ``first``'s full description: that
    they used its data and profile, or, for one that did not, its own data fingerprint and profile ('' when
    there are none)."""
    def setup(run: Run) -> tuple[Any, Any]:
        return run.results["data"].get("fingerprint"), run.config.get("profile")

    fingerprint, profile = setup(first)
    lines = [brief_run(run) + ("" if setup(run) == (fingerprint, profile)
                               else " (data fingerprint `{}`, profile `{}`)".format(*setup(run)))
             for run in others]
    if not lines:
        return ""
    return (f"Also on this page, with the same data (fingerprint `{fingerprint}`) and profile `{profile}` "
            "unless stated: " + "; ".join(lines) + ".")


def precision_words(summary: dict) -> str:
    """', training in bf16 autocast' when a run's steps ran in reduced precision ('' for fp32 or unknown)."""
    precision = summary.get("precision")
    return f", training in {precision}" if precision and precision != "fp32" else ""


def evaluated_words(data: dict) -> str:
    """' (validated on 295 and tested on 992 of them: ...)' when a profile caps the evaluated splits."""
    evaluated, split = data.get("evaluated") or {}, data["split"]
    capped = {name: count for name, count in evaluated.items() if count < split.get(name, 0)}
    if not capped:
        return ""
    parts = [f"{'validated' if name == 'val' else 'tested'} on {count:,}" for name, count in capped.items()]
    return f" ({' and '.join(parts)} of them: breed-stratified subsets)"


def metrics_table(results: dict[str, dict], binary: bool = False) -> pd.DataFrame:
    """One row per named result (model or baseline): mIoU, mDice, accuracy, per-class IoU and Dice."""
    rows = {}
    for name, metrics in results.items():
        metrics = metrics.get("binary", metrics) if binary else metrics
        names = BINARY_CLASS_NAMES if binary else CLASS_NAMES
        row = {"mIoU": metrics.get("miou"), "mDice": metrics.get("mdice"), "accuracy": metrics.get("pixel_accuracy")}
        for i, class_name in enumerate(names):
            row[f"IoU {class_name}"] = (metrics.get("iou") or [None] * len(names))[i]
            row[f"Dice {class_name}"] = (metrics.get("dice") or [None] * len(names))[i]
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").astype(float).round(3)


def pick_examples(per_image: pd.DataFrame, n: int = 4, column: str = "miou") -> list[int]:
    """Row positions of the best, the worst and evenly spaced images in between, by ``column``."""
    order = per_image[column].fillna(-1).to_numpy().argsort()[::-1]
    positions = np.linspace(0, len(order) - 1, n).round().astype(int)
    return [int(order[p]) for p in positions]
