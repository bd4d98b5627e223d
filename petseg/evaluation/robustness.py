"""Robustness: segmentation quality under 8 image perturbations at 10 levels each.

The grid is the one other projects on the Oxford-IIIT Pet dataset use, so curves can be compared:

=====================  ============================================================  ======================
perturbation           how it is applied (uint8 RGB in, uint8 RGB out, clipped 0-255)  levels (level 0 first)
=====================  ============================================================  ======================
gaussian_noise         add N(0, sigma^2) to every channel value, round                 sigma 0, 2, ..., 18
blur                   3 x 3 mean filter applied *n* times (borders reflected)         n 0, 1, ..., 9
contrast_increase      multiply every value by the factor (scale around 0)             1.00 ... 1.25
contrast_decrease      the same with factors below 1                                   1.00 ... 0.10
brightness_increase    add the offset to every value                                   0, 5, ..., 45
brightness_decrease    subtract the offset from every value                            0, 5, ..., 45
occlusion              a black square of the given edge (px), seeded centre            0, 5, ..., 45
salt_and_pepper        the given fraction of channel values set to 0 or 255 (half each)  0, 0.02, ..., 0.18
=====================  ============================================================  ======================

Conventions (documented because they change the numbers):

* **Where**: perturbations act on the *original photograph* at its own resolution, before the book's
  preprocessing (resize the longest side + pad). That is what a camera or a corrupted file does, it makes the
  occluding box's size mean the same thing for every model and profile, and it never touches the zero
  padding, which is added afterwards. (A consequence: downscaling to 128 px averages away part of the noise;
  the ``full`` profile's 512 px inputs see more of it.)
* **Contrast** scales around 0 (``value * factor``), as the other projects on this dataset do, not around the
  image mean; a factor above 1 therefore also brightens and saturates highlights.
* **Blur** uses the mean (box) filter the issue names; some projects use the 3 x 3 binomial ("Gaussian")
  kernel ``[1 2 1; 2 4 2; 1 2 1] / 16`` instead (``blur(..., kernel="gaussian")``).
* **Seeding**: random perturbations draw from a generator seeded by (sweep seed, perturbation, image), *not*
  by level, so the levels of one image share their draws: the noise pattern is scaled by sigma, the
  salt-and-pepper pixels of a lower amount are a subset of those of a higher one, and the occluding box keeps
  its centre and grows. Curves are then monotone in the perturbation, not in the luck of the draw.
* **Scoring**: predictions at the network's input size against the preprocessed ground truth, label 255
  (trimap border and padding) ignored; the ignore region is never filled with predictions.

:func:`sweep` evaluates any number of predictors condition by condition (each perturbed image is made once
and shown to every model); :func:`cached_sweep` stores each predictor's table as CSV + JSON provenance and
reuses it when the model run, data, image subset and grid are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import pandas as pd
import torch

from petseg.data.labels import to_binary
from petseg.data.transforms import resize_and_pad
from petseg.evaluation.metrics import ConfusionMatrix, per_image_metrics

SWEEP_VERSION = 1

LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": tuple(range(0, 19, 2)),
    "blur": tuple(range(10)),
    "contrast_increase": (1.0, 1.01, 1.02, 1.03, 1.04, 1.05, 1.10, 1.15, 1.20, 1.25),
    "contrast_decrease": (1.0, 0.95, 0.90, 0.85, 0.80, 0.60, 0.40, 0.30, 0.20, 0.10),
    "brightness_increase": tuple(range(0, 46, 5)),
    "brightness_decrease": tuple(range(0, 46, 5)),
    "occlusion": tuple(range(0, 46, 5)),
    "salt_and_pepper": tuple(round(0.02 * i, 2) for i in range(10)),
}
UNITS = {
    "gaussian_noise": "sigma (grey levels)", "blur": "times the 3x3 mean filter", "contrast_increase": "factor",
    "contrast_decrease": "factor", "brightness_increase": "offset (grey levels)",
    "brightness_decrease": "offset (grey levels)", "occlusion": "box edge (px of the original)",
    "salt_and_pepper": "fraction of values",
}
BLUR_KERNELS = {"mean": np.full((3, 3), 1 / 9, np.float32),
                "gaussian": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16}


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` (grey levels) to every channel value."""
    _check_image(image)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return _to_uint8(image + sigma * rng.standard_normal(image.shape, dtype=np.float32))


