"""Integration tests on the real 600-image Oxford-IIIT Pet sample."""

from collections import Counter

import pytest

from petseg.data.layout import index_dataset
from petseg.data.split import check_disjoint, make_split
from petseg.data.validate import check_dataset

pytestmark = pytest.mark.integration



@pytest.fixture
def sample_report(sample_root):
    return check_dataset(index_dataset(sample_root))


def test_sample_usable_pairs_and_known_oddities(sample_report):
    summary = sample_report.summary()
    assert summary["totals"]["images_found"] == 600
    assert summary["totals"]["usable_pairs"] == 599
    assert summary["breeds"] == {"Abyssinian": 199, "Bengal": 200, "american_bulldog": 200}
    assert summary["species"] == {"cat": 399, "dog": 200}
    assert {r["stem"]: r["reason"] for r in summary["rejected"]} == {"Abyssinian_34": "mask has no pet pixels"}
    assert "file is really PNG, not JPEG" in summary["repaired"]["Abyssinian_5"]
    assert len(summary["stray_files"]) == 3


def test_sample_split_is_stratified_and_disjoint(sample_report):
    split = make_split(sample_report.usable, val_fraction=0.2, seed=0)
    check_disjoint(split)
    assert split.sizes() == {"train": 240, "val": 60, "test": 298}
    assert split.unsplit == ["Abyssinian_82"]
    breed = {s.stem: s.breed for s in sample_report.usable}
    val = Counter(breed[s] for s in split.val)
    trainval = Counter(breed[s] for s in split.val + split.train)
    for name, count in trainval.items():
        assert val[name] == round(0.2 * count)
