"""Evaluation of promptable models (SAM 2) with simulated prompts, through ``SAM2ImagePredictor``.

Everything goes through the predictor the app uses, so the numbers measure exactly what a user gets. Per
test image the image embedding is computed once (``set_image``) and every prompt after that costs one
prompt-encoder + mask-decoder pass.

Protocols (masks: 0 background, 1/2 pet, 255 ignored; see :mod:`petseg.data.prompts`):

* **1 click**: one positive click at the most interior pet point; SAM 2 returns three masks
  (``multimask_output=True``) and the one with the highest predicted IoU is kept.
* **box**: the tight box of the pet (no jitter), single-mask output.
* **interactive** (the interactive-segmentation literature's protocol, e.g. RITM / SAM): after the first
  click, each next click goes to the interior of the largest error region (positive in a missed pet region,
  negative in a false pet region), up to ``max_clicks``; every prediction uses all clicks so far
  (single-mask output). NoC@85 / NoC@90 = clicks needed to reach pet IoU 0.85 / 0.90, ``max_clicks``
  when never reached.

Dataset-level metrics (pet-vs-background confusion matrix over all valid pixels of the split) are what the
3-class models' ``test["binary"]`` report, so the two compare directly; per-image IoUs feed the click curve
and NoC.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from petseg.data.labels import BINARY_CLASS_NAMES
from petseg.data.prompts import Click, box_from_mask, interior_point, next_click, pet_and_valid
from petseg.evaluation.metrics import ConfusionMatrix

__all__ = [
    "DEFAULT_MAX_CLICKS",
    "NOC_THRESHOLDS",
    "evaluate_prompted",
    "image_iou",
    "interactive_clicks",
    "number_of_clicks",
    "predict_box",
    "predict_clicks",
    "evaluate_prompted_model",
    "interactive_subset",
    "prompt_examples",
    "prompted_table",
]

DEFAULT_MAX_CLICKS = 20
NOC_THRESHOLDS = (0.85, 0.90)


def image_iou(prediction: np.ndarray, mask: np.ndarray) -> float:
    """Pet IoU of a boolean prediction against a label mask over valid pixels (1.0 if both are empty)."""
    pet, valid = pet_and_valid(mask)
    prediction = np.asarray(prediction, dtype=bool) & valid
    union = np.count_nonzero(prediction | pet)
    return 1.0 if union == 0 else np.count_nonzero(prediction & pet) / union


def number_of_clicks(ious: Sequence[float], threshold: float, max_clicks: int = DEFAULT_MAX_CLICKS) -> int:
    """Clicks needed for IoU >= ``threshold`` (1-based), ``max_clicks`` if the curve never gets there."""
    for index, iou in enumerate(ious[:max_clicks]):
        if iou >= threshold:
            return index + 1
    return max_clicks


def predict_clicks(predictor: Any, clicks: Sequence[Click]) -> np.ndarray:
    """Boolean mask for ``clicks`` on the image set in ``predictor``: for one click the best (highest
    predicted IoU) of SAM 2's three masks, for several clicks its single-mask output."""
    points = np.array([[c.x, c.y] for c in clicks], dtype=np.float32)
    labels = np.array([c.label for c in clicks], dtype=np.int32)
    multimask = len(clicks) == 1
    masks, scores, _ = predictor.predict(point_coords=points, point_labels=labels, multimask_output=multimask)
    return np.asarray(masks[int(np.argmax(scores))] > 0)


def predict_box(predictor: Any, box: np.ndarray) -> np.ndarray:
    """Boolean mask for a box prompt ``[x0, y0, x1, y1]`` (single-mask output)."""
    masks, _, _ = predictor.predict(box=np.asarray(box, dtype=np.float32), multimask_output=False)
    return np.asarray(masks[0] > 0)


def interactive_clicks(predictor: Any, mask: np.ndarray,
                       max_clicks: int = DEFAULT_MAX_CLICKS) -> tuple[list[float], list[Click], np.ndarray]:
    """Run the interactive protocol on the image set in ``predictor``; returns the pet IoU after each click
    (``max_clicks`` values; once the prediction is perfect the IoU is carried forward), the clicks placed and
    the first click's prediction."""
    pet, _ = pet_and_valid(mask)
    first = interior_point(pet)
    if first is None:
        raise ValueError("the mask has no pet pixel: nothing to click on")
    clicks = [Click(*first, 1)]
    prediction = predict_clicks(predictor, clicks)
    first_prediction = prediction
    ious = [image_iou(prediction, mask)]
    while len(ious) < max_clicks:
        click = next_click(prediction, mask)
        if click is None:
            ious.append(ious[-1])
            continue
        clicks.append(click)
        prediction = predict_clicks(predictor, clicks)
        ious.append(image_iou(prediction, mask))
    return ious, clicks, first_prediction


