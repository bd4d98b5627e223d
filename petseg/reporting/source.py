"""The library's own source, shown in a chapter: ``show_source(obj)`` pulls the code the chapter teaches from
the installed modules, so the book never shows a copy that has drifted from what ran.

The caption names the object and its file relative to the repository (``petseg/models/unet.py``), never an
absolute path of the machine that built the book.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import petseg

__all__ = ["qualified_name", "show_source", "source_file", "source_markdown"]

_PACKAGE_PARENT = Path(petseg.__file__).resolve().parent.parent


def source_file(obj: Any) -> str:
    """The file defining ``obj``: relative to the repository for petseg's own code (``petseg/models/unet.py``),
    else the module's dotted name (no machine path either way)."""
    obj = _target(obj)
    try:
        path = Path(inspect.getsourcefile(obj) or "").resolve()
        return path.relative_to(_PACKAGE_PARENT).as_posix()
    except (TypeError, ValueError):
        module = inspect.getmodule(obj)
        return module.__name__ if module is not None else "<unknown>"


def _target(obj: Any) -> Any:
    """What holds the code: a property's getter, a decorated function's original (``@torch.no_grad()``)."""
    if isinstance(obj, property) and obj.fget is not None:
        obj = obj.fget
    return inspect.unwrap(obj) if callable(obj) else obj


def qualified_name(obj: Any) -> str:
    """``UNetEncoder.forward`` for a method, ``UNetEncoder`` for a class, ``soft_dice_loss`` for a function."""
    obj = _target(obj)
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))


def source_markdown(obj: Any, caption: str | None = None) -> str:
    """The Markdown ``show_source`` displays: a caption line naming the object and its file, then a fenced
    ``python`` block of its dedented source."""
    target = _target(obj)
    code = textwrap.dedent(inspect.getsource(target)).rstrip("\n")
    fence = "````" if "```" in code else "```"
    line = f"`{source_file(target)}`: `{qualified_name(target)}`"
    if caption:
        line += f" — {caption}"
    return f"{line}\n\n{fence}python\n{code}\n{fence}\n"


def show_source(obj: Any, caption: str | None = None) -> Any:
    """An IPython ``Markdown`` object showing ``obj``'s source (a module, class, function or method), captioned
    with its repository-relative file; the last expression of a cell, it renders in the book and in JupyterLab."""
    from IPython.display import Markdown

    return Markdown(source_markdown(obj, caption))
