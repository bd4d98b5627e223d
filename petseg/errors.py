"""The error type for user mistakes: a bad path, setting, override, checkpoint or device.

Code that checks what a user asked for raises :class:`UserError` (or one of its subclasses) with a message
that says what is wrong with which input and, where there is one, how to go on. The ``petseg`` command
prints such an error as one line (``petseg: ...``) with exit status 1; ``PETSEG_DEBUG=1`` shows the
traceback as well. Every other exception is a bug and keeps its traceback.

The subclasses also derive from the built-in exception the same check raised before (``ValueError`` for
settings, ``FileNotFoundError`` for missing inputs), so code that catches those keeps working.
"""

from __future__ import annotations

DEBUG_ENV = "PETSEG_DEBUG"


class UserError(Exception):
    """A mistake in what the user asked for; its message is one line that says what to change."""


class ConfigError(UserError, ValueError):
    """An invalid setting: an unknown section or key, a wrong type, a value out of range, a bad device."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a command needs) is not there."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be read: truncated, not a checkpoint, or a folder."""


def one_line(error: BaseException | str) -> str:
    """The message of ``error`` on one line (newlines and runs of spaces folded)."""
    return " ".join(str(error).split())