def _as_uint8_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A dataset image ([3, H, W] float in [0, 1]) as the uint8 HWC RGB array the predictor takes."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 3 and image.dtype != np.uint8:
        image = (image.transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.uint8)
    return image


def _binary_metrics(meter: ConfusionMatrix) -> dict[str, Any]:
    return meter.compute()


def evaluate_prompted(predictor: Any, dataset: Any, max_clicks: int = DEFAULT_MAX_CLICKS,
                      interactive_indices: Sequence[int] | None = None,
                      progress: bool = False) -> tuple[dict[str, Any], pd.DataFrame]:
    """Evaluate ``predictor`` on every ``(image, mask)`` of ``dataset`` (see the module docstring).

    ``interactive_indices``: the items that also get the ``max_clicks`` interactive protocol (all when None).
    Returns ``(results, per_image)``: ``results`` has ``binary`` (= ``one_click``: dataset-level
    pet-vs-background metrics of the 1-click predictions), ``one_click`` and ``box`` (each also with
    ``mean_image_iou``), ``interactive`` (``images``, ``max_clicks``, ``miou_per_click``, ``noc85``,
    ``noc90``, ``failed85`` / ``failed90`` = images never reaching the threshold) and ``latency``
    (``embed_ms`` mean time of ``set_image``; ``click_ms`` mean and ``click_ms_median`` time per prediction,
    the click simulation included: :mod:`benchmarks.sam2_latency` times the decoder alone).
    ``per_image`` has one row per item: ``one_click_iou``, ``one_click_dice``, ``one_click_accuracy``,
    ``box_iou``, and for interactive items ``noc85``, ``noc90``, ``iou_click_01``...
    """
    from tqdm import tqdm

    interactive = set(range(len(dataset)) if interactive_indices is None else interactive_indices)
    one_click_meter = ConfusionMatrix(2, class_names=BINARY_CLASS_NAMES)
    box_meter = ConfusionMatrix(2, class_names=BINARY_CLASS_NAMES)
    rows, curves, embed_times, click_times = [], [], [], []
    for index in tqdm(range(len(dataset)), desc="prompted evaluation", disable=not progress, leave=False):
        image, mask = dataset[index]
        mask = np.asarray(mask.numpy() if isinstance(mask, torch.Tensor) else mask)
        pet, valid = pet_and_valid(mask)
        if not pet.any():
            continue
        started = time.perf_counter()
        predictor.set_image(_as_uint8_image(image))
        embed_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        if index in interactive:
            ious, _, first = interactive_clicks(predictor, mask, max_clicks)
            click_count = max_clicks
        else:
            first = predict_clicks(predictor, [Click(*interior_point(pet), 1)])
            ious, click_count = [image_iou(first, mask)], 1
        box_prediction = predict_box(predictor, box_from_mask(pet))
        click_times.append((time.perf_counter() - started) / (click_count + 1))
        target = torch.from_numpy(mask.astype(np.int64))
        target = torch.where(target == 255, target, (target != 0).long())
        for meter, prediction in ((one_click_meter, first), (box_meter, box_prediction)):
            meter.update(torch.from_numpy(prediction.astype(np.int64)), target)
        intersection = np.count_nonzero(first & pet)
        row: dict[str, Any] = {
            "index": index,
            "one_click_iou": ious[0],
            "one_click_dice": 2 * intersection / max(np.count_nonzero(first & valid) + np.count_nonzero(pet), 1),
            "one_click_accuracy": np.count_nonzero((first == pet) & valid) / max(np.count_nonzero(valid), 1),
            "box_iou": image_iou(box_prediction, mask),
        }
        if index in interactive:
            curves.append(ious)
            for threshold in NOC_THRESHOLDS:
                row[f"noc{round(threshold * 100)}"] = number_of_clicks(ious, threshold, max_clicks)
            row.update({f"iou_click_{k + 1:02d}": iou for k, iou in enumerate(ious)})
        rows.append(row)
    if not rows:
        raise ValueError("no image with pet pixels to evaluate")
    per_image = pd.DataFrame(rows)
    one_click = _binary_metrics(one_click_meter)
    one_click["mean_image_iou"] = float(per_image["one_click_iou"].mean())
    box = _binary_metrics(box_meter)
    box["mean_image_iou"] = float(per_image["box_iou"].mean())
    results: dict[str, Any] = {"binary": one_click, "one_click": one_click, "box": box,
                               "images": len(rows)}
    if curves:
        curve = np.asarray(curves)
        results["interactive"] = {
            "images": len(curves), "max_clicks": max_clicks,
            "miou_per_click": curve.mean(axis=0).tolist(),
            **{f"noc{round(t * 100)}": float(per_image[f"noc{round(t * 100)}"].mean()) for t in NOC_THRESHOLDS},
            **{f"failed{round(t * 100)}": int((curve.max(axis=1) < t).sum()) for t in NOC_THRESHOLDS},
        }
    results["latency"] = {"embed_ms": 1000 * float(np.mean(embed_times)),
                          "click_ms": 1000 * float(np.mean(click_times)),
                          "click_ms_median": 1000 * float(np.median(click_times)),
                          "threads": torch.get_num_threads()}
    return results, per_image


