import albumentations as A
import numpy as np
import pytest

from petseg.data.transforms import (
    CheckedAugmentation,
    MaskIntegrityError,
    check_pair,
    padding_mask,
    resize_and_pad,
)
from tests.conftest import make_pair


def _labels(height, width):
    _, trimap = make_pair(height, width)
    return np.select([trimap == 1, trimap == 2], [2, 0], 255).astype(np.uint8)


@pytest.mark.parametrize(("height", "width"), [(40, 60), (60, 40), (64, 64), (300, 17)])
def test_resize_and_pad_keeps_aspect_and_ignores_padding(height, width):
    image = np.full((height, width, 3), 200, np.uint8)
    mask = _labels(height, width)
    out_image, out_mask = resize_and_pad(image, mask, 32)
    assert out_image.shape == (32, 32, 3) and out_mask.shape == (32, 32)
    scale = 32 / max(height, width)
    content = (round(height * scale), round(width * scale))
    padded = out_image.sum(-1) == 0
    assert (out_mask[padded] == 255).all()  # padding is ignored
    assert padded.sum() == pytest.approx(32 * 32 - content[0] * content[1], abs=32)
    assert set(np.unique(out_mask)) <= {0, 2, 255}  # nearest neighbour: no new labels


@pytest.mark.parametrize(("height", "width"), [(40, 60), (60, 40), (64, 64), (301, 17)])
def test_padding_mask_marks_exactly_what_resize_and_pad_adds(height, width):
    image = np.full((height, width, 3), 200, np.uint8)  # no black pixel: padding is the only zero
    padding = padding_mask((height, width), 32)
    out_image, _ = resize_and_pad(image, np.zeros((height, width), np.uint8), 32)
    assert padding.shape == (32, 32) and padding.dtype == bool
    np.testing.assert_array_equal(padding, out_image.max(axis=2) == 0)
    if height == width:
        assert not padding.any()
    with pytest.raises(ValueError, match="positive"):
        padding_mask((0, width), 32)


def test_resize_and_pad_rejects_tiny_size():
    with pytest.raises(ValueError):
        resize_and_pad(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), 4)


def test_augmentation_is_seeded_and_keeps_mask_contract():
    image, _ = make_pair(64, 64, seed=3)
    mask = _labels(64, 64)
    augment = CheckedAugmentation()
    first = augment(image, mask, seed=7)
    again = augment(image, mask, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    for seed in range(30):
        out_image, out_mask = augment(image, mask, seed=seed)
        check_pair(out_image, out_mask, after="test")
    assert {"Affine", "ElasticTransform", "GaussNoise", "CoarseDropout", "RandomGamma"} <= set(augment.names())


def test_strength_zero_is_identity():
    image, _ = make_pair(32, 32)
    mask = _labels(32, 32)
    out_image, out_mask = CheckedAugmentation(strength=0)(image, mask, seed=0)
    assert np.array_equal(out_image, image) and np.array_equal(out_mask, mask)


def test_a_transform_that_breaks_the_mask_is_named():
    image, _ = make_pair(32, 32)
    mask = _labels(32, 32)
    bad_interpolation = A.Affine(scale=0.7, rotate=30, mask_interpolation=1, p=1.0)  # linear: invents labels
    with pytest.raises(MaskIntegrityError, match="after Affine: mask values outside"):
        CheckedAugmentation([bad_interpolation])(image, mask, seed=0)
    def drop_last_row(mask, **kwargs):
        return mask[:-1]

    shrink_mask = A.Lambda(mask=drop_last_row, p=1.0)
    with pytest.raises(MaskIntegrityError, match="after Lambda: mask shape"):
        CheckedAugmentation([shrink_mask])(image, mask, seed=0)
