"""Model weights from files: reading checkpoint files with errors a user can act on (:func:`read_checkpoint`),
and loading a model's state from a checkpoint (:func:`load_weights`).

The training state around the weights (optimizer, schedule, RNG) is :mod:`petseg.training.checkpoints`' business;
this module is what a model builder needs (e.g. ``ae_unet`` starting from an autoencoder's checkpoint).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from petseg.errors import CheckpointError, MissingInputError, one_line

if TYPE_CHECKING:
    from torch import nn

__all__ = ["check_checkpoint_path", "load_model_state", "load_weights", "read_checkpoint", "unwrap_model"]


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


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel / DataParallel wrapper (the model itself otherwise)."""
    from torch import nn

    return model.module if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel) else model


def load_model_state(model: nn.Module, state: Mapping[str, Any], strict: bool = True) -> None:
    """Load a state dict into ``model`` (possibly DDP-wrapped); keys saved from a DDP model (``module.``) work too."""
    if any(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    unwrap_model(model).load_state_dict(state, strict=strict)


def load_weights(path: str | os.PathLike, model: nn.Module, map_location: Any = "cpu", strict: bool = True) -> None:
    """Load the model weights of a checkpoint written by training (or of a bare ``state_dict`` file) into ``model``."""
    checkpoint = read_checkpoint(path, map_location=map_location)
    if "model" in checkpoint and isinstance(checkpoint["model"], Mapping):
        checkpoint = checkpoint["model"]
    load_model_state(model, checkpoint, strict)
