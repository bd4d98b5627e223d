"""The report's figures (chapters 6-8): they draw what they are given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from petseg import viz  # noqa: E402
from petseg.evaluation.calibration import reliability  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_seed_comparison_bars_are_means_with_min_max_error_bars():
    table = pd.DataFrame({"model": ["A", "A", "B"], "miou": [0.5, 0.7, 0.4], "mdice": [0.6, 0.8, 0.5]})
    fig = viz.seed_comparison(table, metrics=("miou", "mdice"), baselines={"bg": {"miou": 0.2}})
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert heights == [0.4, 0.5, 0.6, 0.7]  # means: A 0.6/0.7, B 0.4/0.5
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A\n(n=2 seeds)", "B\n(n=1 seed)"]
    legend_texts = [t.get_text() for legend in ax.findobj(matplotlib.legend.Legend) for t in legend.get_texts()]
    assert {"mIoU", "mDice", "baseline: bg"} <= set(legend_texts)
    assert any(line.get_ydata()[0] == 0.2 for line in ax.get_lines())  # the baseline


def test_confusion_matrices_are_row_normalised():
    fig = viz.confusion_matrices({"m": np.array([[8, 2, 0], [1, 1, 0], [0, 0, 4]])})
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:3] == ["0.80", "0.20", "0.00"] and texts[3:5] == ["0.50", "0.50"]


def test_reliability_diagrams_title_ece():
    p0 = np.array([0.95] * 10, dtype=np.float32)
    probabilities = np.stack([p0, 1 - p0]).reshape(1, 2, 1, -1)
    target = np.array([0] * 5 + [1] * 5).reshape(1, 1, -1)
    fig = viz.reliability_diagrams({"over-confident": reliability(probabilities, target, bins=10)})
    assert "ECE 0.450" in fig.axes[0].get_title()


def test_robustness_curves_one_panel_per_perturbation_one_line_per_model():
    rows = [{"model": m, "perturbation": p, "level_index": i, "level": i, "mdice": 1 - i / 10}
            for m in ("a", "b") for p in ("blur", "occlusion", "contrast_decrease") for i in range(3)]
    fig = viz.robustness_curves(pd.DataFrame(rows))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3 and all(len(ax.get_lines()) == 2 for ax in visible)
    assert visible[2].xaxis_inverted()  # contrast decrease reads left to right as "worse"


def test_breed_heatmap_and_scatter():
    index = pd.MultiIndex.from_tuples([("cat", "Bengal"), ("dog", "beagle")], names=["species", "breed"])
    table = pd.DataFrame({"A": [0.5, 0.6], "B": [0.7, 0.1], "test images": [3, 4]}, index=index)
    fig = viz.breed_heatmap(table)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["Bengal (cat)", "beagle (dog)"]
    frame = pd.DataFrame({"x": [1, 2, 3, 4], "y": [1, 2, 3, 4], "species": ["cat", "cat", "dog", "dog"]})
    fig = viz.metric_scatter(frame, "x", "y", hue="species")
    assert "Spearman 1.00" in fig.axes[0].get_legend().get_texts()[0].get_text()
