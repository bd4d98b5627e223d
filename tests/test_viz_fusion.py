"""petseg.viz.vector_swap_panels: the chapter 4 figure of what a global vector changes."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from petseg import viz  # noqa: E402


def test_vector_swap_panels_draws_rows_grid_and_shared_scale():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    own = rng.dirichlet(np.ones(3), size=(2, 64, 64)).transpose(0, 3, 1, 2)
    swapped = own[:, [0, 2, 1]]  # cat and dog exchanged
    change = np.kron(rng.normal(size=(2, 2, 2)), np.ones((1, 32, 32)))
    fig = viz.vector_swap_panels(images, own, swapped, change, block=32, row_labels=["a <- b", "b <- a"])
    axes = fig.axes
    assert len(axes) == 2 * 4 + 1  # panels + colourbar
    assert axes[0].get_ylabel() == "a <- b" and axes[3].get_title().startswith("margin change")
    change_image = axes[3].get_images()[0]
    assert change_image.get_clim() == pytest.approx((-np.abs(change).max(), np.abs(change).max()))
    assert len(axes[3].lines) == 2  # one vertical + one horizontal grid line at 32 px on a 64 px map
    np.testing.assert_array_equal(axes[1].get_images()[0].get_array(), viz.colourise(own[0].argmax(0).astype(np.uint8)))
    assert len(viz.vector_swap_panels(images, own, swapped, change).axes[3].lines) == 0  # no block, no grid
    matplotlib.pyplot.close("all")


def test_prediction_panels_titles_labels_ticks_and_confidence_bar():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    targets = rng.integers(0, 3, (3, 32, 32))
    targets[:, :2] = 255
    probabilities = rng.dirichlet(np.ones(3), size=(3, 32, 32)).transpose(0, 3, 1, 2)
    fig = viz.prediction_panels(images, targets, probabilities, row_labels=["first", "second"])
    axes = fig.axes
    assert len(axes) == 3 * 7 + 1 and axes[-1].get_ylabel() == "confidence"
    assert [ax.get_title() for ax in axes[:7]] == ["input", "ground truth", "prediction", "errors (red)",
                                                  "p(background)", "p(cat)", "p(dog)"]
    assert axes[7].get_title() == "" and axes[7].get_ylabel() == "second" and axes[14].get_ylabel() == ""
    assert all(len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0 for ax in axes[:-1])
    matplotlib.pyplot.close("all")


def test_panels_draw_padding_white_and_leave_it_out_of_the_scales():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    probabilities = rng.dirichlet(np.ones(3), size=(2, 32, 32)).transpose(0, 3, 1, 2)
    targets = probabilities.argmax(1)
    padding = np.zeros((2, 32, 32), bool)
    padding[:, :6] = True  # a band of padding along the top
    targets[padding] = 255
    fig = viz.prediction_panels(images, targets, probabilities, padding=padding)
    prediction = fig.axes[2].get_images()[0].get_array()
    assert (prediction[:6] == 255).all() and (prediction[6:] != 255).any()  # white band, model output below
    confidence = fig.axes[4].get_images()[0].get_array()
    assert confidence.mask[:6].all() and not confidence.mask[6:].any()
    change = rng.normal(size=(2, 32, 32))
    change[padding] = 100.0  # a huge change on the padding must not set the colour scale
    fig = viz.vector_swap_panels(images, probabilities, probabilities[:, [0, 2, 1]], change, padding=padding)
    assert fig.axes[3].get_images()[0].get_clim()[1] == pytest.approx(np.abs(change[~padding]).max())
    assert (fig.axes[1].get_images()[0].get_array()[:6] == 255).all()
    matplotlib.pyplot.close("all")
