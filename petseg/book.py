"""Build the petseg book: execute the chapter notebooks with papermill, then render them with Jupyter Book.

The chapter list comes from ``_toc.yml``: every entry under ``book/generated/`` is a chapter whose source is
``notebooks/<same name>.ipynb``. Each chapter is executed (parameters ``profile``, ``data``, ``seed``; cwd =
repository root; kernel = the ``python3`` kernel of *this* interpreter) into ``book/generated/<name>.ipynb``.
A JSON stamp beside the output records what was executed, so an unchanged chapter (same notebook,
parameters and petseg sources) is not executed again. Jupyter Book then only renders those outputs
(``execute_notebooks: "off"``) with warnings as errors, and :func:`check_figures` verifies that every
chapter page shows at least one figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from petseg.notebook_paths import strip_build_paths
from petseg.paths import repository_root
from petseg.profiles import PROFILES

GENERATED_DIR = "book/generated"
NOTEBOOK_DIR = "notebooks"
TIMES_FILE = "execution_times.json"
STAMP_SUFFIX = ".stamp.json"
STAMP_VERSION = 1
KERNEL_NAME = "python3"

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
# Sources whose change invalidates every executed chapter (relative to the repository root).
PACKAGE_GLOBS = ("petseg/**/*.py", "petseg/configs/**/*", "configs/**/*")
_JUPYTER_BOOK_MAIN = "import sys; from jupyter_book.cli.main import main; sys.exit(main())"


class BookError(RuntimeError):
    """A chapter failed to execute, the HTML build failed, or a page lacks a figure."""


@dataclass(frozen=True)
class Chapter:
    """One executed chapter: its name, source notebook and papermill output (absolute paths)."""

    name: str
    source: Path
    output: Path
    docname: str  # the ``_toc.yml`` entry, e.g. ``book/generated/01_data``

    @property
    def stamp(self) -> Path:
        return self.output.with_name(self.output.stem + STAMP_SUFFIX)


@dataclass(frozen=True)
class ChapterResult:
    """What :func:`execute_chapter` did for one chapter."""

    chapter: Chapter
    executed: bool
    seconds: float | None  # execution time (of the last execution if skipped)


# --------------------------------------------------------------------------------------------- toc


def _toc_files(node: Any) -> Iterator[str]:
    """All ``file``/``root`` entries of a ``_toc.yml`` tree, in reading order."""
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for key in ("parts", "chapters", "sections", "entries", "subtrees"):
            if key in node:
                yield from _toc_files(node[key])
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def chapters_from_toc(toc_path: Path | str, root: Path | str | None = None) -> list[Chapter]:
    """The executed chapters listed in ``_toc.yml`` (entries under ``book/generated/``), in toc order."""
    toc_path = Path(toc_path)
    root = Path(root) if root is not None else toc_path.parent
    root = root.resolve()
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8")) or {}
    chapters: list[Chapter] = []
    seen: set[str] = set()
    prefix = GENERATED_DIR + "/"
    for entry in _toc_files(toc):
        docname = entry.strip().lstrip("./")
        for suffix in (".ipynb", ".md"):
            docname = docname.removesuffix(suffix)
        if not docname.startswith(prefix) or docname in seen:
            continue
        seen.add(docname)
        rel = docname[len(prefix):]
        chapters.append(Chapter(name=rel, source=root / NOTEBOOK_DIR / f"{rel}.ipynb",
                                output=root / GENERATED_DIR / f"{rel}.ipynb", docname=docname))
    return chapters


def select_chapters(chapters: Sequence[Chapter], names: Iterable[str] | None) -> list[Chapter]:
    """The chapters named in ``names`` (exact name or unique prefix, e.g. ``01``); all if ``names`` is None."""
    if names is None:
        return list(chapters)
    selected: list[Chapter] = []
    available = ", ".join(c.name for c in chapters) or "none"
    for name in names:
        exact = [c for c in chapters if c.name == name]
        matches = exact or [c for c in chapters if c.name.startswith(name)]
        if len(matches) != 1:
            problem = "is ambiguous" if matches else "is not in _toc.yml"
            raise BookError(f"chapter {name!r} {problem} (chapters: {available})")
        if matches[0] not in selected:
            selected.append(matches[0])
    return selected


# --------------------------------------------------------------------------------------- stamps


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_digest(root: Path | str) -> str:
    """Hash of the petseg sources and configs (``petseg/**/*.py``, ``configs/**``) under ``root``."""
    root = Path(root)
    files: set[Path] = set()
    for pattern in PACKAGE_GLOBS:
        files.update(p for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(_sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def stamp_key(chapter: Chapter, parameters: dict[str, Any], package: str) -> dict[str, Any]:
    """Everything that decides a chapter's output: notebook, parameters and package sources."""
    return {
        "version": STAMP_VERSION,
        "notebook": _sha256_file(chapter.source),
        "parameters": parameters,
        # data=None makes the notebook read PETSEG_DATA itself, so the variable is part of the input.
        "env_PETSEG_DATA": os.environ.get("PETSEG_DATA") if parameters.get("data") is None else None,
        "package": package,
    }


def read_stamp(chapter: Chapter) -> dict[str, Any] | None:
    """The chapter's stamp, or None if there is none (or it is unreadable)."""
    try:
        stamp = json.loads(chapter.stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_up_to_date(chapter: Chapter, key: dict[str, Any]) -> bool:
    """True if the chapter's output exists and was produced from exactly ``key``."""
    stamp = read_stamp(chapter)
    return chapter.output.is_file() and stamp is not None and stamp.get("key") == json.loads(json.dumps(key))


def write_stamp(chapter: Chapter, key: dict[str, Any], seconds: float) -> None:
    """Record a successful execution of ``chapter`` from ``key``."""
    stamp = {"key": key, "seconds": round(seconds, 3), "finished": _now()}
    chapter.stamp.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------- execution


def _kernel_manager_class() -> type:
    """A kernel manager whose ``python3`` kernel is always this interpreter (never another env's).

    A ``python3`` kernelspec installed elsewhere (e.g. ``~/.local/share/jupyter/kernels``) would otherwise
    take precedence. The kernel also gets the inline matplotlib backend, so figures become cell outputs
    even when ``MPLBACKEND=Agg`` is set (as ``bootstrap.sh`` does).
    """
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPythonKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str):  # type: ignore[override]
            if kernel_name != KERNEL_NAME:
                raise NoSuchKernel(kernel_name)
            spec = self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
            spec.env = {**spec.env, "MPLBACKEND": INLINE_BACKEND}
            return spec

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return ThisPythonKernelSpecManager(data_dir=self.data_dir)

    return ThisPythonKernelManager


def _has_parameters_cell(path: Path) -> bool:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return any("parameters" in cell.get("metadata", {}).get("tags", []) for cell in nb.get("cells", []))


def hide_injected_parameters(path: Path | str) -> int:
    """Tag papermill's ``injected-parameters`` cells of the executed notebook ``path`` ``remove-cell``.

    The injected cell repeats the parameters with this build's values (the dataset's absolute path among
    them); Jupyter Book drops a ``remove-cell`` cell, so a page shows the notebook's own parameters cell
    only. Returns the number of cells tagged (0 leaves the file untouched)."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    tagged = 0
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            tagged += 1
    if tagged:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return tagged


def execute_chapter(chapter: Chapter, *, root: Path | str, parameters: dict[str, Any],
                    package: str | None = None, force: bool = False, progress: bool = True) -> ChapterResult:
    """Execute one chapter notebook with papermill unless its stamp says it is up to date."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = Path(root).resolve()
    if not chapter.source.is_file():
        raise BookError(f"chapter {chapter.name}: source notebook {chapter.source} does not exist")
    if not _has_parameters_cell(chapter.source):
        raise BookError(f"chapter {chapter.name}: {chapter.source} has no cell tagged 'parameters'")
    key = stamp_key(chapter, parameters, package if package is not None else package_digest(root))
    if not force and is_up_to_date(chapter, key):
        previous = read_stamp(chapter) or {}
        _say(f"{chapter.name}: up to date, not re-executed (use --force to re-execute)")
        return ChapterResult(chapter, executed=False, seconds=previous.get("seconds"))

    chapter.output.parent.mkdir(parents=True, exist_ok=True)
    chapter.stamp.unlink(missing_ok=True)
    _say(f"{chapter.name}: executing {_display_path(chapter.source, root)} with {parameters}")
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(chapter.source), str(chapter.output), parameters=parameters, kernel_name=KERNEL_NAME,
            cwd=str(root), progress_bar=progress, log_output=False, request_save_on_cell_execute=True,
            kernel_manager_class=_kernel_manager_class(),
        )
    except PapermillExecutionError as err:
        raise BookError(
            f"chapter {chapter.name} failed in cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {err.evalue}\n  the executed notebook with the traceback: {chapter.output}"
        ) from err
    except Exception as err:  # dead kernel, timeouts, invalid notebooks, ...
        raise BookError(f"chapter {chapter.name} could not be executed: {type(err).__name__}: {err}") from err
    seconds = time.perf_counter() - start
    hide_injected_parameters(chapter.output)
    # The notebook is offered for download: no path of this machine (repository, data, home) in it.
    strip_build_paths(chapter.output, root, [parameters.get("data"), os.environ.get("PETSEG_DATA")])
    write_stamp(chapter, key, seconds)
    _say(f"{chapter.name}: done in {seconds:.1f} s")
    return ChapterResult(chapter, executed=True, seconds=seconds)


def execute_chapters(chapters: Sequence[Chapter], *, root: Path | str, parameters: dict[str, Any],
                     force: bool = False, progress: bool = True) -> list[ChapterResult]:
    """Execute the chapters in order and record their times in ``book/generated/execution_times.json``."""
    root = Path(root).resolve()
    package = package_digest(root)
    results: list[ChapterResult] = []
    try:
        for chapter in chapters:
            results.append(execute_chapter(chapter, root=root, parameters=parameters, package=package,
                                           force=force, progress=progress))
    finally:
        record_times(root / GENERATED_DIR / TIMES_FILE, [r for r in results if r.executed], parameters)
    return results


def record_times(path: Path, results: Sequence[ChapterResult], parameters: dict[str, Any]) -> None:
    """Merge the executed chapters' times into the JSON file at ``path`` (chapter name -> record)."""
    if not results:
        return
    try:
        times = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        times = {}
    host = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    for result in results:
        times[result.chapter.name] = {
            "seconds": round(result.seconds or 0.0, 3), "profile": parameters.get("profile"),
            "seed": parameters.get("seed"), "finished": _now(), "host": host,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(times.items())), indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------- HTML


def build_html(root: Path | str, warnings_as_errors: bool = True) -> Path:
    """Render the book with ``jupyter-book build`` (``-W -n --keep-going --all``); return the HTML dir."""
    root = Path(root).resolve()
    cmd = [sys.executable, "-c", _JUPYTER_BOOK_MAIN, "build", str(root), "--builder", "html", "--all"]
    if warnings_as_errors:
        cmd += ["-W", "-n", "--keep-going"]
    _say("rendering the book with jupyter-book" + (" (warnings are errors)" if warnings_as_errors else ""))
    result = subprocess.run(cmd, cwd=root)
    html_dir = root / "_build" / "html"
    if result.returncode != 0:
        raise BookError(f"jupyter-book build failed (exit code {result.returncode}); see its warnings above")
    if not (html_dir / "index.html").is_file():
        raise BookError(f"jupyter-book build produced no {html_dir / 'index.html'}")
    return html_dir


class _ImageSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            src = dict(attrs).get("src")
            if src:
                self.sources.append(src)


def page_figures(page: Path, html_dir: Path) -> list[str]:
    """The ``<img>`` sources of ``page`` that are data URIs or existing files under ``html_dir/_images``."""
    parser = _ImageSources()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    images_dir = (html_dir / "_images").resolve()
    found = []
    for src in parser.sources:
        if src.startswith("data:image/"):
            found.append(src)
            continue
        parts = urlsplit(src)
        if parts.scheme or parts.netloc or not parts.path:
            continue
        target = (page.parent / unquote(parts.path)).resolve()
        if target.is_file() and target.is_relative_to(images_dir):
            found.append(src)
    return found


def check_figures(html_dir: Path | str, chapters: Sequence[Chapter]) -> None:
    """Raise :class:`BookError` naming every chapter whose HTML page has no figure."""
    html_dir = Path(html_dir)
    problems = []
    for chapter in chapters:
        page = html_dir / f"{chapter.docname}.html"
        if not page.is_file():
            problems.append(f"{chapter.name}: no HTML page {page}")
        elif not page_figures(page, html_dir):
            problems.append(f"{chapter.name}: {page} contains no figure (an <img> from _images or a data URI)")
    if problems:
        raise BookError("figure check failed:\n  " + "\n  ".join(problems))


def check_named_figures(chapters: Sequence[Chapter]) -> None:
    """Raise :class:`BookError` for every executed cell whose figure *name* (``mystnb.figure.name``) sits on a
    number of images other than one: myst-nb gives each image the name, a duplicate target under ``-W``."""
    problems = []
    for chapter in chapters:
        for cell in json.loads(chapter.output.read_text()).get("cells", []):
            name = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name")
            if not name:
                continue
            images = sum(1 for output in cell.get("outputs", []) if "image/png" in output.get("data", {}))
            if images != 1:
                problems.append(f"{chapter.name}: the figure named {name!r} drew {images} images; a name needs "
                                f"exactly one (keep the caption, drop the name)")
    if problems:
        raise BookError("figure names:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------------------- driver


def build_book(root: Path, profile: str = "quick", data: str | None = None, seed: int = 0, force: bool = False,
               chapters: list[str] | None = None, html: bool = True, progress: bool = True) -> Path:
    """Execute the (selected) chapters, render the book and check its figures; return the HTML dir.

    ``chapters`` restricts which chapters are (re-)executed; the HTML build still needs every chapter's
    output, so a chapter that was never executed must be executed first.
    """
    root = Path(root).resolve()
    if profile not in PROFILES:
        raise BookError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    if data is not None:
        data = str(Path(data).expanduser().resolve())
    all_chapters = chapters_from_toc(root / "_toc.yml", root)
    selected = select_chapters(all_chapters, chapters)
    parameters = {"profile": profile, "data": data, "seed": int(seed)}
    start = time.perf_counter()
    os.environ.setdefault("PETSEG_PROGRESS", "0")  # no progress bars or training plans in the rendered pages
    execute_chapters(selected, root=root, parameters=parameters, force=force, progress=progress)
    write_environment_note(root)
    html_dir = root / "_build" / "html"
    if not html:
        return html_dir
    missing = [c.name for c in all_chapters if not c.output.is_file()]
    if missing:
        raise BookError(f"chapters never executed: {', '.join(missing)} (run without --chapter, or add them)")
    check_named_figures(all_chapters)
    html_dir = build_html(root)
    check_figures(html_dir, all_chapters)
    _say(f"book built in {time.perf_counter() - start:.1f} s: {html_dir / 'index.html'}")
    return html_dir


def _display_path(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def default_root() -> Path:
    """The book's root: the current directory if it has ``_toc.yml``, else the checkout the current directory is
    in (a chapter opened from ``notebooks/``), else the checkout holding petseg."""
    cwd = Path.cwd()
    if (cwd / "_toc.yml").is_file():
        return cwd
    return repository_root(cwd) or Path(__file__).resolve().parent.parent


def _say(message: str) -> None:
    print(f"[petseg book] {message}", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``petseg book`` options to ``parser``."""
    parser.add_argument("--profile", choices=PROFILES, default="quick",
                        help="quick (minutes on a laptop CPU, the CI build), standard (the CPU reference settings, hours) "
                             "or full (the study's 512 px settings, on a GPU)")
    parser.add_argument("--data", default=None,
                        help="Oxford-IIIT Pet directory (default: $PETSEG_DATA, else the notebooks decide)")
    parser.add_argument("--seed", type=int, default=0, help="random seed passed to every chapter")
    parser.add_argument("--force", action="store_true", help="re-execute chapters even if up to date")
    parser.add_argument("--chapter", action="append", default=None, metavar="NAME",
                        help="only (re-)execute this chapter, e.g. 01_data or 01 (repeatable)")
    parser.add_argument("--no-html", action="store_true", help="execute the notebooks but do not render HTML")
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``petseg book`` from parsed arguments; return the exit code."""
    root = getattr(args, "root", None) or default_root()
    data = args.data if args.data is not None else os.environ.get("PETSEG_DATA") or None
    try:
        build_book(Path(root), profile=args.profile, data=data, seed=args.seed, force=args.force,
                   chapters=args.chapter, html=not args.no_html)
    except BookError as err:
        print(f"[petseg book] error: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m petseg.book`` (the same as ``petseg book``)."""
    parser = argparse.ArgumentParser(prog="petseg book", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))



DATA_NOTE = "data_used.md"


def write_environment_note(root: Path | str) -> Path:
    """Write ``book/generated/environment.md`` (each chapter's execution time from ``execution_times.json``,
    and the Python, packages, hardware and git commit of this build), which ``book/appendix.md`` includes."""
    from petseg.reporting.tables import write_environment_page

    return write_environment_page(root, TIMES_FILE)


def write_data_note(text: str, root: Path | str | None = None) -> Path:
    """Write the paragraph that the introduction includes about the data this build used.

    Chapter 1 calls it; ``book/intro.md`` includes ``book/generated/data_used.md``.
    """
    folder = Path(root or default_root()) / GENERATED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DATA_NOTE
    path.write_text(text.rstrip() + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
