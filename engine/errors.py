"""Error types shared across the engine.

Every error a user can cause derives from ``UserInputError``: its message is written for the user
(friendly, specific, says what to do) and front ends show it verbatim. The CLI exits 2 on it.
"""

from __future__ import annotations

from pathlib import Path


class TexTuneSError(Exception):
    """Base class for all TexTuneS errors."""


class UserInputError(TexTuneSError):
    """Bad input from a user; ``str(err)`` is a friendly message safe to show them."""


def existing_file(path) -> Path:
    """``path`` as a Path when it names a file; else a friendly error saying what it names."""
    file = Path(path)
    if file.is_dir():
        raise UserInputError(f"{file} is a folder. Give one file inside it.")
    if not file.is_file():
        raise UserInputError(f"No such file: {file}. Check the path.")
    return file


class BackendError(TexTuneSError):
    """A generation backend failed (model crash, bad weights, ...)."""


class BackendUnavailable(BackendError):
    """A backend cannot be loaded here (no weights, missing extra, ...)."""
