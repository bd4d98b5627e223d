"""Tests for petseg.book: toc parsing, stamps, the figure check, and (slow) a tiny end-to-end build."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest

from petseg import book
from petseg.book import BookError, Chapter
from petseg.notebook_paths import PathScrubber

TOC = """\
format: jb-book
root: book/intro
parts:
  - caption: Part one
    chapters:
      - file: book/generated/01_first
      - file: book/generated/02_second.ipynb
        sections:
          - file: book/generated/02b_nested
  - caption: Back matter
    chapters:
      - file: book/references
"""

CONFIG = """\
title: tiny petseg test book
author: tests
only_build_toc_files: true
exclude_patterns: [_build, notebooks, "**.ipynb_checkpoints"]
execute:
  execute_notebooks: "off"
parse:
  myst_enable_extensions: [colon_fence, dollarmath]
bibtex_bibfiles: [book/references.bib]
html:
  use_repository_button: false
"""

BIB = """\
@inproceedings{parkhi2012cats,
  author = {Parkhi, Omkar M. and Vedaldi, Andrea and Zisserman, Andrew and Jawahar, C. V.},
  title = {Cats and Dogs},
  booktitle = {CVPR},
  year = {2012}
}
"""


def notebook(*cells: tuple[str, str, list[str]]) -> dict:
    """A minimal nbformat-4 notebook from (cell_type, source, tags) triples."""
    return {
        "cells": [
            {"id": f"cell-{i}", "cell_type": kind, "metadata": {"tags": tags}, "source": source,
             **({"execution_count": None, "outputs": []} if kind == "code" else {})}
            for i, (kind, source, tags) in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


PARAMS = ("code", 'profile = "quick"\ndata = None\nseed = 0', ["parameters"])


def figure_notebook(title: str, extra: str = "") -> dict:
    return notebook(
        ("markdown", f"# {title}\n\nSee {{cite:p}}`parkhi2012cats`.", []),
        PARAMS,
        ("code", "import sys\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
                 "print('kernel python:', sys.executable)\n"
                 "print('params:', profile, data, seed)\n" + extra, []),
        ("code", "rng = np.random.default_rng(seed)\nfig, ax = plt.subplots(figsize=(3, 2))\n"
                 "ax.plot(rng.normal(size=20))\nax.set_title(profile)\nplt.show()", []),
    )


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def make_book(root: Path, toc: str, notebooks: dict[str, dict]) -> None:
    (root / "book").mkdir(parents=True, exist_ok=True)
    (root / "_toc.yml").write_text(toc, encoding="utf-8")
    (root / "_config.yml").write_text(CONFIG, encoding="utf-8")
    (root / "book" / "intro.md").write_text("# Intro\n\nA tiny book {cite:p}`parkhi2012cats`.\n", encoding="utf-8")
    (root / "book" / "references.md").write_text("# References\n\n```{bibliography}\n```\n", encoding="utf-8")
    (root / "book" / "references.bib").write_text(BIB, encoding="utf-8")
    for name, nb in notebooks.items():
        write_json(root / "notebooks" / f"{name}.ipynb", nb)


# ------------------------------------------------------------------------------------------- toc


def test_chapters_from_toc_finds_generated_entries_in_order(tmp_path: Path) -> None:
    (tmp_path / "_toc.yml").write_text(TOC, encoding="utf-8")
    chapters = book.chapters_from_toc(tmp_path / "_toc.yml")
    assert [c.name for c in chapters] == ["01_first", "02_second", "02b_nested"]
    first = chapters[0]
    assert first.source == tmp_path.resolve() / "notebooks" / "01_first.ipynb"
    assert first.output == tmp_path.resolve() / "book" / "generated" / "01_first.ipynb"
    assert first.docname == "book/generated/01_first"
    assert first.stamp.name == "01_first.stamp.json"


def test_repository_toc_parses() -> None:
    root = Path(__file__).resolve().parent.parent
    if not (root / "_toc.yml").is_file():
        pytest.skip("no _toc.yml in this checkout")
    chapters = book.chapters_from_toc(root / "_toc.yml")
    assert chapters, "the book has no executed chapters"
    assert all(c.source.parent == root / "notebooks" for c in chapters)


def test_select_chapters_by_name_and_prefix(tmp_path: Path) -> None:
    (tmp_path / "_toc.yml").write_text(TOC, encoding="utf-8")
    chapters = book.chapters_from_toc(tmp_path / "_toc.yml")
    assert book.select_chapters(chapters, None) == chapters
    assert [c.name for c in book.select_chapters(chapters, ["01"])] == ["01_first"]
    assert [c.name for c in book.select_chapters(chapters, ["02_second"])] == ["02_second"]
    with pytest.raises(BookError, match="ambiguous"):
        book.select_chapters(chapters, ["02"])
    with pytest.raises(BookError, match="not in _toc.yml"):
        book.select_chapters(chapters, ["99_missing"])


# ---------------------------------------------------------------------------------------- stamps


def _chapter(root: Path) -> Chapter:
    write_json(root / "notebooks" / "01_x.ipynb", notebook(PARAMS))
    return Chapter("01_x", root / "notebooks" / "01_x.ipynb", root / "book" / "generated" / "01_x.ipynb",
                   "book/generated/01_x")


def test_stamp_decides_whether_a_chapter_is_up_to_date(tmp_path: Path) -> None:
    chapter = _chapter(tmp_path)
    params = {"profile": "quick", "data": "/data/pets", "seed": 0}
    key = book.stamp_key(chapter, params, "pkg1")
    assert not book.is_up_to_date(chapter, key)  # never executed
    write_json(chapter.output, notebook(PARAMS))
    assert not book.is_up_to_date(chapter, key)  # output without stamp (e.g. a failed run)
    book.write_stamp(chapter, key, 1.5)
    assert book.is_up_to_date(chapter, key)
    assert book.read_stamp(chapter)["seconds"] == 1.5
    assert not book.is_up_to_date(chapter, book.stamp_key(chapter, {**params, "seed": 1}, "pkg1"))
    assert not book.is_up_to_date(chapter, book.stamp_key(chapter, {**params, "profile": "full"}, "pkg1"))
    assert not book.is_up_to_date(chapter, book.stamp_key(chapter, params, "pkg2"))
    write_json(chapter.source, notebook(PARAMS, ("code", "1 + 1", [])))
    assert not book.is_up_to_date(chapter, book.stamp_key(chapter, params, "pkg1"))
    chapter.stamp.write_text("not json", encoding="utf-8")
    assert book.read_stamp(chapter) is None


def test_petseg_data_env_matters_only_when_data_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chapter = _chapter(tmp_path)
    monkeypatch.setenv("PETSEG_DATA", "/a")
    none_a = book.stamp_key(chapter, {"data": None}, "p")
    given_a = book.stamp_key(chapter, {"data": "/x"}, "p")
    monkeypatch.setenv("PETSEG_DATA", "/b")
    assert book.stamp_key(chapter, {"data": None}, "p") != none_a
    assert book.stamp_key(chapter, {"data": "/x"}, "p") == given_a


def test_package_digest_tracks_python_and_configs_only(tmp_path: Path) -> None:
    (tmp_path / "petseg" / "sub").mkdir(parents=True)
    (tmp_path / "configs").mkdir()
    (tmp_path / "petseg" / "a.py").write_text("x = 1\n")
    (tmp_path / "configs" / "c.yaml").write_text("lr: 0.1\n")
    base = book.package_digest(tmp_path)
    (tmp_path / "petseg" / "notes.txt").write_text("ignored")
    (tmp_path / "petseg" / "__pycache__").mkdir()
    (tmp_path / "petseg" / "__pycache__" / "a.py").write_text("ignored")
    assert book.package_digest(tmp_path) == base
    (tmp_path / "petseg" / "sub" / "b.py").write_text("y = 2\n")
    with_b = book.package_digest(tmp_path)
    assert with_b != base
    (tmp_path / "configs" / "c.yaml").write_text("lr: 0.2\n")
    assert book.package_digest(tmp_path) != with_b


def test_up_to_date_chapter_is_skipped_without_running_papermill(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    chapter = _chapter(tmp_path)
    params = {"profile": "quick", "data": None, "seed": 0}
    write_json(chapter.output, notebook(PARAMS))
    book.write_stamp(chapter, book.stamp_key(chapter, params, "pkg"), 2.0)

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("papermill must not run")

    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", boom)
    result = book.execute_chapter(chapter, root=tmp_path, parameters=params, package="pkg")
    assert not result.executed and result.seconds == 2.0
    with pytest.raises(BookError, match="01_x could not be executed"):
        book.execute_chapter(chapter, root=tmp_path, parameters=params, package="pkg", force=True)
    assert not chapter.stamp.exists()  # a failed execution leaves no stamp behind


def test_execute_chapter_requires_source_and_parameters_cell(tmp_path: Path) -> None:
    chapter = _chapter(tmp_path)
    write_json(chapter.source, notebook(("code", "x = 1", [])))
    with pytest.raises(BookError, match="no cell tagged 'parameters'"):
        book.execute_chapter(chapter, root=tmp_path, parameters={}, package="p")
    chapter.source.unlink()
    with pytest.raises(BookError, match="does not exist"):
        book.execute_chapter(chapter, root=tmp_path, parameters={}, package="p")


def test_record_times_merges(tmp_path: Path) -> None:
    path = tmp_path / "times.json"
    ch = [Chapter(n, tmp_path / n, tmp_path / n, n) for n in ("a", "b")]
    book.record_times(path, [book.ChapterResult(ch[0], True, 1.0)], {"profile": "quick", "seed": 0})
    book.record_times(path, [book.ChapterResult(ch[1], True, 2.0)], {"profile": "full", "seed": 1})
    times = json.loads(path.read_text())
    assert times["a"]["seconds"] == 1.0 and times["a"]["profile"] == "quick"
    assert times["b"]["seconds"] == 2.0 and times["b"]["profile"] == "full"
    assert times["b"]["host"]["cpu_count"] >= 1


def test_the_injected_parameters_cell_is_removed_from_the_page(tmp_path: Path) -> None:
    executed = notebook(PARAMS, ("code", 'data = "/home/someone/oxford-iiit-pet"', ["injected-parameters"]),
                        ("code", "print(data)", []))
    executed["cells"][2]["metadata"] = {}
    path = tmp_path / "chapter.ipynb"
    write_json(path, executed)
    assert book.hide_injected_parameters(path) == 1
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert cells[1]["metadata"]["tags"] == ["injected-parameters", "remove-cell"]
    assert "remove-cell" not in cells[0]["metadata"]["tags"]  # the notebook's own parameters cell stays
    assert cells[2]["metadata"] == {}  # other cells are left as they were
    assert book.hide_injected_parameters(path) == 0  # already tagged: the file is left as it is


# ---------------------------------------------------------------------------------- figure check

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def _page(html_dir: Path, name: str, body: str) -> Chapter:
    page = html_dir / "book" / "generated" / f"{name}.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")
    return Chapter(name, Path("unused"), Path("unused"), f"book/generated/{name}")


def test_check_figures(tmp_path: Path) -> None:
    html = tmp_path / "html"
    (html / "_images").mkdir(parents=True)
    (html / "_images" / "fig%201.png").write_bytes(PNG)
    (html / "_static").mkdir()
    (html / "_static" / "logo.png").write_bytes(PNG)
    good = _page(html, "01_good", '<p>text</p><img alt="x" src="../../_images/fig%25201.png" />')
    data_uri = _page(html, "02_data_uri", '<img src="data:image/png;base64,iVBORw0KGgo=">')
    missing_file = _page(html, "03_missing", '<img src="../../_images/nope.png">')
    logo_only = _page(html, "04_logo", '<img src="../../_static/logo.png"><img src="https://x.org/a.png">')
    no_img = _page(html, "05_text", "<p>only text</p>")
    absent = Chapter("06_absent", Path("u"), Path("u"), "book/generated/06_absent")

    book.check_figures(html, [good, data_uri])
    for bad in (missing_file, logo_only, no_img, absent):
        with pytest.raises(BookError, match=bad.name):
            book.check_figures(html, [good, bad])


def test_a_captioned_figure_counts_as_a_figure(tmp_path: Path) -> None:
    # What myst-nb 1.4 renders for a cell with metadata {"mystnb": {"figure": {"caption": ..., "name": ...}}}
    html = tmp_path / "html"
    (html / "_images").mkdir(parents=True)
    (html / "_images" / "abc.png").write_bytes(PNG)
    captioned = _page(html, "01_captioned", (
        '<div class="cell_output docutils container"><figure class="align-default" id="fig-unet-curves">'
        '<img alt="../../_images/abc.png" src="../../_images/abc.png" /><figcaption><p>'
        '<span class="caption-number">Fig. 1 </span><span class="caption-text">Training curves.</span>'
        '<a class="headerlink" href="#fig-unet-curves" title="Link to this image">#</a></p></figcaption></figure></div>'))
    assert book.page_figures(html / "book" / "generated" / "01_captioned.html", html) == ["../../_images/abc.png"]
    book.check_figures(html, [captioned])


def test_a_figure_name_on_more_or_fewer_than_one_image_is_refused_before_the_render(tmp_path: Path) -> None:
    def chapter(name: str, images: int) -> Chapter:
        output = tmp_path / f"{name}.ipynb"
        cell = {"cell_type": "code", "metadata": {"mystnb": {"figure": {"caption": "c", "name": f"fig-{name}"}}},
                "outputs": [{"output_type": "display_data", "data": {"image/png": "iVBOR"}}] * images}
        plain = {"cell_type": "code", "metadata": {}, "outputs": [{"data": {"image/png": "x"}}] * 2}
        output.write_text(json.dumps({"cells": [cell, plain]}))
        return Chapter(name, Path("unused"), output, f"book/generated/{name}")

    book.check_named_figures([chapter("one", 1)])
    for images in (0, 2):
        with pytest.raises(BookError, match=f"'fig-bad{images}' drew {images} images"):
            book.check_named_figures([chapter("one", 1), chapter(f"bad{images}", images)])


def test_every_named_chapter_figure_is_unique_and_captioned() -> None:
    root = Path(__file__).resolve().parents[1]
    names: list[str] = []
    for path in sorted((root / "notebooks").glob("0*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        own = []
        for cell in cells:
            figure = cell["metadata"].get("mystnb", {}).get("figure")
            if figure is not None:
                assert cell["cell_type"] == "code" and figure.get("caption"), (path.name, cell["id"])
                own += [figure["name"]] if "name" in figure else []
        text = "".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")
        referenced = set(re.findall(r"\{numref\}`([^`<]+)`", text))
        assert referenced <= set(own), f"{path.name} refers to figures it does not name: {referenced - set(own)}"
        names += own
    assert names and len(names) == len(set(names)), "figure names are labels: one per book"
    assert all(name.startswith("fig-") for name in names)


# ----------------------------------------------------------------------------------------- CLI


def test_arguments_and_data_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    book.add_arguments(parser)
    args = parser.parse_args(["--chapter", "01", "--chapter", "02_x", "--force", "--no-html", "--seed", "3"])
    assert args.chapter == ["01", "02_x"] and args.force and args.no_html and args.seed == 3
    assert args.profile == "quick" and args.data is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--profile", "huge"])

    seen: dict[str, object] = {}
    monkeypatch.setattr(book, "build_book", lambda root, **kw: seen.update(kw) or root)
    monkeypatch.setenv("PETSEG_DATA", "/env/pets")
    assert book.run_from_args(parser.parse_args([])) == 0
    assert seen["data"] == "/env/pets" and seen["html"] is True and seen["chapters"] is None
    assert book.run_from_args(parser.parse_args(["--data", "/cli/pets"])) == 0
    assert seen["data"] == "/cli/pets"
    monkeypatch.delenv("PETSEG_DATA")
    assert book.run_from_args(parser.parse_args([])) == 0
    assert seen["data"] is None

    def fail(root: Path, **kw: object) -> Path:
        raise BookError("chapter 01_x failed")

    monkeypatch.setattr(book, "build_book", fail)
    assert book.run_from_args(parser.parse_args([])) == 1


# ---------------------------------------------------------------------------------- end to end

TINY_TOC = """\
format: jb-book
root: book/intro
chapters:
  - file: book/generated/01_alpha
  - file: book/generated/02_beta
  - file: book/references
