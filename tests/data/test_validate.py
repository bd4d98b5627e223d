"""Every kind of bad input is repaired or rejected with its reason, never a crash."""

import io

import numpy as np
import pytest
from PIL import Image

from petseg.data.layout import index_dataset
from petseg.data.validate import BadFileError, check_dataset, fingerprint, load_rgb
from tests.conftest import make_pair, write_course


def _image_path(root, stem):
    return root / "images" / f"{stem}.jpg"


def _trimap_path(root, stem):
    return root / "annotations" / "trimaps" / f"{stem}.png"


def _report(root):
    report = check_dataset(root)
    rejected = {r.stem: r.reason for r in report.rejected}
    return report, rejected


def test_clean_dataset_is_all_usable(official_dataset):
    report, rejected = _report(official_dataset)
    assert len(report.usable) == 30 and not rejected and not report.repaired
    summary = report.summary()
    assert summary["totals"]["usable_pairs"] == 30
    assert summary["species"] == {"cat": 20, "dog": 10}
    assert summary["breeds"]["beagle"] == 10


@pytest.mark.parametrize(("mode", "fmt", "repair"), [
    ("P", "GIF", "file is really GIF"),
    ("RGBA", "PNG", "RGBA -> RGB (alpha dropped)"),
    ("L", "JPEG", "L -> RGB"),
    ("CMYK", "JPEG", "CMYK -> RGB"),
    ("LA", "PNG", "LA -> RGB"),
    ("I;16", "PNG", "I;16 -> RGB"),
])
def test_odd_image_modes_are_repaired_to_rgb(official_dataset, mode, fmt, repair):
    image, _ = make_pair(32 + 2, 48, seed=1)  # Abyssinian_1 is 34x48
    pil = Image.fromarray(image)
    pil = pil.convert("I;16") if mode == "I;16" else pil.convert(mode)
    pil.save(_image_path(official_dataset, "Abyssinian_1"), format=fmt)
    report, rejected = _report(official_dataset)
    assert "Abyssinian_1" not in rejected
    assert any(repair in r for r in report.repaired["Abyssinian_1"])
    array, _ = load_rgb(_image_path(official_dataset, "Abyssinian_1"))
    assert array.shape == (34, 48, 3) and array.dtype == np.uint8


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda p: p.write_bytes(b""), "image: empty file"),
    (lambda p: p.write_bytes(b"this is not an image at all" * 10), "image: not a readable image"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "image: truncated or corrupt"),
])
def test_broken_images_are_rejected_with_reason(official_dataset, damage, reason):
    damage(_image_path(official_dataset, "Bengal_2"))
    report, rejected = _report(official_dataset)
    assert rejected["Bengal_2"].startswith(reason)
    assert len(report.usable) == 29


def test_mask_problems_are_rejected_with_reason(official_dataset):
    root = official_dataset
    _trimap_path(root, "beagle_1").unlink()
    Image.fromarray(np.full((10, 10), 2, np.uint8)).save(_trimap_path(root, "beagle_2"))  # wrong size
    bad_values = make_pair(38, 48, seed=203)[1]
    bad_values[0, 0] = 7
    Image.fromarray(bad_values).save(_trimap_path(root, "beagle_3"))
    Image.fromarray(np.full((40, 48), 2, np.uint8)).save(_trimap_path(root, "beagle_4"))  # no pet
    _trimap_path(root, "beagle_5").write_bytes(b"")
    _trimap_path(root, "beagle_6").write_bytes(b"garbage")
    report, rejected = _report(root)
    assert rejected["beagle_1"] == "no mask for this image"
    assert rejected["beagle_2"] == "image is 48x36 but mask is 10x10"
    assert rejected["beagle_3"] == "mask: trimap values outside {1, 2, 3}: [7]"
    assert rejected["beagle_4"] == "mask has no pet pixels"
    assert rejected["beagle_5"] == "mask: empty file"
    assert rejected["beagle_6"].startswith("mask: not a readable image")
    assert len(report.usable) == 24


def test_rgb_mask_with_equal_channels_is_repaired_and_differing_channels_rejected(official_dataset):
    trimap = make_pair(34, 48, seed=1)[1]
    Image.fromarray(np.stack([trimap] * 3, -1)).save(_trimap_path(official_dataset, "Abyssinian_1"))
    colour = np.stack([trimap, trimap, np.zeros_like(trimap)], -1)
    Image.fromarray(colour).save(_trimap_path(official_dataset, "Abyssinian_2"))
    report, rejected = _report(official_dataset)
    assert "mask: 3 identical channels -> 1" in report.repaired["Abyssinian_1"]
    assert rejected["Abyssinian_2"] == "mask: colour image whose channels differ"


def test_course_labels_outside_set_are_rejected(tmp_path):
    root = write_course(tmp_path / "course")
    labels = np.array(Image.open(root / "label" / "beagle_1.png"))
    labels[0, 0] = 3
    Image.fromarray(labels).save(root / "label" / "beagle_1.png")
    report, rejected = _report(root)
    assert rejected["beagle_1"] == "mask: mask values outside {0, 1, 2, 255}: [3]"
    assert len(report.usable) == 14


def test_jpeg_that_opencv_cannot_decode_is_rejected(official_dataset, monkeypatch):
    import petseg.data.validate as validate

    monkeypatch.setattr(validate.cv2, "imdecode", lambda *a, **k: None)
    with pytest.raises(BadFileError, match="OpenCV"):
        load_rgb(_image_path(official_dataset, "Abyssinian_1"))


def test_fingerprint_changes_with_content_and_not_otherwise(official_dataset):
    before = fingerprint(index_dataset(official_dataset))
    assert fingerprint(index_dataset(official_dataset)) == before
    image, _ = make_pair(34, 48, seed=999)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    _image_path(official_dataset, "Abyssinian_1").write_bytes(buffer.getvalue())
    assert fingerprint(index_dataset(official_dataset)) != before
