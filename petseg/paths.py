"""Where a checkout's default outputs go: :func:`repository_root` finds the checkout the current directory is in,
so a notebook opened from ``notebooks/`` in JupyterLab writes and reuses the same ``runs/`` and
``book/generated/`` as ``petseg book`` run from the repository root."""

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
