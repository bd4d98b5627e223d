import numpy as np
import pytest

from petseg.data.labels import (
    IGNORE_INDEX,
    breed_from_stem,
    check_labels,
    species_from_breed,
    to_binary,
    trimap_to_labels,
)


def test_trimap_to_labels_maps_pet_to_species_and_border_to_ignore():
    trimap = np.array([[1, 2, 3]], np.uint8)
    assert trimap_to_labels(trimap, "cat").tolist() == [[1, 0, IGNORE_INDEX]]
    assert trimap_to_labels(trimap, "dog").tolist() == [[2, 0, IGNORE_INDEX]]


@pytest.mark.parametrize("bad", [0, 4, 255])
def test_trimap_to_labels_rejects_unexpected_values(bad):
    with pytest.raises(ValueError, match="outside"):
        trimap_to_labels(np.array([[1, bad]], np.uint8), "cat")


def test_unknown_species_is_an_error():
    with pytest.raises(ValueError, match="species"):
        trimap_to_labels(np.ones((2, 2), np.uint8), "horse")


@pytest.mark.parametrize(("stem", "breed", "species"), [
    ("Abyssinian_1", "Abyssinian", "cat"),
    ("american_bulldog_200", "american_bulldog", "dog"),
    ("British_Shorthair_3", "British_Shorthair", "cat"),
])
def test_breed_and_species_from_file_name(stem, breed, species):
    assert breed_from_stem(stem) == breed
    assert species_from_breed(breed) == species


def test_bad_names_raise():
    with pytest.raises(ValueError):
        breed_from_stem("nounderscore")
    with pytest.raises(ValueError):
        species_from_breed("_x")


def test_check_labels_and_binary():
    check_labels(np.array([0, 1, 2, 255], np.uint8))
    with pytest.raises(ValueError, match=r"\[3\]"):
        check_labels(np.array([0, 3], np.uint8))
    assert to_binary(np.array([0, 1, 2, 255], np.uint8)).tolist() == [0, 1, 1, 255]


def test_to_binary_is_one_function_for_numpy_and_torch() -> None:
    import torch

    labels = np.array([[0, 1], [2, 255]], np.int64)
    from_numpy = to_binary(labels)
    from_torch = to_binary(torch.from_numpy(labels))
    assert from_numpy.dtype == np.uint8 and from_torch.dtype == torch.int64
    assert from_numpy.tolist() == from_torch.tolist() == [[0, 1], [1, 255]]


def test_the_demo_clicks_where_the_evaluation_protocol_clicks() -> None:
    from petseg.data.prompts import interior_point
    from petseg.demo.session import interior_pixel

    mask = np.zeros((9, 12), bool)
    mask[2:8, 3:10] = True
    assert interior_pixel(mask) == interior_point(mask)
