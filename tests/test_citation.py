"""CITATION.cff and LICENSE agree with pyproject.toml and credit the Oxford-IIIT Pet dataset."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _citation() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def _project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_citation_is_cff_1_2_0_with_the_required_keys() -> None:
    citation = _citation()
    assert citation["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= set(citation)
    assert citation["title"] == "petseg: segmenting pets, honestly"
    assert citation["authors"] == [{"name": "The petseg authors"}]
    assert citation["type"] == "software"


def test_citation_version_and_licence_follow_pyproject() -> None:
    citation, project = _citation(), _project()
    assert citation["version"] == project["version"]
    assert citation["license"] == project["license"]["text"] == "MIT"


def test_citation_credits_the_dataset_under_its_licence() -> None:
    (dataset,) = [ref for ref in _citation()["references"] if ref["title"] == "Cats and Dogs"]
    assert dataset["type"] == "data"  # the CFF 1.2.0 word for a data set
    assert dataset["license"] == "CC-BY-SA-4.0"
    assert dataset["url"] == "https://www.robots.ox.ac.uk/~vgg/data/pets/"
    assert dataset["year"] == 2012 and "CVPR" in dataset["conference"]["name"]
    assert [a["family-names"] for a in dataset["authors"]] == ["Parkhi", "Vedaldi", "Zisserman", "Jawahar"]


def test_license_file_is_mit_for_the_petseg_authors() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 The petseg authors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
