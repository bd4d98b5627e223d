"""Reading checkpoint files with errors a user can act on (:func:`read_checkpoint`)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from petseg.errors import CheckpointError, MissingInputError, one_line


def check_checkpoint_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is a file; MissingInputError if nothing is there, CheckpointError for a folder."""
    path = Path(path)
    if path.is_dir():
        inside = path / "best.pt"
        hint = f" (the run's checkpoint is {inside})" if inside.is_file() else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    if not path.exists():
        raise MissingInputError(f"no checkpoint at {path}")
    return path


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)``; a missing, truncated or foreign file is a one-line
    :class:`~petseg.errors.UserError` naming the file (``hint`` is appended: what to do about it)."""
    import torch

    path = check_checkpoint_path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}{hint}") from error
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, KeyError,
            AttributeError, ImportError, IndexError, TypeError, UnicodeDecodeError) as error:
        reason = one_line(error).split(". ")[0]  # torch's first sentence says it; the rest is advice for others
        reason = reason if len(reason) <= 120 else reason[:117] + "..."
        raise CheckpointError(f"{path} is damaged or not a petseg checkpoint ({type(error).__name__}: "
                              f"{reason}){hint}") from error
