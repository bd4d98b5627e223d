"""What a record keeps of a finished run beyond its summary numbers, so the book's reference figures and
intervals can be drawn from committed files without the weights (which are never committed).

- a per-image table (``<record>.per_image.csv.gz``): stem, species, breed and, for a segmentation model, the
  image's confusion matrix (``n_<true>_as_<predicted>``), from which :mod:`petseg.reporting.evidence`
  bootstraps every dataset-level metric; a prompted model's per-image IoUs and clicks; the autoencoder's
  per-image SSIM and PSNR;
- the linear species probe (:mod:`petseg.evaluation.probe`) of every model with an encoder;
- the mask panel: predicted masks (lossless PNG, base64 in the JSON) of a fixed set of test images (the study's Bombay,
  American Bulldog and Miniature Pinscher, one each, and the model's five hardest images);
- calibration bins (reliability diagram, ECE) of a segmentation model.

Everything is computed from the run's ``best.pt`` at record time, so a run trained by an older version of
petseg is recorded in today's format without training again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from petseg.reporting.evidence import has_confusion

__all__ = ["PANEL_BREEDS", "decode_mask", "encode_mask", "panel_stems", "run_evidence"]

PANEL_BREEDS = ("Bombay", "american_bulldog", "miniature_pinscher")  # the study's example figure
HARDEST = 5


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """A label mask ``[H, W]`` (values 0-255) as ``{"shape": [H, W], "png": <base64 of a lossless PNG>}``: about
    a kilobyte for a 128 px prediction, where a run-length list would take tens."""
    import base64
    import io

    from PIL import Image

    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"a mask is [H, W], got shape {array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode="L").save(buffer, format="PNG", optimize=True)
    return {"shape": [int(s) for s in array.shape], "png": base64.b64encode(buffer.getvalue()).decode("ascii")}


def decode_mask(encoded: dict[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode_mask`; ValueError when the image does not have the recorded shape."""
    import base64
    import io

    from PIL import Image

    shape = tuple(int(s) for s in encoded["shape"])
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded["png"]))), dtype=np.uint8)
    if mask.shape != shape:
        raise ValueError(f"the encoded mask is {mask.shape}, the record says {shape}")
    return mask


def panel_stems(per_image: pd.DataFrame, score: str = "miou", hardest: int = HARDEST,
                breeds: Sequence[str] = PANEL_BREEDS) -> list[str]:
    """The mask panel: the first test image (by stem) of each of ``breeds`` present, then the ``hardest``
    images with the lowest per-image ``score`` (ties by stem), none twice."""
    chosen = _study_stems(per_image, breeds)
    wanted = len(chosen) + hardest
    for stem in per_image.dropna(subset=[score]).sort_values([score, "stem"])["stem"]:
        if len(chosen) >= wanted:
            break
        if stem not in chosen:
            chosen.append(stem)
    return chosen


def _study_stems(per_image: pd.DataFrame, breeds: Sequence[str] = PANEL_BREEDS) -> list[str]:
    """The first test image (by stem) of each of ``breeds`` present in ``per_image``."""
    firsts = (sorted(per_image.loc[per_image["breed"] == breed, "stem"]) for breed in breeds)
    return [stems[0] for stems in firsts if stems]


def _species_and_breed(prepared: Any, stems: Sequence[str]) -> pd.DataFrame:
    from petseg.reporting.tables import breed_lookup

    breeds, species = breed_lookup(prepared)
    return pd.DataFrame({"stem": list(stems), "species": [species[s] for s in stems],
                         "breed": [breeds[s] for s in stems]})


