from collections import Counter

import pytest

from petseg.data.layout import index_dataset
from petseg.data.split import Split, check_disjoint, make_split, stratified_holdout
from tests.conftest import write_course


def test_stratified_holdout_takes_fraction_of_every_stratum_and_is_seeded():
    stems = [f"a_{i}" for i in range(10)] + [f"b_{i}" for i in range(5)]
    strata = ["a"] * 10 + ["b"] * 5
    kept, held = stratified_holdout(stems, strata, 0.2, seed=1)
    assert Counter(s[0] for s in held) == {"a": 2, "b": 1}
    assert sorted(kept + held) == sorted(stems)
    assert stratified_holdout(list(reversed(stems)), list(reversed(strata)), 0.2, seed=1) == (kept, held)
    assert stratified_holdout(stems, strata, 0.2, seed=2) != (kept, held)


def test_stratified_holdout_validates_arguments():
    with pytest.raises(ValueError):
        stratified_holdout(["a_1"], ["a"], 1.5, 0)
    with pytest.raises(ValueError):
        stratified_holdout(["a_1"], [], 0.2, 0)


def test_official_split_uses_test_list_and_stratifies_trainval(official_dataset):
    samples = index_dataset(official_dataset).samples
    split = make_split(samples, val_fraction=0.2, seed=0)
    assert split.sizes() == {"train": 12, "val": 3, "test": 15}
    assert split.test_source == "official test list"
    assert {s.split("_")[0] for s in split.val} == {"Abyssinian", "Bengal", "beagle"}
    test_stems = {s.stem for s in samples if s.official_split == "test"}
    assert set(split.test) == test_stems


def test_course_layout_without_split_gets_stratified_test(tmp_path):
    samples = index_dataset(write_course(tmp_path / "c", per_breed=10)).samples
    split = make_split(samples, val_fraction=0.2, seed=0, test_fraction=0.2)
    assert split.sizes() == {"train": 18, "val": 6, "test": 6}
    assert "stratified" in split.test_source


def test_disjointness_check_and_round_trip(tmp_path):
    leaky = Split(train=["a_1", "a_2"], val=["a_2"], test=[], seed=0, val_fraction=0.2, test_source="x")
    with pytest.raises(ValueError, match="a_2"):
        check_disjoint(leaky)
    split = Split(train=["a_1"], val=["a_2"], test=["a_3"], seed=3, val_fraction=0.2, test_source="x")
    split.save(tmp_path / "s.json")
    assert Split.load(tmp_path / "s.json") == split
    with pytest.raises(KeyError):
        split["everything"]
