"""Reliability bins and ECE over valid pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from petseg.evaluation.calibration import CalibrationMeter, model_reliability, reliability


def _two_class(confidences: list[float], correct: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """One image of len(confidences) pixels; class 0 predicted with the given confidence."""
    p0 = torch.tensor(confidences)
    probabilities = torch.stack([p0, 1 - p0]).view(1, 2, 1, -1)
    target = torch.tensor([0 if ok else 1 for ok in correct]).view(1, 1, -1)
    return probabilities, target


def test_perfectly_calibrated_bin_has_zero_ece():
    probabilities, target = _two_class([0.75] * 4, [True, True, True, False])
    result = reliability(probabilities, target, bins=10)
    assert result.ece == pytest.approx(0.0)
    assert result.counts[7] == 4 and result.accuracy[7] == pytest.approx(0.75)
    assert np.isnan(result.accuracy[0])


def test_overconfident_model_ece_is_the_gap():
    probabilities, target = _two_class([0.95] * 10, [True] * 5 + [False] * 5)
    result = reliability(probabilities, target, bins=10)
    assert result.ece == pytest.approx(0.45) and result.mce == pytest.approx(0.45)
    assert result.mean_confidence == pytest.approx(0.95) and result.overall_accuracy == pytest.approx(0.5)


def test_ignored_pixels_do_not_count_and_batches_accumulate():
    probabilities, target = _two_class([0.95, 0.95, 0.6], [True, True, False])
    target[0, 0, 2] = 255
    meter = CalibrationMeter(bins=5)
    meter.update(probabilities, target)
    meter.update(probabilities, target)
    result = meter.compute()
    assert result.pixels == 4 and result.ece == pytest.approx(0.05)


def test_confidence_one_lands_in_last_bin_and_bad_input_raises():
    probabilities, target = _two_class([1.0], [True])
    assert reliability(probabilities, target, bins=4).counts[-1] == 1
    with pytest.raises(ValueError, match="softmax"):
        reliability(probabilities * 3, target)
    with pytest.raises(ValueError, match="expected"):
        reliability(probabilities[0], target)
    with pytest.raises(ValueError, match="bins"):
        CalibrationMeter(bins=0)
    assert np.isnan(CalibrationMeter().compute().ece)


def test_model_reliability_runs_over_a_dataset():
    class Constant(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.zeros(images.shape[0], 3, *images.shape[2:])  # uniform: confidence 1/3

    data = [(torch.rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.long)) for _ in range(3)]
    result = model_reliability(Constant(), data, bins=3, batch_size=2)
    assert result.pixels == 48 and result.overall_accuracy == pytest.approx(1.0)  # argmax ties -> class 0
    assert result.ece == pytest.approx(2 / 3, abs=1e-6)
