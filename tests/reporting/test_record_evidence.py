"""Run-length encoded masks, the mask panel and machine paths in records (petseg.reporting.record_evidence)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from petseg.reporting.record_evidence import decode_mask, encode_mask, panel_stems
from petseg.reporting.recorded import without_machine_paths


def test_masks_survive_encoding() -> None:
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, size=(7, 9)).astype(np.uint8)
    mask[2:5] = 255
    encoded = encode_mask(mask)
    assert encoded["shape"] == [7, 9]
    np.testing.assert_array_equal(decode_mask(encoded), mask)
    assert len(encode_mask(np.zeros((128, 128), np.uint8))["png"]) < 400
    with pytest.raises(ValueError, match="the record says"):
        decode_mask({**encoded, "shape": [9, 7]})


def test_panel_is_the_study_breeds_then_the_hardest_images() -> None:
    table = pd.DataFrame({
        "stem": ["Bombay_2", "Bombay_1", "pug_1", "pug_2", "pug_3", "miniature_pinscher_9", "beagle_1"],
        "breed": ["Bombay", "Bombay", "pug", "pug", "pug", "miniature_pinscher", "beagle"],
        "miou": [0.1, 0.9, 0.2, 0.3, np.nan, 0.8, 0.05]})
    stems = panel_stems(table, hardest=3)
    assert stems[:2] == ["Bombay_1", "miniature_pinscher_9"]  # no american_bulldog in this table
    assert stems[2:] == ["beagle_1", "Bombay_2", "pug_1"]


def test_absolute_paths_are_cut_to_their_last_part() -> None:
    record = {"data": {"root": "/work/shared/data/pets"},
              "command": "petseg record unet --runs-dir /tmp/runs --out /x/y/out",
              "keep": ["cat/dog", "1/2", "https://example.org/a/b", "train.epochs=6"]}
    cleaned = without_machine_paths(record)
    assert cleaned["data"]["root"] == ".../pets"
    assert cleaned["command"] == "petseg record unet --runs-dir .../runs --out .../out"
    assert cleaned["keep"] == record["keep"]


def test_encoded_masks_survive_the_path_cleaning_of_a_record() -> None:
    rng = np.random.default_rng(3)
    masks = [encode_mask(rng.integers(0, 3, size=(64, 64)).astype(np.uint8)) for _ in range(20)]
    assert any("/" in m["png"] for m in masks)  # base64 holds "/" (the reason the cleaning must not see it)
    for mask in masks:
        decode_mask(mask)


def test_record_run_keeps_the_evidence_byte_for_byte(tmp_path, monkeypatch) -> None:
    import json

    from petseg.reporting import record_evidence, recorded

    rng = np.random.default_rng(4)
    masks = [encode_mask(rng.integers(0, 3, size=(64, 64)).astype(np.uint8)) for _ in range(10)]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps({"profile": "standard", "seed": 0, "test": {"miou": 0.5},
                                                      "data": {"root": "/abs/data/pets"}}))
    monkeypatch.setattr(record_evidence, "run_evidence", lambda run_dir, prepared: (None, {"mask_panel": {"masks": masks}}))
    path = recorded.record_run(run_dir, "unet", tmp_path / "ref", prepared=object(), evidence=True)
    record = json.loads(path.read_text())
    assert record["data"]["root"] == ".../pets" and record["mask_panel"]["masks"] == masks
    for mask in record["mask_panel"]["masks"]:
        decode_mask(mask)
