"""No metric typed by hand into the book's prose: every number a reader compares comes from a code cell.

A decimal number next to a metric word ("SSIM 0.88", "0.69 mIoU", "mIoU >= 0.80", "pet IoU 0.85 / 0.90")
or any ``0.dd`` / ``0.ddd`` number in the Markdown cells of ``notebooks/*.ipynb`` and in ``book/*.md`` was
typed by hand: it cannot follow the build that runs beside it. Such a sentence belongs in
:mod:`petseg.reporting.words` (tested) and is displayed from a code cell. Exempt: inline code spans and
fenced code blocks (code, not claims), and the rows of Markdown tables that list settings (a row without a
metric word, e.g. chapter 8's perturbation levels). Thresholds that define a metric are written as
percentages ("NoC@85", "85 % IoU").

Every notebook and book page is held to this (:data:`CHECKED`); ``python tests/test_chapter_text.py`` lists
the findings of every file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

def _all_book_files() -> list[str]:
    """The files held to the rule: a notebook by its stem (notebooks/<name>.ipynb), a page by its name (book/)."""
    return [path.stem for path in sorted((ROOT / "notebooks").glob("*.ipynb"))] + [
        path.name for path in sorted((ROOT / "book").glob("*.md"))]


CHECKED = _all_book_files()  # every chapter and page: a new one is held to the rule without being listed

METRIC = r"(?:m?IoU|m?Dice|SSIM|PSNR|accuracy|ECE|NoC(?:@\d+)?)"
NUMBER = r"\d*\.\d+"
# What may stand between a metric word and its number: spaces, emphasis, "of", comparisons, colon, bracket.
BETWEEN = r"(?:\s|\*|_|:|=|>|<|≥|≤|~|\(|\bof\b){0,8}"
METRIC_THEN_NUMBER = re.compile(rf"\b{METRIC}\b{BETWEEN}(?<![\w.]){NUMBER}(?![\w.]*\d)", re.IGNORECASE)
NUMBER_THEN_METRIC = re.compile(rf"(?<![\w.]){NUMBER}(?:\s|\*|_|\)){{0,4}}\b{METRIC}\b", re.IGNORECASE)
SMALL_DECIMAL = re.compile(r"(?<![\w.])0\.\d{2,3}(?![\w.]*\d)")
METRIC_WORD = re.compile(rf"\b{METRIC}\b", re.IGNORECASE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)


def prose(markdown: str) -> str:
    """``markdown`` with what is not prose blanked out: fenced blocks, inline code spans and the rows of a
    table that name no metric (settings). Line breaks stay, so a number and its metric on two lines meet."""
    text = CODE_SPAN.sub(" ", FENCE.sub(" ", markdown))
    return "\n".join("" if line.lstrip().startswith("|") and not METRIC_WORD.search(line) else line
                     for line in text.splitlines())


def hand_typed_metrics(markdown: str) -> list[str]:
    """Every hand-typed decimal metric of ``markdown``, as the text found (whitespace collapsed)."""
    text = prose(markdown)
    spans: list[tuple[int, int]] = []
    for pattern in (METRIC_THEN_NUMBER, NUMBER_THEN_METRIC, SMALL_DECIMAL):
        for match in pattern.finditer(text):
            if not any(start < match.end() and match.start() < end for start, end in spans):
                spans.append(match.span())
    return [" ".join(text[start:end].split()) for start, end in sorted(spans)]


def markdown_cells(path: Path) -> list[tuple[str, str]]:
    """``(where, text)``: each Markdown cell of a notebook (``cell <index>``), or the whole of a page."""
    if path.suffix == ".md":
        return [("page", path.read_text(encoding="utf-8"))]
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(f"cell {index}", "".join(cell["source"])) for index, cell in enumerate(cells)
            if cell["cell_type"] == "markdown"]


def book_files() -> dict[str, Path]:
    """Every file the rule can apply to, by the name :data:`CHECKED` uses."""
    files = {path.stem: path for path in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    files.update({path.name: path for path in sorted((ROOT / "book").glob("*.md"))})
    return files


def findings(path: Path) -> list[str]:
    """``"<file>, <cell>: <text>"`` for every hand-typed decimal metric of ``path``."""
    name = path.relative_to(ROOT)
    return [f"{name}, {where}: {text!r}" for where, markdown in markdown_cells(path)
            for text in hand_typed_metrics(markdown)]


@pytest.mark.parametrize("name", CHECKED)
def test_no_decimal_metric_is_typed_by_hand(name: str) -> None:
    path = book_files().get(name)
    assert path is not None, f"{name} is in CHECKED but is neither notebooks/{name}.ipynb nor book/{name}"
    problems = findings(path)
    assert not problems, ("hand-typed decimal metrics (build the sentence in petseg/reporting/words.py and "
                          "display it from a code cell):\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("text", [
    "good reconstructions (SSIM 0.88), cat Dice 0.00",
    "The study's UNet reached 0.69 mIoU on the full dataset",
    "The study's UNet reached 0.69\nmIoU on the full dataset",
    "The target is **mIoU >= 0.80 on this test split**",
    "clicks needed to reach pet IoU 0.85 / 0.90",
    "a mIoU of 0.7 at best",
    "**0.726** mIoU",
    "PSNR 28.2 dB",
    "it scores about 0.67 plain accuracy",
    "Dice = .5",
    "a drop of 0.05 in the end",
    "| UNet | 0.69 | 0.75 |\n|---|---|---|\n| mIoU | 0.69 | x |",
])
def test_hand_typed_metrics_are_found(text: str) -> None:
    assert hand_typed_metrics(text)


def test_what_is_found_is_the_number_and_its_metric() -> None:
    assert hand_typed_metrics("reached SSIM 0.88 and PSNR 28.2, cat Dice **0.00**.") == [
        "SSIM 0.88", "PSNR 28.2", "Dice **0.00"]
    assert hand_typed_metrics("reach pet IoU 0.85 / 0.90 (lower is better)") == ["IoU 0.85", "0.90"]


@pytest.mark.parametrize("text", [
    "`LeakyReLU(0.01)` lets a small gradient through",
    "```python\nmiou = 0.69\n```",
    "| contrast decrease | every value x 1.00, 0.95, 0.90, 0.85 |",
    "NoC is the number of clicks needed to reach 85 % and 90 % pet IoU (NoC@85, NoC@90)",
    "SAM 2.1 checkpoints, numpy 2.4, 20.6 M parameters, a confidence of exactly 1.0",
    "the mIoU of this build, computed below",
    "sigma 0, 2, ..., 18 grey levels; 90 % sure",
])
def test_code_settings_and_whole_numbers_are_not_metrics(text: str) -> None:
    assert hand_typed_metrics(text) == []


def test_every_checked_name_is_a_file_of_the_book() -> None:
    assert sorted(set(CHECKED) - set(book_files())) == []
    assert len(CHECKED) == len(set(CHECKED))


if __name__ == "__main__":  # the findings of every file, checked or not
    for file_name, file_path in book_files().items():
        lines = findings(file_path)
        state = "checked" if file_name in CHECKED else "not checked"
        print(f"{file_name} ({state}): {len(lines)} finding(s)" + "".join(f"\n  {line}" for line in lines))