def run_evidence(run_dir: str | Path, prepared: Any, device: str | None = None) -> tuple[pd.DataFrame | None, dict]:
    """The per-image table and the extra record fields (``mask_panel``, ``calibration``, ``species_probe``) of a
    finished run. A reconstruction run (the autoencoder) gets per-image SSIM and PSNR and the species probe; a
    prompted run its saved per-image table only."""
    from petseg.experiment import Run, evaluate_segmentation

    run_dir = Path(run_dir)
    config = json.loads((run_dir / "experiment.json").read_text())["config"]
    task = config["task"]
    stems = prepared.stems("test")
    test_set = prepared.dataset("test", augment=False)
    model = Run(run_dir, config, {}, reused=True).load_model() if task != "prompted" else None
    if task == "reconstruction":  # per-image SSIM and PSNR, so the reconstruction quality has an interval too
        from petseg.evaluation.reconstruction import per_image_reconstruction

        quality = per_image_reconstruction(model, test_set)
        quality.insert(0, "stem", stems)
        table = _species_and_breed(prepared, stems).merge(quality, on="stem")
        return table, {"species_probe": species_probe_record(model, config, prepared)}
    saved = run_dir / "per_image_test.csv"
    per_image = pd.read_csv(saved) if saved.is_file() else None
    if task == "segmentation" and not has_confusion(per_image):  # recorded before the confusion columns existed
        _, per_image = evaluate_segmentation(model, test_set, device=device)
        per_image.insert(0, "stem", stems)
    if per_image is None:
        raise FileNotFoundError(f"{saved} missing: the run did not finish its test evaluation")
    per_image = _species_and_breed(prepared, list(per_image["stem"])).merge(per_image, on="stem")
    if task != "segmentation":
        return per_image, {}
    return per_image, {"mask_panel": _mask_panel(model, prepared, per_image, device),
                       "calibration": _calibration(model, test_set),
                       "species_probe": species_probe_record(model, config, prepared)}


INITIAL_ENCODERS = {"efficientnet_unet": "ImageNet EfficientNet-Lite0", "ae_unet": "the autoencoder's"}


def species_probe_record(model: Any, config: dict, prepared: Any, train_limit: int | None = None) -> dict[str, Any]:
    """The linear species probe (:mod:`petseg.evaluation.probe`) on the trained model's encoder and on the same
    architecture before training (random init; ImageNet for the EfficientNet-UNet; the autoencoder's encoder
    for the AE+UNet), each with its accuracy, balanced accuracy and 95% bootstrap interval over test images."""
    from petseg.evaluation.probe import probe_model
    from petseg.models import build_model
    from petseg.reporting.evidence import interval
    from petseg.reporting.tables import breed_lookup
    from petseg.training.seeds import seed_everything

    seed_everything(int(config.get("train", {}).get("seed", 0)))
    initial = build_model(config["model"])
    _, by_stem = breed_lookup(prepared)
    result = {}
    for name, encoder_model, what in (("trained", model, "after training"),
                                      ("initial", initial, INITIAL_ENCODERS.get(config["model"]["name"],
                                                                                 "random init"))):
        probe = probe_model(encoder_model, prepared, train_limit)
        species = pd.Series([by_stem[s] for s in probe["stems"]])
        # balanced accuracy as a weighted mean: each image weighs n / (2 n_species), weights fixed at the test counts
        weight = len(species) / (2 * species.map(species.value_counts()))
        table = pd.DataFrame({"stem": probe["stems"], "correct": probe["correct"].astype(float),
                              "balanced": probe["correct"].astype(float) * weight.to_numpy()})
        found, balanced = interval(table, "correct"), interval(table, "balanced")
        result[name] = {"encoder": what, "accuracy": round(probe["accuracy"], 5),
                        "interval": [round(found.low, 5), round(found.high, 5)],
                        "balanced_accuracy": round(probe["balanced_accuracy"], 5),
                        "balanced_interval": [round(balanced.low, 5), round(balanced.high, 5)],
                        "majority_accuracy": round(probe["majority_accuracy"], 5),
                        "train_images": probe["train_images"], "test_images": probe["test_images"],
                        "features": probe["features"]}
    return result


def _mask_panel(model: Any, prepared: Any, per_image: pd.DataFrame, device: str | None) -> dict[str, Any]:
    from petseg.experiment import predict

    stems = panel_stems(per_image)
    study = len(_study_stems(per_image))
    position = {stem: index for index, stem in enumerate(prepared.stems("test"))}
    predicted = predict(model, prepared.dataset("test", augment=False), [position[s] for s in stems],
                        device=device)["probabilities"].argmax(axis=1)
    row = per_image.set_index("stem")
    return {"stems": stems,
            "why": ["study panel" if i < study else "hardest" for i in range(len(stems))],
            "miou": [round(float(row.loc[s, "miou"]), 4) for s in stems],
            "masks": [encode_mask(mask) for mask in predicted]}


def _calibration(model: Any, test_set: Any) -> dict[str, Any]:
    from petseg.evaluation.calibration import model_reliability

    reliability = model_reliability(model, test_set)
    return {"edges": [round(float(e), 4) for e in reliability.edges],
            "counts": [int(c) for c in reliability.counts],
            "confidence": [None if np.isnan(c) else round(float(c), 5) for c in reliability.confidence],
            "accuracy": [None if np.isnan(a) else round(float(a), 5) for a in reliability.accuracy],
            "ece": round(float(reliability.ece), 5), "mce": round(float(reliability.mce), 5)}
