"""A linear species probe: how much of "cat or dog" can a frozen encoder's features tell, with no training of
the encoder at all?

The autoencoder paradox (chapter 3) says reconstruction pre-training does not learn what separates cats from
dogs. The probe tests that claim directly: pool an encoder's deepest feature map over the image (one vector per
image), fit a logistic regression (scikit-learn) on the training split's vectors and species, and score it on
the test split. Run on a randomly initialised encoder, the autoencoder's, the trained UNet's and an ImageNet
encoder, it ranks what each kind of training put into the features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["encoder_of", "pooled_features", "species_probe", "species_targets"]

SPECIES = ("cat", "dog")


def encoder_of(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``images [B, 3, H, W] -> deepest feature map [B, C, h, w]`` of a petseg model's encoder (the
    UNet family: ``model.encoder(images)[-1]``; the EfficientNet-UNet normalises its input first)."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise ValueError(f"{type(model).__name__} has no encoder to probe")
    normalize = getattr(model, "normalize", None)
    if callable(normalize):
        return lambda images: encoder(normalize(images))[-1]
    return lambda images: encoder(images)[-1]


@torch.no_grad()
def pooled_features(features_of: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, batch_size: int = 32,
                    module: nn.Module | None = None) -> np.ndarray:
    """``[N, C]`` float32: the spatial mean of ``features_of(images)`` for every image of ``dataset`` (whose items
    are ``(image, mask)`` or images), in dataset order. ``module`` is put in eval mode meanwhile."""
    was_training = module.training if module is not None else None
    if module is not None:
        module.eval()
    rows = []
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            images = batch[0] if isinstance(batch, list | tuple) else batch
            rows.append(features_of(images).float().mean(dim=(2, 3)).cpu().numpy())
    finally:
        if module is not None and was_training:
            module.train()
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)


def species_targets(species: Sequence[str]) -> np.ndarray:
    """0 for "cat", 1 for "dog"; ValueError naming anything else."""
    unknown = sorted(set(species) - set(SPECIES))
    if unknown:
        raise ValueError(f"species must be 'cat' or 'dog', got {unknown}")
    return np.asarray([SPECIES.index(s) for s in species], dtype=np.int64)


def species_probe(train_features: np.ndarray, train_species: Sequence[str], test_features: np.ndarray,
                  test_species: Sequence[str], regularisation: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Fit a standardised L2 logistic regression on the training vectors and score it on the test vectors.

    Returns ``accuracy`` and ``balanced_accuracy`` (the mean of per-species accuracies: cats are the minority),
    ``majority_accuracy`` (always guessing the training split's larger species), ``correct`` (``[N_test]`` bool,
    for bootstrap intervals), and the counts."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_train, y_test = species_targets(train_species), species_targets(test_species)
    if len(set(y_train)) < 2:
        raise ValueError("the probe needs both species in its training images")
    if len(train_features) != len(y_train) or len(test_features) != len(y_test):
        raise ValueError("one species per feature vector is needed")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=2000, random_state=seed))
    probe.fit(train_features, y_train)
    correct = probe.predict(test_features) == y_test
    per_species = [float(correct[y_test == k].mean()) for k in (0, 1) if (y_test == k).any()]
    majority = int(np.bincount(y_train, minlength=2).argmax())
    return {"accuracy": float(correct.mean()), "balanced_accuracy": float(np.mean(per_species)),
            "majority_accuracy": float((y_test == majority).mean()), "correct": correct,
            "train_images": len(y_train), "test_images": len(y_test), "features": int(train_features.shape[1])}


def subset(dataset: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """At most ``limit`` items of ``dataset``, drawn without replacement with ``seed`` (all when ``limit`` is None)."""
    if limit is None or limit >= len(dataset):
        return dataset
    picks = np.sort(np.random.default_rng(seed).choice(len(dataset), size=limit, replace=False))
    return Subset(dataset, [int(i) for i in picks])


def probe_model(model: nn.Module, prepared: Any, train_limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """:func:`species_probe` of ``model``'s encoder: fitted on (at most ``train_limit`` of) the un-augmented
    training images, scored on the evaluated test images of ``prepared`` (a :class:`PreparedData`). Adds the
    test ``stems``."""
    species = {sample.stem: sample.species for sample in prepared.report.usable}
    train_set = subset(prepared.dataset("train", augment=False), train_limit, seed)
    train_stems = prepared.stems("train")
    if isinstance(train_set, Subset):
        train_stems = [train_stems[i] for i in train_set.indices]
    test_stems = prepared.stems("test")
    features_of = encoder_of(model)
    result = species_probe(pooled_features(features_of, train_set, module=model), [species[s] for s in train_stems],
                           pooled_features(features_of, prepared.dataset("test", augment=False), module=model),
                           [species[s] for s in test_stems], seed=seed)
    return {**result, "stems": list(test_stems)}