def blur(image: np.ndarray, times: int, kernel: str = "mean") -> np.ndarray:
    """Convolve with a 3 x 3 ``kernel`` (``"mean"`` or ``"gaussian"``) ``times`` times, rounding each pass."""
    _check_image(image)
    if int(times) != times or times < 0:
        raise ValueError(f"times must be a non-negative integer, got {times}")
    if kernel not in BLUR_KERNELS:
        raise ValueError(f"kernel must be one of {sorted(BLUR_KERNELS)}, got {kernel!r}")
    out = image
    for _ in range(int(times)):
        out = _to_uint8(cv2.filter2D(out.astype(np.float32), -1, BLUR_KERNELS[kernel],
                                     borderType=cv2.BORDER_REFLECT_101))
    return out.copy() if out is image else out


def scale_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every value by ``factor`` (> 0), i.e. scale around 0, and clip."""
    _check_image(image)
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    return _to_uint8(image.astype(np.float32) * np.float32(factor))


def shift_brightness(image: np.ndarray, offset: float) -> np.ndarray:
    """Add ``offset`` (negative darkens) to every value and clip."""
    _check_image(image)
    return _to_uint8(image.astype(np.float32) + np.float32(offset))


def occlude(image: np.ndarray, edge: int, rng: np.random.Generator) -> np.ndarray:
    """Paint a black ``edge`` x ``edge`` square centred on a point drawn uniformly inside the image.

    The centre is drawn first (and whatever ``edge`` is), so the same generator state gives nested boxes;
    near a border the square is cut by the image edge.
    """
    _check_image(image)
    if int(edge) != edge or edge < 0:
        raise ValueError(f"edge must be a non-negative integer, got {edge}")
    height, width = image.shape[:2]
    centre_y, centre_x = int(rng.integers(0, height)), int(rng.integers(0, width))
    out = image.copy()
    top, left = centre_y - int(edge) // 2, centre_x - int(edge) // 2
    out[max(top, 0):max(top + int(edge), 0), max(left, 0):max(left + int(edge), 0)] = 0
    return out


def salt_and_pepper(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Set a fraction ``amount`` of the channel values to 255 (half of them) or 0 (the other half)."""
    _check_image(image)
    if not 0 <= amount <= 1:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    draws = rng.random(image.shape, dtype=np.float32)
    out = image.copy()
    out[draws < amount / 2] = 255
    out[(draws >= amount / 2) & (draws < amount)] = 0
    return out


