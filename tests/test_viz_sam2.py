"""Figures of chapter 5: the click curve and the prompt panels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from petseg import viz  # noqa: E402
from petseg.data.prompts import Click  # noqa: E402


def test_click_curves_draws_one_line_per_model_and_thresholds() -> None:
    fig = viz.click_curves({"a": [0.5, 0.7, 0.9], "b": [0.2, 0.4]})
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2 + 2  # two models, two threshold lines
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 3]


def test_prompt_panels_layout() -> None:
    image = np.zeros((16, 16, 3), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 2
    mask[0] = 255
    prediction = mask == 2
    examples = {"images": [image, image], "masks": [mask, mask], "clicks": [[Click(8, 8, 1)], [Click(1, 1, 0)]],
                "point_predictions": [prediction, prediction], "boxes": [np.array([4, 4, 11, 11])] * 2,
                "box_predictions": [prediction, ~prediction]}
    fig = viz.prompt_panels(examples, title="t")
    assert len(fig.axes) == 10 and fig.axes[0].get_title() == "input + click"
    assert len(fig.axes[3].patches) == 1 and len(fig.axes[0].collections) == 1
