"""The book's hand-written pages and static files: the licence page sits in the toc, and Jupyter Book picks up
``_static/custom.css`` (wide tables scroll) without any build."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import yaml

from petseg import book

ROOT = Path(__file__).resolve().parents[1]


def _toc_entries() -> list[str]:
    return list(book._toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))))


def test_the_licence_page_comes_after_the_appendix_and_before_the_references() -> None:
    entries = _toc_entries()
    assert entries.index("book/licence") == entries.index("book/appendix") + 1
    assert entries.index("book/references") == entries.index("book/licence") + 1
    assert all(not c.docname.endswith("licence") for c in book.chapters_from_toc(ROOT / "_toc.yml", ROOT))


def test_the_licence_page_cites_the_dataset_and_includes_files_that_exist() -> None:
    page = ROOT / "book" / "licence.md"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Licences and how to cite\n")
    assert "{cite:p}`parkhi2012cats`" in text and "@inproceedings{parkhi2012cats," in (
        ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in text and "copyright of the images remains with their original" in text
    included = re.findall(r"```\{literalinclude\} (\S+)", text)
    assert sorted(Path(name).name for name in included) == ["CITATION.cff", "LICENSE"]
    assert all((page.parent / name).resolve().is_file() for name in included)


def test_custom_css_is_a_static_file_of_the_book() -> None:
    from jupyter_book.config import get_final_config

    config, _ = get_final_config(user_yaml=ROOT / "_config.yml", cli_config={"latex_individualpages": False},
                                 sourcedir=ROOT)
    assert "_static" in config["html_static_path"]
    assert "custom.css" in config["html_css_files"]
    assert not [p for p in config["exclude_patterns"] if fnmatch.fnmatch("_static/custom.css", p)
                or fnmatch.fnmatch("_static", p)]
    css = (ROOT / "_static" / "custom.css").read_text(encoding="utf-8")
    rule = css[css.index("div.cell_output table.dataframe"):]
    assert "overflow-x: auto" in rule and "display: block" in rule and "max-width: 100%" in rule
