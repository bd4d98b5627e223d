"""Tests for petseg.evaluation.metrics: hand-computed cases, torchmetrics equality, absent classes, baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import (
    BinaryJaccardIndex,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from petseg.data.labels import IGNORE_INDEX, to_binary
from petseg.evaluation.metrics import (
    ConfusionMatrix,
    background_prediction,
    binary_metrics,
    confusion_matrix,
    majority_per_pixel_map,
    majority_prediction,
    metrics_from_confusion,
    per_image_metrics,
    segmentation_metrics,
)

torch.set_num_threads(1)


def random_labels(seed: int, shape: tuple[int, ...] = (4, 8, 8), classes: tuple[int, ...] = (0, 1, 2),
                  ignore_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (pred, target) drawn from ``classes`` with a fraction of target pixels set to 255."""
    generator = torch.Generator().manual_seed(seed)
    choices = torch.tensor(classes)
    pred = choices[torch.randint(len(classes), shape, generator=generator)]
    target = choices[torch.randint(len(classes), shape, generator=generator)]
    target[torch.rand(shape, generator=generator) < ignore_fraction] = IGNORE_INDEX
    return pred, target


# --------------------------------------------------------------------------------- hand-computed cases


def test_hand_computed_tiny_case() -> None:
    target = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
    pred = torch.tensor([[[0, 1, 1], [1, 1, 2]]])
    # valid pixels (target, pred): (0,0) (0,1) (1,1) (1,1) (2,1); the ignored pixel is dropped
    result = segmentation_metrics(pred, target)
    np.testing.assert_array_equal(result["confusion_matrix"], [[1, 1, 0], [0, 2, 0], [0, 1, 0]])
    # IoU: bg 1/(1+0+1)=1/2, cat 2/(2+2+0)=1/2, dog 0/(0+0+1)=0
    np.testing.assert_allclose(result["iou"], [0.5, 0.5, 0.0])
    # Dice: bg 2/(2+1)=2/3, cat 4/(4+2)=2/3, dog 0
    np.testing.assert_allclose(result["dice"], [2 / 3, 2 / 3, 0.0])
    assert result["miou"] == pytest.approx(1 / 3)
    assert result["mdice"] == pytest.approx(4 / 9)
    assert result["pixel_accuracy"] == pytest.approx(3 / 5)
    np.testing.assert_array_equal(result["support"], [2, 2, 1])
    assert result["class_names"] == ["background", "cat", "dog"]


def test_class_absent_from_split_is_nan_and_excluded_from_mean() -> None:
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    result = segmentation_metrics(pred, target)
    assert math.isnan(result["iou"][2]) and math.isnan(result["dice"][2])
    assert result["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result["mdice"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_class_predicted_but_absent_from_target_counts_as_zero() -> None:
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 2, 1, 1]])
    result = segmentation_metrics(pred, target)
    assert result["iou"][2] == 0.0 and result["dice"][2] == 0.0
    assert result["miou"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_only_ignored_pixels_give_nan_everywhere() -> None:
    target = torch.full((1, 2, 2), IGNORE_INDEX)
    result = segmentation_metrics(torch.zeros(1, 2, 2, dtype=torch.long), target)
    assert np.isnan(result["iou"]).all() and math.isnan(result["miou"]) and math.isnan(result["pixel_accuracy"])


def test_ignored_pixels_do_not_change_any_metric() -> None:
    pred, target = random_labels(0)
    changed = pred.clone()
    ignored = target == IGNORE_INDEX
    changed[ignored] = (changed[ignored] + 1) % 3
    first, second = segmentation_metrics(pred, target), segmentation_metrics(changed, target)
    np.testing.assert_array_equal(first["confusion_matrix"], second["confusion_matrix"])
    assert first["miou"] == second["miou"]


def test_invalid_inputs_raise() -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="pred values"):
        confusion_matrix(torch.full((1, 2, 2), 3), target)
    with pytest.raises(ValueError, match="target values"):
        confusion_matrix(target, torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(torch.zeros(1, 2, 2), target)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.zeros(1, 2, 3, dtype=torch.long), target)


