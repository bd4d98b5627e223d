"""The executed chapter notebooks that the book offers for download carry no path of the build machine."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from petseg import notebook_paths
from petseg.notebook_paths import PathScrubber, injected_source, strip_build_paths


def executed_notebook(repo: Path, data: Path, home: Path) -> dict:
    """A papermill-shaped executed notebook that mentions the repository, data and home folders everywhere."""
    def code(source: str, tags: list[str], outputs: list[dict], i: int) -> dict:
        return {"id": f"c{i}", "cell_type": "code", "metadata": {"tags": tags, "papermill": {"status": "completed"}},
                "source": source, "execution_count": i, "outputs": outputs}

    return {
        "cells": [
            code('profile = "quick"\ndata = None\nseed = 0', ["parameters"], [], 1),
            code(f'# Parameters\nprofile = "quick"\ndata = "{data}"\nseed = 0\n',
                 ["injected-parameters", "remove-cell"], [], 2),
            code("print(data)", [], [
                {"output_type": "stream", "name": "stdout", "text": [f"data: {data}/images\n", f"runs: {repo}/runs\n"]},
                {"output_type": "stream", "name": "stderr", "text": f"{home}/.cache/torch/x.py:1: UserWarning\n"},
                {"output_type": "execute_result", "execution_count": 3, "metadata": {},
                 "data": {"text/plain": f"PosixPath('{repo}/runs/unet-s0')",
                          "text/markdown": f"Run folder `{repo}/runs/unet-s0`, data `{data}`.",
                          "text/html": f"<table><td>{repo}/runs</td><td>{data}</td></table>"}},
            ], 3),
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "papermill": {"input_path": f"{repo}/notebooks/01_data.ipynb",
                          "output_path": f"{repo}/book/generated/01_data.ipynb",
                          "parameters": {"profile": "quick", "data": str(data), "seed": 0},
                          "default_parameters": {}, "environment_variables": {}, "version": "2.6.0",
                          "note": f"ran in {repo} on {home}/scratch"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_no_absolute_path_survives_and_the_notebook_stays_valid(tmp_path: Path) -> None:
    repo, home = tmp_path / "home" / "me" / "petseg", tmp_path / "home" / "me"
    data = tmp_path / "datasets" / "oxford-iiit-pet"
    path = repo / "book" / "generated" / "01_data.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(executed_notebook(repo, data, home)), encoding="utf-8")

    assert strip_build_paths(path, repo, [data, None], home=home)
    text = path.read_text(encoding="utf-8")
    assert str(tmp_path) not in text
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)

    injected = nb.cells[1].source
    assert "data = None  # this build: a folder named 'oxford-iiit-pet'" in injected
    assert 'profile = "quick"' in injected and "seed = 0" in injected
    stream, stderr, result = nb.cells[2].outputs
    assert stream.text == "data: $PETSEG_DATA/images\nruns: <repo>/runs\n"
    assert stderr.text == "~/.cache/torch/x.py:1: UserWarning\n"
    assert result.data["text/plain"] == "PosixPath('<repo>/runs/unet-s0')"
    assert result.data["text/markdown"] == "Run folder `<repo>/runs/unet-s0`, data `$PETSEG_DATA`."
    assert result.data["text/html"] == "<table><td>&lt;repo&gt;/runs</td><td>$PETSEG_DATA</td></table>"
    papermill = nb.metadata.papermill
    assert papermill.input_path == "notebooks/01_data.ipynb"
    assert papermill.output_path == "book/generated/01_data.ipynb"
    assert papermill.parameters == {"profile": "quick", "data": None, "seed": 0}  # as the injected cell reads
    assert papermill.note == "ran in <repo> on ~/scratch"
    assert not strip_build_paths(path, repo, [data], home=home)  # nothing left: the file is not rewritten


def test_only_whole_path_components_are_replaced(tmp_path: Path) -> None:
    repo = tmp_path / "petseg"
    scrub = PathScrubber(repo, [], home=tmp_path / "nohome")
    assert scrub.text(f"{repo}/x {repo}-old/x /mnt{repo}/x {repo}") == f"<repo>/x {repo}-old/x /mnt{repo}/x <repo>"


def test_an_absolute_path_outside_every_root_keeps_only_its_last_component(tmp_path: Path) -> None:
    scrub = PathScrubber(tmp_path / "repo", [], home=tmp_path / "home")
    assert scrub.metadata_value("/elsewhere/pets/") == "pets"
    assert scrub.metadata_value(str(tmp_path / "repo")) == "."
    assert scrub.metadata_value("quick") == "quick"


def test_injected_relative_and_non_path_values_are_kept() -> None:
    source = '# Parameters\nprofile = "quick"\ndata = "pets"\nseed = 0\nother = "C:\\\\data\\\\pets"\n'
    assert injected_source(source) == ('# Parameters\nprofile = "quick"\ndata = "pets"\nseed = 0\n'
                                       "other = None  # this build: a folder named 'pets' on the build machine\n")


def test_the_root_folder_itself_is_never_a_replaced_path() -> None:
    assert notebook_paths._forms("/") == [] and notebook_paths._forms(None) == []
