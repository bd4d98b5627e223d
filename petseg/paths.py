"""Where a checkout's default outputs go: :func:`repository_root` finds the checkout the current directory is in,
so a notebook opened from ``notebooks/`` in JupyterLab writes and reuses the same ``runs/`` and
``book/generated/`` as ``petseg book`` run from the repository root; and where a checkout keeps the committed
results of recorded runs (:data:`RECORDED_RUNS_DIR`, the one definition of that folder)."""

from __future__ import annotations

from pathlib import Path

MARKERS = ("_toc.yml", "pyproject.toml")


def repository_root(start: Path | str | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current directory) holding both ``_toc.yml`` and
    ``pyproject.toml`` (a petseg checkout), or None outside a checkout."""
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if all((folder / marker).is_file() for marker in MARKERS):
            return folder
    return None


# The committed results of recorded runs (``petseg record``, :mod:`petseg.reporting.recorded`; small JSON and CSV
# files, no weights), relative to a checkout's root. The folder keeps its historical name.
RECORDED_RUNS_DIR = "book/reference_run"


def recorded_runs_dir(root: Path | str | None = None) -> Path:
    """:data:`RECORDED_RUNS_DIR` in the checkout ``root`` (default: the checkout petseg is imported from)."""
    return Path(root if root is not None else Path(__file__).resolve().parent.parent) / RECORDED_RUNS_DIR
