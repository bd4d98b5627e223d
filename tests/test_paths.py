"""petseg.paths: default outputs anchored at the checkout, so a chapter opened from notebooks/ reuses the book's."""

from __future__ import annotations

from pathlib import Path

import pytest

from petseg import book
from petseg.paths import repository_root


def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "petseg-checkout"
    (root / "notebooks").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'petseg'\n")
    return root


def test_the_repository_root_is_found_from_inside_the_checkout(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    assert repository_root(root) == root.resolve()
    assert repository_root(root / "notebooks") == root.resolve()
    assert repository_root(tmp_path) is None  # outside a checkout
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "pyproject.toml").write_text("")  # one marker is not enough
    assert repository_root(tmp_path / "lonely") is None


def test_runs_default_to_the_checkouts_runs_folder_from_notebooks(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from petseg.experiment import default_runs_dir

    root = checkout(tmp_path)
    monkeypatch.delenv("PETSEG_RUNS", raising=False)
    monkeypatch.chdir(root / "notebooks")  # JupyterLab's working directory for a chapter
    assert default_runs_dir() == root.resolve() / "runs"
    assert book.default_root() == root.resolve()
    monkeypatch.chdir(tmp_path)  # outside a checkout: ./runs, as before
    assert default_runs_dir() == tmp_path.resolve() / "runs"
    monkeypatch.setenv("PETSEG_RUNS", str(tmp_path / "elsewhere"))  # the variable always wins
    monkeypatch.chdir(root / "notebooks")
    assert default_runs_dir() == (tmp_path / "elsewhere").resolve()


def test_recorded_runs_have_one_folder_name(tmp_path: Path) -> None:
    """petseg.paths.RECORDED_RUNS_DIR is the one definition (issue 15; it was REFERENCE_DIR, twice)."""
    import petseg
    from petseg.paths import RECORDED_RUNS_DIR, recorded_runs_dir
    from petseg.reporting import recorded, tables

    assert recorded_runs_dir(tmp_path) == tmp_path / "book" / "reference_run" == tmp_path / RECORDED_RUNS_DIR
    assert recorded_runs_dir() == Path(petseg.__file__).resolve().parent.parent / RECORDED_RUNS_DIR
    assert (recorded_runs_dir() / "standard").is_dir()  # the committed records
    assert not hasattr(tables, "REFERENCE_DIR") and not hasattr(recorded, "REFERENCE_DIR")