def prompt_examples(predictor: Any, dataset: Any, indices: Sequence[int]) -> dict[str, Any]:
    """Inputs, masks and predictions for the book's figures: for each item of ``indices`` the 1-click
    prediction with its click, and the box prediction with its box."""
    out: dict[str, list] = {"images": [], "masks": [], "clicks": [], "point_predictions": [], "boxes": [],
                            "box_predictions": []}
    for index in indices:
        image, mask = dataset[index]
        mask = np.asarray(mask.numpy() if isinstance(mask, torch.Tensor) else mask)
        pet, _ = pet_and_valid(mask)
        image = _as_uint8_image(image)
        predictor.set_image(image)
        click = Click(*interior_point(pet), 1)
        box = box_from_mask(pet)
        out["images"].append(image)
        out["masks"].append(mask)
        out["clicks"].append([click])
        out["point_predictions"].append(predict_clicks(predictor, [click]))
        out["boxes"].append(box)
        out["box_predictions"].append(predict_box(predictor, box))
    return out


def interactive_subset(count: int, size: int | None) -> list[int] | None:
    """``size`` evenly spaced item positions out of ``count`` (None = all), for the interactive protocol."""
    if size is None or size >= count:
        return None
    if size < 1:
        raise ValueError(f"interactive_images must be >= 1 or null, got {size}")
    return sorted({int(i) for i in np.linspace(0, count - 1, size).round()})


def evaluate_prompted_model(model: torch.nn.Module, dataset: Any, evaluation: dict[str, Any] | None = None,
                            device: str = "cpu") -> tuple[dict[str, Any], pd.DataFrame]:
    """:func:`evaluate_prompted` for a trained :class:`petseg.models.sam2.PromptedSAM2` (through its
    ``SAM2ImagePredictor``). ``evaluation``: ``max_clicks`` (default 20) and ``interactive_images`` (how many
    evenly spaced items get the interactive protocol; null = all)."""
    from petseg.models.sam2 import make_predictor

    evaluation = dict(evaluation or {})
    max_clicks = int(evaluation.get("max_clicks", DEFAULT_MAX_CLICKS))
    subset = interactive_subset(len(dataset), evaluation.get("interactive_images"))
    predictor = make_predictor(model.sam.to(device).eval())
    results, per_image = evaluate_prompted(predictor, dataset, max_clicks, subset)
    results["interactive_subset"] = "all" if subset is None else f"{len(subset)} evenly spaced images"
    return results, per_image


def prompted_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per named ``results["test"]`` of a prompted run: 1-click pet IoU / Dice / pixel accuracy
    (dataset level), 1-click mean per-image IoU, box pet IoU, NoC@85 / NoC@90 and how many images the
    interactive protocol ran on."""
    rows = {}
    for name, test in results.items():
        interactive = test.get("interactive", {})
        rows[name] = {
            "1-click IoU (pet)": test["one_click"]["iou"][1],
            "1-click Dice (pet)": test["one_click"]["dice"][1],
            "1-click accuracy": test["one_click"]["pixel_accuracy"],
            "1-click mIoU (bg+pet)": test["one_click"]["miou"],
            "1-click mean image IoU": test["one_click"]["mean_image_iou"],
            "box IoU (pet)": test["box"]["iou"][1],
            "NoC@85": interactive.get("noc85"),
            "NoC@90": interactive.get("noc90"),
            "20-click images": interactive.get("images"),
        }
    return pd.DataFrame.from_dict(rows, orient="index").astype(float).round(3)
