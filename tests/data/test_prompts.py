"""Prompt simulation on synthetic masks: interior points, boxes, corrective clicks, training prompts."""

from __future__ import annotations

import numpy as np
import pytest

from petseg.data.prompts import (
    Click,
    Prompt,
    box_from_mask,
    interior_point,
    next_click,
    pet_and_valid,
    random_point,
    simulate_training_prompt,
)


def square_mask(size: int = 32, top: int = 8, bottom: int = 24, label: int = 1) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top:bottom, top:bottom] = label
    return mask


def test_pet_and_valid_merges_cat_and_dog_and_skips_ignored() -> None:
    mask = np.array([[0, 1, 2, 255]], np.uint8)
    pet, valid = pet_and_valid(mask)
    assert pet.tolist() == [[False, True, True, False]]
    assert valid.tolist() == [[True, True, True, False]]
    with pytest.raises(ValueError, match="2-D"):
        pet_and_valid(np.zeros((2, 2, 2)))


def test_interior_point_is_the_centre_of_a_square_and_none_for_empty() -> None:
    x, y = interior_point(square_mask(33, 8, 25) > 0)  # 17 x 17 square, centre (16, 16)
    assert (x, y) == (16, 16)
    assert interior_point(np.zeros((5, 5), bool)) is None


def test_interior_point_treats_the_image_edge_as_boundary() -> None:
    region = np.zeros((20, 40), bool)
    region[:, :10] = True  # touches the left, top and bottom edges
    x, y = interior_point(region)
    assert 4 <= x <= 5 and 4 <= y <= 15  # 5 px from every edge, not on the image border


def test_interior_point_of_an_l_shape_stays_inside() -> None:
    region = np.zeros((30, 30), bool)
    region[0:30, 0:6] = True
    region[24:30, 0:30] = True
    x, y = interior_point(region)
    assert region[y, x]


def test_random_point_is_inside_and_seeded() -> None:
    region = square_mask() > 0
    a = random_point(region, np.random.default_rng(3))
    b = random_point(region, np.random.default_rng(3))
    assert a == b and region[a[1], a[0]]
    assert random_point(np.zeros((4, 4), bool), np.random.default_rng(0)) is None


def test_box_from_mask_is_tight_and_jitter_stays_in_the_image() -> None:
    region = square_mask(32, 8, 24) > 0
    assert box_from_mask(region).tolist() == [8, 8, 23, 23]
    assert box_from_mask(np.zeros((4, 4), bool)) is None
    for seed in range(20):
        box = box_from_mask(region, np.random.default_rng(seed), jitter=0.5)
        assert 0 <= box[0] <= box[2] <= 31 and 0 <= box[1] <= box[3] <= 31
    jittered = [box_from_mask(region, np.random.default_rng(seed), jitter=0.1).tolist() for seed in range(5)]
    assert any(box != [8, 8, 23, 23] for box in jittered)
    assert box_from_mask(region, np.random.default_rng(1), 0.1).tolist() == jittered[1]


def test_next_click_targets_the_largest_error_region() -> None:
    mask = square_mask(40, 5, 35)
    prediction = mask > 0
    prediction[10:30, 10:16] = False  # a 20 x 6 miss inside the pet
    prediction[0:3, 0:3] = True  # a small false positive in the background
    click = next_click(prediction, mask)
    assert click.label == 1 and 10 <= click.y < 30 and 10 <= click.x < 16
    prediction = mask > 0
    prediction[36:40, 0:40] = True  # a 4 x 40 false positive strip
    click = next_click(prediction, mask)
    assert click.label == 0 and click.y >= 36
    assert next_click(mask > 0, mask) is None


def test_next_click_ignores_errors_on_ignored_pixels() -> None:
    mask = square_mask(20, 5, 15)
    mask[0:4, :] = 255
    prediction = mask == 1
    prediction[0:4, :] = True  # "wrong" only where the truth is unknown
    assert next_click(prediction, mask) is None
    with pytest.raises(ValueError, match="shape"):
        next_click(np.zeros((3, 3), bool), mask)


def test_simulated_training_prompts_are_seeded_and_valid() -> None:
    mask = square_mask(32, 8, 24, label=2)
    mask[0, :] = 255
    prompts = [simulate_training_prompt(mask, np.random.default_rng(seed)) for seed in range(40)]
    again = [simulate_training_prompt(mask, np.random.default_rng(seed)) for seed in range(40)]
    for first, second in zip(prompts, again, strict=True):
        assert np.array_equal(first.points, second.points) and np.array_equal(first.labels, second.labels)
    boxes = [p for p in prompts if p.box is not None]
    clicks = [p for p in prompts if p.box is None]
    assert boxes and clicks
    for prompt in clicks:
        x, y = prompt.points[0].astype(int)
        assert prompt.labels[0] == 1 and mask[y, x] == 2
        for (x, y), label in zip(prompt.points.astype(int), prompt.labels, strict=True):
            assert mask[y, x] != 255 and (mask[y, x] == 2) == bool(label)
    assert any(p.multimask for p in clicks) and not any(p.multimask for p in boxes)


def test_a_mask_without_pet_gets_one_negative_click() -> None:
    prompt = simulate_training_prompt(np.zeros((8, 8), np.uint8), np.random.default_rng(0))
    assert prompt.labels.tolist() == [0] and prompt.box is None


def test_prompt_from_clicks() -> None:
    prompt = Prompt.from_clicks([Click(1, 2, 1), Click(3, 4, 0)])
    assert prompt.points.tolist() == [[1, 2], [3, 4]] and prompt.labels.tolist() == [1, 0]
    assert not prompt.multimask and Prompt.from_clicks([Click(0, 0, 1)]).multimask