"""


@pytest.mark.slow
def test_tiny_book_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as bootstrap.sh sets it: the kernel must still show figures
    monkeypatch.delenv("PETSEG_DATA", raising=False)
    root = tmp_path / "tinybook"
    make_book(root, TINY_TOC, {
        "01_alpha": figure_notebook("Alpha", "from pathlib import Path\nPath('cwd.txt').write_text('root')\n"),
        "02_beta": figure_notebook("Beta"),
    })
    html = book.build_book(root, profile="quick", data=str(tmp_path), seed=7, progress=False)

    assert html == root / "_build" / "html"
    assert (root / "cwd.txt").read_text() == "root"  # notebooks run with cwd = book root
    chapters = book.chapters_from_toc(root / "_toc.yml")
    for chapter in chapters:
        assert chapter.stamp.is_file()
        assert book.page_figures(html / f"{chapter.docname}.html", html)
        outputs = "".join("".join(o.get("text", "")) for c in json.loads(chapter.output.read_text())["cells"]
                          for o in c.get("outputs", []))
        scrub = PathScrubber(root, [tmp_path], home=Path.home())  # what strip_build_paths replaced
        assert f"kernel python: {scrub.text(sys.executable)}" in outputs
        assert "params: quick $PETSEG_DATA 7" in outputs  # the data folder's path is not in the download
        assert str(tmp_path.resolve()) not in chapter.output.read_text()
        injected = [c for c in json.loads(chapter.output.read_text())["cells"]
                    if "injected-parameters" in c["metadata"].get("tags", [])]
        assert len(injected) == 1 and "remove-cell" in injected[0]["metadata"]["tags"]
    assert "Parkhi" in (html / "book" / "references.html").read_text()
    times = json.loads((root / "book" / "generated" / "execution_times.json").read_text())
    assert set(times) == {"01_alpha", "02_beta"}
    environment = (root / "book" / "generated" / "environment.md").read_text()  # the appendix's table
    assert "| `01_alpha` |" in environment and "| Python |" in environment

    # Unchanged: nothing is re-executed. A changed notebook re-executes only that chapter.
    results = book.execute_chapters(chapters, root=root, parameters={"profile": "quick",
                                    "data": str(tmp_path.resolve()), "seed": 7}, progress=False)
    assert [r.executed for r in results] == [False, False]
    write_json(chapters[1].source, figure_notebook("Beta, revised"))
    results = book.execute_chapters(chapters, root=root, parameters={"profile": "quick",
                                    "data": str(tmp_path.resolve()), "seed": 7}, progress=False)
    assert [r.executed for r in results] == [False, True]

    # A failing cell fails the build with the chapter name and the error.
    write_json(chapters[1].source, notebook(PARAMS, ("code", "raise ValueError('broken on purpose')", [])))
    with pytest.raises(BookError, match=r"02_beta failed in cell .*ValueError: broken on purpose"):
        book.build_book(root, progress=False)
    assert not chapters[1].stamp.exists()


def test_python_dash_m_petseg_book_runs_with_every_function_defined() -> None:
    """``python -m petseg.book`` used to stop with a NameError: functions defined after the ``__main__`` guard."""
    import ast
    import os
    import subprocess

    source = Path(book.__file__).read_text()
    last = ast.parse(source).body[-1]
    assert isinstance(last, ast.If) and "__main__" in ast.unparse(last.test)
    env = {**os.environ, "PYTHONPATH": str(Path(book.__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-m", "petseg.book", "--help"], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: petseg book" in result.stdout