def perturb(image: np.ndarray, name: str, level: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Apply perturbation ``name`` at ``level`` (a value of :data:`LEVELS`, or any valid value)."""
    if name not in LEVELS:
        raise ValueError(f"unknown perturbation {name!r}; valid: {', '.join(LEVELS)}")
    if name in ("gaussian_noise", "occlusion", "salt_and_pepper") and rng is None:
        raise ValueError(f"{name} is random: pass a seeded numpy Generator as rng")
    if name == "gaussian_noise":
        return gaussian_noise(image, level, rng)
    if name == "blur":
        return blur(image, int(level))
    if name in ("contrast_increase", "contrast_decrease"):
        return scale_contrast(image, level)
    if name == "brightness_increase":
        return shift_brightness(image, level)
    if name == "brightness_decrease":
        return shift_brightness(image, -level)
    if name == "occlusion":
        return occlude(image, int(level), rng)
    return salt_and_pepper(image, level, rng)


def image_rng(seed: int, name: str, image_index: int) -> np.random.Generator:
    """The generator for one (sweep seed, perturbation, image): shared by all levels (see module docstring)."""
    name_id = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, name_id, image_index]))


# ------------------------------------------------------------------------------------------ predictors


class Predictor(Protocol):
    """What :func:`sweep` evaluates: ``image_size`` (the input side), ``binary`` (pet vs background only)
    and ``__call__(images, masks) -> labels``: uint8 ``(N, S, S, 3)`` preprocessed inputs and the *clean*
    preprocessed masks ``(N, S, S)`` (only a prompted model may use them, to place its prompts) to integer
    labels ``(N, S, S)``."""

    image_size: int
    binary: bool

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray: ...


@dataclass
class ModelPredictor:
    """A full-image segmentation model (``model(float images [0, 1]) -> logits``) as a :class:`Predictor`."""

    model: torch.nn.Module
    image_size: int
    binary: bool = False
    device: str = "cpu"
    batch_size: int = 16

    @torch.no_grad()
    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        self.model.to(self.device).eval()
        labels = [self.predict_batch(batch, target).cpu().numpy()
                  for batch, target in _tensor_batches(images, masks, self.batch_size, self.device)]
        return np.concatenate(labels).astype(np.int64)

    def predict_batch(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Labels [B, S, S] for one batch (images [B, 3, S, S] in [0, 1]; masks unused here)."""
        return self.model(images).argmax(dim=1)


def _tensor_batches(images: np.ndarray, masks: np.ndarray, batch_size: int, device: str
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images [B, 3, S, S] float in [0, 1], masks [B, S, S] int64)`` on ``device``, in order, from uint8
    ``images [N, S, S, 3]`` and ``masks [N, S, S]``."""
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
        target = torch.from_numpy(masks[start:start + batch_size].astype(np.int64))
        yield batch.permute(0, 3, 1, 2).float().div_(255).to(device), target.to(device)


@dataclass
class PromptedPredictor(ModelPredictor):
    """A prompted binary model (e.g. ``petseg.models.sam2.PromptedSAM2``) as a :class:`Predictor`.

    ``model(images [B, 3, S, S] in [0, 1], masks [B, S, S]) -> logits`` in eval mode places its prompts from
    the *clean* ground truth it is given (SAM 2: the most interior pet pixel, one click), so the prompt stays
    fixed while the image is perturbed. The output is either a tensor of pet logits (``[B, S, S]`` or
    ``[B, 1, S, S]``) or a dict with ``logits [B, K, S, S]``, ``iou_predictions [B, K]`` and optionally
    ``candidates [B, K]`` (allowed masks); then the allowed mask with the highest predicted IoU is taken.
    Pixels with logit > 0 are pet (1).
    """

    binary: bool = True
    batch_size: int = 8

    def predict_batch(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return pet_logits(self.model(images, masks)).gt(0).long()


def pet_logits(output: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``[B, H, W]`` pet logits from a prompted model's output (see :class:`PromptedPredictor`)."""
    if isinstance(output, Mapping):
        logits, scores = output["logits"], output["iou_predictions"].float().clone()
        if "candidates" in output:
            scores[~output["candidates"].bool()] = -torch.inf
        best = scores.argmax(dim=1)
        return logits[torch.arange(len(logits), device=logits.device), best]
    if output.dim() == 4 and output.shape[1] == 1:
        return output[:, 0]
    if output.dim() == 3:
        return output
    raise ValueError(f"cannot read pet logits from an output of shape {tuple(output.shape)}")


@dataclass
class FunctionPredictor:
    """Any ``function(images, masks) -> labels`` as a :class:`Predictor` (e.g. a prompted SAM 2 wrapper)."""

    function: Callable[[np.ndarray, np.ndarray], np.ndarray]
    image_size: int
    binary: bool = False

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return np.asarray(self.function(images, masks))


# ------------------------------------------------------------------------------------------- the sweep


@dataclass
class SweepImages:
    """The clean originals a sweep perturbs: full-resolution RGB images and label masks, with their stems."""

    stems: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    note: str = ""  # how the images were chosen (e.g. "a seeded subset of 60 of 298 test images")
    _preprocessed_masks: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not (len(self.stems) == len(self.images) == len(self.masks)) or not self.stems:
            raise ValueError("SweepImages needs the same, non-zero number of stems, images and masks")

    def masks_at(self, size: int) -> np.ndarray:
        """The preprocessed (resized + padded with 255) ground truth at ``size`` px, ``(N, size, size)``."""
        if size not in self._preprocessed_masks:
            self._preprocessed_masks[size] = np.stack([resize_and_pad(image, mask, size)[1]
                                                       for image, mask in zip(self.images, self.masks, strict=True)])
        return self._preprocessed_masks[size]


def sweep_images(prepared: Any, split: str = "test", limit: int | None = None, seed: int = 0) -> SweepImages:
    """The originals of ``split`` of a :class:`~petseg.data.pipeline.PreparedData`; with ``limit``, a seeded
    random subset of that many images (in split order)."""
    stems = list(prepared.split[split])
    total = len(stems)
    if limit is not None and limit < total:
        chosen = np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))
        stems = [stems[i] for i in chosen]
        note = f"a seeded random subset (seed {seed}) of {limit} of the {total} {split} images"
    else:
        note = f"all {total} {split} images"
    pairs = [prepared.original(stem) for stem in stems]
    return SweepImages(stems, [p.image for p in pairs], [p.labels for p in pairs], note)


