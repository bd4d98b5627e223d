"""What a fusion UNet's global image vector changes (chapters 4 and 7): swap it for another image's.

:func:`swap_vectors` runs a :class:`~petseg.models.fusion_unet.FusionUNet` with its own vectors and with
donors'; :func:`swap_with_other_species` takes the donors from the other species of a dataset;
:func:`fusion_diagnostics` measures the effect over a whole dataset; :func:`block_artifact_score` says how
blocky a map is on a grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from petseg.models.fusion_unet import FusionUNet

__all__ = ["block_artifact_score", "fusion_diagnostics", "other_species_donors", "swap_vectors",
           "swap_with_other_species"]


@torch.no_grad()
def swap_vectors(model: FusionUNet, images: torch.Tensor, donor_images: torch.Tensor) -> dict[str, Any]:
    """Run ``model`` on ``images`` with their own global vectors and with those of ``donor_images``.

    Returns numpy arrays: ``own`` and ``swapped`` softmax probabilities [N, C, H, W] and ``margin_change``
    [N, H, W], the change of the cat-minus-dog logit margin caused by the swap (swapped - own; classes 1
    and 2). Whatever the swap changes is caused by the vector alone: the image path is identical.
    """
    if images.shape != donor_images.shape:
        raise ValueError(f"images and donor_images must have the same shape, got {tuple(images.shape)} "
                         f"and {tuple(donor_images.shape)}")
    was_training = model.training
    model.eval()
    try:
        own = model(images)
        swapped = model(images, embedding=model.embed(donor_images))
    finally:
        model.train(was_training)
    margin = (swapped[:, 1] - swapped[:, 2]) - (own[:, 1] - own[:, 2])
    return {"own": own.softmax(1).numpy(), "swapped": swapped.softmax(1).numpy(), "margin_change": margin.numpy()}


def block_artifact_score(maps: Any, block: int) -> float:
    """How blocky ``maps`` ([N, H, W] or [H, W]) are on a ``block``-pixel grid.

    The share of the maps' total variation (absolute differences of neighbouring pixels, both directions)
    that falls on pairs straddling a grid line (``x = k * block``), divided by the share of such pairs: 1 for
    maps with no preference for the grid, far above 1 (at most the inverse of that share, 42 for 128 px maps
    on a 32 px grid) when the changes happen at the grid lines (piecewise-constant blocks, e.g. a bottleneck
    effect up-sampled without smoothing). NaN for constant maps.
    """
    import numpy as np

    array = np.asarray(maps, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or block < 2 or min(array.shape[1:]) <= block:
        raise ValueError(f"need maps [N, H, W] larger than block={block} >= 2, got shape {array.shape}")
    on_grid, off_grid = [], []
    for axis in (1, 2):
        steps = np.abs(np.diff(array, axis=axis))
        boundary = (np.arange(steps.shape[axis]) + 1) % block == 0
        on_grid.append(np.compress(boundary, steps, axis=axis).ravel())
        off_grid.append(np.compress(~boundary, steps, axis=axis).ravel())
    across, inside = np.concatenate(on_grid), np.concatenate(off_grid)
    total = across.sum() + inside.sum()
    if total == 0:
        return float("nan")
    return float((across.sum() / total) / (across.size / (across.size + inside.size)))


def other_species_donors(masks: Any) -> Any:
    """For each mask [N, H, W] (labels 0/1/2/255), the index of an image of the *other* species to take the
    global vector from: the k-th cat gets the (k mod #dogs)-th dog and vice versa. An image whose mask shows
    neither species (or a set with one species only) gets itself (no swap)."""
    import numpy as np

    masks = np.asarray(masks)
    is_cat = (masks == 1).reshape(len(masks), -1).any(1)
    is_dog = (masks == 2).reshape(len(masks), -1).any(1) & ~is_cat
    cats, dogs = np.flatnonzero(is_cat), np.flatnonzero(is_dog)
    donors = np.arange(len(masks))
    if len(cats) and len(dogs):
        donors[cats] = dogs[np.arange(len(cats)) % len(dogs)]
        donors[dogs] = cats[np.arange(len(dogs)) % len(cats)]
    return donors


@torch.no_grad()
def swap_with_other_species(model: FusionUNet, dataset: Any, indices: Sequence[int]) -> dict[str, Any]:
    """:func:`swap_vectors` for the ``indices`` of a dataset of ``(image [3, H, W] in [0, 1], mask)`` pairs,
    each image taking the vector of an image of the other species of the same dataset
    (:func:`other_species_donors`). Adds ``images`` (uint8 [N, H, W, 3], for plotting), ``donors`` (the
    donor's dataset index per shown image) and, where the dataset knows it, ``padding`` (bool [N, H, W])."""
    import numpy as np

    from petseg.data.dataset import padding_of

    masks = np.stack([np.asarray(dataset[i][1]) for i in range(len(dataset))])
    donors = [int(d) for d in other_species_donors(masks)[list(indices)]]
    images = torch.stack([dataset[i][0] for i in indices])
    out = swap_vectors(model, images, torch.stack([dataset[d][0] for d in donors]))
    out["images"] = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    out["donors"] = donors
    padding = padding_of(dataset, indices)
    if padding is not None:
        out["padding"] = padding
    return out


@torch.no_grad()
def fusion_diagnostics(models: Mapping[str, nn.Module], dataset: Any, block: int = 32,
                       batch_size: int = 32) -> Any:
    """Measure, over a whole dataset of ``(image, mask)`` pairs, what each model's global vector does.

    Every image is paired with an image of the other species (:func:`other_species_donors`). Columns (one
    row per model): ``pet pixels flipped (%)`` (valid pet pixels whose predicted class changes when the
    donor's vector replaces the image's own), ``|margin change| pet`` and ``|margin change| background``
    (mean absolute change of the cat-minus-dog logit margin), ``blockiness of the change`` and
    ``blockiness of the prediction`` (:func:`block_artifact_score` of the margin change and of the model's
    own margin, on a ``block``-px grid). Models without a global vector get only the last column.
    """
    import numpy as np
    import pandas as pd

    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    masks = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))]).numpy()
    donors = other_species_donors(masks)
    pet = (masks == 1) | (masks == 2)
    background = masks == 0
    rows = {}
    for name, model in models.items():
        model = model.eval()
        own_margins, changes, flips = [], [], []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            if isinstance(model, FusionUNet):
                out = swap_vectors(model, batch, images[donors[start:start + batch_size]])
                own = out["own"]
                changes.append(out["margin_change"])
                flips.append(out["own"].argmax(1) != out["swapped"].argmax(1))
            else:
                own = model(batch).softmax(1).numpy()
            own_margins.append(np.log(own[:, 1] + 1e-12) - np.log(own[:, 2] + 1e-12))
        row = {"blockiness of the prediction": block_artifact_score(np.concatenate(own_margins), block)}
        if changes:
            change, flipped = np.concatenate(changes), np.concatenate(flips)
            row = {"pet pixels flipped (%)": 100 * flipped[pet].mean(),
                   "|margin change| pet": np.abs(change[pet]).mean(),
                   "|margin change| background": np.abs(change[background]).mean(),
                   "blockiness of the change": block_artifact_score(change, block), **row}
        rows[name] = row
    columns = ["pet pixels flipped (%)", "|margin change| pet", "|margin change| background",
               "blockiness of the change", "blockiness of the prediction"]
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).astype(float).round(3)