# ------------------------------------------------------------------------------ torchmetrics equality


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_torchmetrics_over_several_batches_with_absent_class(seed: int) -> None:
    jaccard = MulticlassJaccardIndex(num_classes=3, average=None, ignore_index=IGNORE_INDEX)
    jaccard_macro = MulticlassJaccardIndex(num_classes=3, average="macro", ignore_index=IGNORE_INDEX)
    f1 = MulticlassF1Score(num_classes=3, average=None, ignore_index=IGNORE_INDEX)
    f1_macro = MulticlassF1Score(num_classes=3, average="macro", ignore_index=IGNORE_INDEX)
    confusion = MulticlassConfusionMatrix(num_classes=3, ignore_index=IGNORE_INDEX)
    meter = ConfusionMatrix()
    for batch in range(3):
        # the first batch has no dog at all (neither predicted nor in the target)
        classes = (0, 1) if batch == 0 else (0, 1, 2)
        pred, target = random_labels(10 * seed + batch, classes=classes)
        meter.update(pred, target)
        for metric in (jaccard, jaccard_macro, f1, f1_macro, confusion):
            metric.update(pred, target)
    result = meter.compute()
    np.testing.assert_array_equal(result["confusion_matrix"], confusion.compute().numpy())
    np.testing.assert_allclose(result["iou"], jaccard.compute().numpy(), rtol=1e-6)
    np.testing.assert_allclose(result["dice"], f1.compute().numpy(), rtol=1e-6)
    assert result["miou"] == pytest.approx(float(jaccard_macro.compute()), rel=1e-6)
    assert result["mdice"] == pytest.approx(float(f1_macro.compute()), rel=1e-6)


def test_absent_class_matches_torchmetrics_macro_but_is_nan_per_class() -> None:
    pred, target = random_labels(5, classes=(0, 1))
    result = segmentation_metrics(pred, target)
    per_class = MulticlassJaccardIndex(num_classes=3, average=None, ignore_index=IGNORE_INDEX)(pred, target)
    macro = MulticlassJaccardIndex(num_classes=3, average="macro", ignore_index=IGNORE_INDEX)(pred, target)
    assert math.isnan(result["iou"][2]) and float(per_class[2]) == 0.0  # torchmetrics' zero_division
    np.testing.assert_allclose(result["iou"][:2], per_class[:2].numpy(), rtol=1e-6)
    assert result["miou"] == pytest.approx(float(macro), rel=1e-6)


def test_per_image_metrics_match_torchmetrics_samplewise() -> None:
    pred, target = random_labels(3, shape=(5, 6, 6))
    pred[1][pred[1] == 2] = 0  # image 1: no dog predicted ...
    target[1][target[1] == 2] = 1  # ... and none in its target, so its dog metrics are NaN
    result = per_image_metrics(pred, target)
    assert result["iou"].shape == (5, 3) and result["miou"].shape == (5,)
    samplewise_f1 = MulticlassF1Score(num_classes=3, average=None, multidim_average="samplewise",
                                      ignore_index=IGNORE_INDEX)(pred, target).numpy()
    for index in range(5):
        expected = segmentation_metrics(pred[index:index + 1], target[index:index + 1])
        np.testing.assert_allclose(result["iou"][index], expected["iou"], equal_nan=True)
        np.testing.assert_allclose(result["dice"][index], expected["dice"], equal_nan=True)
        assert result["pixel_accuracy"][index] == pytest.approx(expected["pixel_accuracy"])
        jaccard = MulticlassJaccardIndex(num_classes=3, average=None, ignore_index=IGNORE_INDEX)(
            pred[index], target[index]).numpy()
        present = ~np.isnan(result["iou"][index])
        np.testing.assert_allclose(result["iou"][index][present], jaccard[present], rtol=1e-6)
        np.testing.assert_allclose(result["dice"][index][present], samplewise_f1[index][present], rtol=1e-6)
    assert math.isnan(result["iou"][1, 2]) and math.isnan(result["dice"][1, 2])
    assert result["miou"][1] == pytest.approx(np.mean(result["iou"][1, :2]))


def test_per_image_metrics_fully_ignored_image_is_nan() -> None:
    pred = torch.zeros(2, 3, 3, dtype=torch.long)
    target = torch.zeros(2, 3, 3, dtype=torch.long)
    target[1] = IGNORE_INDEX
    result = per_image_metrics(pred, target)
    assert result["miou"][0] == 1.0 and math.isnan(result["miou"][1])
    assert result["valid_pixels"].tolist() == [9, 0]
    assert math.isnan(result["pixel_accuracy"][1])