def grid(perturbations: Sequence[str] | None = None) -> list[tuple[str, int, float]]:
    """``(perturbation, level index, level)`` of every condition, level 0 included for each perturbation."""
    names = list(perturbations) if perturbations is not None else list(LEVELS)
    unknown = [n for n in names if n not in LEVELS]
    if unknown:
        raise ValueError(f"unknown perturbations {unknown}; valid: {', '.join(LEVELS)}")
    return [(name, index, level) for name in names for index, level in enumerate(LEVELS[name])]


def _score(labels: np.ndarray, targets: np.ndarray, binary: bool) -> dict[str, float]:
    """Dataset-level (Dice/IoU from the summed confusion matrix) and mean per-image Dice, 255 ignored."""
    pred, target = torch.from_numpy(np.asarray(labels, np.int64)), torch.from_numpy(targets.astype(np.int64))
    if pred.shape != target.shape:
        raise ValueError(f"predictor returned labels of shape {tuple(pred.shape)}, expected {tuple(target.shape)}")
    row: dict[str, float] = {}
    bin_pred, bin_target = to_binary(pred), to_binary(target)
    binary_meter = ConfusionMatrix(2)
    binary_meter.update(bin_pred, bin_target)
    pet = binary_meter.compute()
    row.update(pet_dice=float(pet["dice"][1]), pet_iou=float(pet["iou"][1]), binary_mdice=float(pet["mdice"]),
               binary_accuracy=float(pet["pixel_accuracy"]))
    row["mean_image_pet_dice"] = float(np.nanmean(per_image_metrics(bin_pred, bin_target, 2)["dice"][:, 1]))
    if binary:
        row.update(mdice=np.nan, miou=np.nan, accuracy=np.nan, mean_image_mdice=np.nan)
        return row
    meter = ConfusionMatrix()
    meter.update(pred, target)
    metrics = meter.compute()
    row.update(mdice=float(metrics["mdice"]), miou=float(metrics["miou"]), accuracy=float(metrics["pixel_accuracy"]),
               mean_image_mdice=float(np.nanmean(per_image_metrics(pred, target)["mdice"])))
    for index, name in enumerate(metrics["class_names"]):
        row[f"dice_{name}"] = float(metrics["dice"][index])
    return row


