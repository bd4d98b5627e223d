import pytest

from petseg.data.layout import (
    DatasetNotFoundError,
    data_root_from_env,
    detect_layout,
    find_dataset_root,
    index_dataset,
    parse_list_file,
)
from tests.conftest import write_course, write_official


def test_official_index_with_and_without_header(tmp_path):
    for header in (True, False):
        root = write_official(tmp_path / f"h{header}", per_breed=4, header=header)
        index = index_dataset(root)
        assert index.layout == "official"
        assert len(index.samples) == 12
        assert {s.species for s in index.samples} == {"cat", "dog"}
        assert {s.official_split for s in index.samples} == {"trainval", "test"}
        assert not index.notes


def test_unlisted_images_get_species_from_name_and_stray_files_are_reported(official_dataset):
    (official_dataset / "images" / "Persian_9.jpg").write_bytes(
        (official_dataset / "images" / "Abyssinian_1.jpg").read_bytes())
    (official_dataset / "images" / "Abyssinian_100.mat").write_bytes(b"MATLAB")
    index = index_dataset(official_dataset)
    persian = next(s for s in index.samples if s.stem == "Persian_9")
    assert (persian.species, persian.listed, persian.official_split, persian.mask_path) == ("cat", False, None, None)
    assert ("images/Abyssinian_100.mat", "not an image file (.mat)") in index.stray_files
    assert any("Persian_9" in note for note in index.notes)


def test_list_file_parsing_reports_malformed_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("#header\nAbyssinian_1 1 1 1\n\ngarbage line\nbeagle_2 13 3 1\n")
    entries, problems = parse_list_file(path)
    assert entries == {"Abyssinian_1": (1, 1, 1)}
    assert len(problems) == 2 and "list.txt:4" in problems[0]


def test_species_from_list_overrides_name(official_dataset):
    list_file = official_dataset / "annotations" / "list.txt"
    list_file.write_text(list_file.read_text().replace("beagle_1 13 2 1", "beagle_1 13 1 1"))
    index = index_dataset(official_dataset)
    assert next(s for s in index.samples if s.stem == "beagle_1").species == "cat"


def test_course_layout_flat_and_with_split_folders(tmp_path):
    flat = index_dataset(write_course(tmp_path / "flat"))
    assert flat.layout == "course" and len(flat.samples) == 15
    assert not flat.has_official_split
    split = index_dataset(write_course(tmp_path / "split", with_splits=True))
    assert {s.official_split for s in split.samples} == {"trainval", "test"}


def test_root_found_one_level_down_and_clear_error_otherwise(tmp_path):
    write_official(tmp_path / "outer" / "oxford-iiit-pet", per_breed=2)
    assert find_dataset_root(tmp_path / "outer").name == "oxford-iiit-pet"
    assert detect_layout(tmp_path) is None
    with pytest.raises(DatasetNotFoundError, match="neither"):
        find_dataset_root(tmp_path / "outer" / "oxford-iiit-pet" / "images")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        find_dataset_root(tmp_path / "missing")


def test_data_root_from_env(monkeypatch, tmp_path):
    monkeypatch.delenv("PETSEG_DATA", raising=False)
    assert data_root_from_env(None) is None
    monkeypatch.setenv("PETSEG_DATA", str(tmp_path))
    assert data_root_from_env(None) == tmp_path
    assert data_root_from_env(tmp_path / "x") == tmp_path / "x"