def test_accumulating_batches_equals_one_shot() -> None:
    pred, target = random_labels(7, shape=(6, 5, 5))
    meter = ConfusionMatrix()
    for start in range(0, 6, 2):
        meter.update(pred[start:start + 2], target[start:start + 2])
    np.testing.assert_array_equal(meter.compute()["confusion_matrix"],
                                  segmentation_metrics(pred, target)["confusion_matrix"])
    assert meter.total == int((target != IGNORE_INDEX).sum())
    meter.all_reduce()  # no process group: a no-op
    other = ConfusionMatrix()
    other.update(pred, target)
    assert torch.equal(ConfusionMatrix().merge(other).matrix, meter.matrix)
    meter.reset()
    assert meter.total == 0


def test_summary_is_flat_and_json_friendly() -> None:
    meter = ConfusionMatrix()
    meter.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    summary = meter.summary(prefix="val_")
    assert summary["val_miou"] == 1.0 and summary["val_acc"] == 1.0
    assert summary["val_iou_cat"] == 1.0 and summary["val_iou_dog"] is None and summary["val_dice_dog"] is None


# ------------------------------------------------------------------------------------------ binary


def test_to_binary_maps_cat_and_dog_to_pet_and_keeps_ignore() -> None:
    labels = torch.tensor([0, 1, 2, 255])
    assert to_binary(labels).tolist() == [0, 1, 1, 255]
    assert to_binary(torch.tensor([0, 1])).tolist() == [0, 1]


def test_binary_metrics_match_torchmetrics_and_collapsed_matrix() -> None:
    pred, target = random_labels(11, shape=(3, 7, 7))
    result = binary_metrics(pred, target)
    expected_pet_iou = BinaryJaccardIndex(ignore_index=IGNORE_INDEX)(to_binary(pred), to_binary(target))
    assert result["iou"][1] == pytest.approx(float(expected_pet_iou), rel=1e-6)
    assert result["class_names"] == ["background", "pet"]
    meter = ConfusionMatrix()
    meter.update(pred, target)
    np.testing.assert_array_equal(meter.to_binary().compute()["confusion_matrix"], result["confusion_matrix"])
    # a binary model's 0/1 predictions give the same numbers as 3-class ones with the same foreground
    binary_pred = to_binary(pred)
    np.testing.assert_array_equal(binary_metrics(binary_pred, target)["confusion_matrix"],
                                  result["confusion_matrix"])


def test_metrics_from_confusion_accepts_numpy_and_rejects_non_square() -> None:
    result = metrics_from_confusion(np.array([[3, 1], [0, 4]]))
    assert result["iou"].tolist() == pytest.approx([3 / 4, 4 / 5])
    with pytest.raises(ValueError, match="square"):
        metrics_from_confusion(np.zeros((2, 3)))


# --------------------------------------------------------------------------------------- baselines


def test_majority_per_pixel_map_hand_case_with_ties_and_ignore() -> None:
    masks = torch.tensor([
        [[1, 2, 255], [0, 2, 255]],
        [[1, 1, 255], [2, 2, 1]],
        [[0, 1, 255], [255, 1, 1]],
    ])
    # position (0,0): 1,1,0 -> 1; (0,1): 2,1,1 -> 1; (0,2): all ignored -> 0
    # (1,0): 0,2 -> tie -> lowest = 0; (1,1): 2,2,1 -> 2; (1,2): 1,1 -> 1
    expected = torch.tensor([[1, 1, 0], [0, 2, 1]])
    assert torch.equal(majority_per_pixel_map(masks), expected)
    assert torch.equal(majority_per_pixel_map(iter(masks)), expected)  # an iterable of [H, W] masks
    assert majority_per_pixel_map(masks).dtype == torch.long


def test_majority_map_rejects_mixed_sizes_and_empty_input() -> None:
    with pytest.raises(ValueError, match="same size"):
        majority_per_pixel_map([torch.zeros(2, 2, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long)])
    with pytest.raises(ValueError, match="at least one"):
        majority_per_pixel_map([])


def test_baseline_predictions() -> None:
    target = torch.tensor([[[0, 1], [2, 255]], [[0, 0], [1, 255]]])
    background = background_prediction(target)
    assert background.shape == target.shape and background.dtype == torch.long and background.max() == 0
    result = segmentation_metrics(background, target)
    assert result["iou"][0] == pytest.approx(3 / 6) and result["iou"][1] == 0 and result["iou"][2] == 0
    majority = majority_prediction(torch.tensor([[0, 1], [2, 0]]), target)
    assert majority.shape == target.shape
    assert torch.equal(majority[1], torch.tensor([[0, 1], [2, 0]]))
    with pytest.raises(ValueError, match="does not match"):
        majority_prediction(torch.zeros(3, 3, dtype=torch.long), target)