def sweep(predictors: Mapping[str, Predictor], images: SweepImages, perturbations: Sequence[str] | None = None,
          seed: int = 0, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Evaluate every predictor under every condition; a tidy DataFrame, one row per (model, condition).

    Columns: ``model``, ``perturbation``, ``level_index``, ``level``, ``images``, ``mdice`` (dataset-level
    3-class mean Dice; NaN for binary predictors), ``miou``, ``accuracy``, ``mean_image_mdice`` (mean over
    images of per-image mDice), ``dice_<class>``, ``pet_dice``/``pet_iou`` (pet vs background, every
    predictor), ``binary_mdice``, ``binary_accuracy``, ``mean_image_pet_dice`` and ``seconds`` (the model's
    time for that condition). Level 0 is the identity, so each perturbation's first row is the clean score;
    it is computed once and repeated (``seconds`` 0 on the repeats).
    """
    if not predictors:
        raise ValueError("sweep needs at least one predictor")
    sizes = sorted({p.image_size for p in predictors.values()})
    targets = {size: images.masks_at(size) for size in sizes}
    rows = []
    clean: dict[str, dict[str, Any]] = {}  # level 0 is the identity for every perturbation: score it once
    conditions = grid(perturbations)
    for number, (name, level_index, level) in enumerate(conditions):
        if level_index == 0 and clean:
            rows.extend({**row, "perturbation": name, "level": level, "seconds": 0.0} for row in clean.values())
            continue
        perturbed = [perturb(image, name, level, image_rng(seed, name, i)) for i, image in enumerate(images.images)]
        inputs = {size: np.stack([resize_and_pad(image, mask, size)[0]
                                  for image, mask in zip(perturbed, images.masks, strict=True)]) for size in sizes}
        for model_name, predictor in predictors.items():
            start = time.perf_counter()
            labels = predictor(inputs[predictor.image_size], targets[predictor.image_size])
            seconds = time.perf_counter() - start
            rows.append({"model": model_name, "perturbation": name, "level_index": level_index, "level": level,
                         "images": len(images.stems),
                         **_score(labels, targets[predictor.image_size], predictor.binary),
                         "seconds": round(seconds, 3)})
            if level_index == 0:
                clean[model_name] = rows[-1]
        if progress is not None:
            progress(f"{number + 1}/{len(conditions)} {name} level {level}")
    return pd.DataFrame(rows)


def sweep_key(identity: Mapping[str, Any], images: SweepImages, perturbations: Sequence[str] | None, seed: int) -> str:
    """Hash of what decides a predictor's sweep: its identity (e.g. the run directory), images, grid, seed."""
    payload = {"version": SWEEP_VERSION, "identity": dict(identity), "stems": images.stems, "seed": seed,
               "grid": [[n, i, lv] for n, i, lv in grid(perturbations)]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_sweep(predictors: Mapping[str, tuple[Predictor, Mapping[str, Any], Path]], images: SweepImages,
                 perturbations: Sequence[str] | None = None, seed: int = 0,
                 progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """:func:`sweep` with one stored result per predictor.

    ``predictors`` maps a model name to ``(predictor, identity, folder)``: ``identity`` is JSON-able and names
    what produced the model (for a trained model its run directory, which already encodes config, data and
    seed), ``folder`` where ``robustness-<key>.csv`` and ``.json`` (provenance) go, e.g. the run directory.
    Predictors with a stored table for the same key are not evaluated again. Returns all rows.
    """
    from petseg.provenance import collect_provenance

    frames, missing = {}, {}
    for name, (predictor, identity, folder) in predictors.items():
        path = Path(folder) / f"robustness-{sweep_key(identity, images, perturbations, seed)}.csv"
        if path.exists():
            frames[name] = pd.read_csv(path).assign(model=name)
        else:
            missing[name] = (predictor, identity, path)
    if missing:
        start = time.perf_counter()
        table = sweep({n: p for n, (p, _, _) in missing.items()}, images, perturbations, seed, progress)
        seconds = time.perf_counter() - start
        for name, (_, identity, path) in missing.items():
            rows = table[table.model == name]
            path.parent.mkdir(parents=True, exist_ok=True)
            rows.to_csv(path, index=False)
            provenance = {"model": name, "identity": dict(identity), "images": images.note,
                          "stems": images.stems, "seed": seed, "perturbations": list(perturbations or LEVELS),
                          "levels": {n: list(LEVELS[n]) for n in (perturbations or LEVELS)},
                          "sweep_seconds_all_models": round(seconds, 1),
                          "model_seconds": round(float(rows.seconds.sum()), 1),
                          "provenance": collect_provenance({"sweep_version": SWEEP_VERSION})}
            path.with_suffix(".json").write_text(json.dumps(provenance, indent=1, default=str))
            frames[name] = rows
    return pd.concat([frames[name] for name in predictors], ignore_index=True)


def summary(table: pd.DataFrame, metric: str = "mdice") -> pd.DataFrame:
    """Per model and perturbation: the clean score, the score at the strongest level, the drop, and the
    mean over all 10 levels (an area-under-the-curve summary)."""
    rows = []
    for (model, name), group in table.groupby(["model", "perturbation"], sort=False):
        group = group.sort_values("level_index")
        clean, worst = group[metric].iloc[0], group[metric].iloc[-1]
        rows.append({"model": model, "perturbation": name, "clean": clean, "strongest": worst,
                     "drop": clean - worst, "mean over levels": group[metric].mean()})
    return pd.DataFrame(rows).round(3)
