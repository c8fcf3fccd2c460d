"""Error types shared across the engine.

Every error a user can cause derives from ``UserInputError``: its message is written for the user
(friendly, specific, says what to do) and front ends show it verbatim. The CLI exits 2 on it.
"""

from __future__ import annotations


class TexTuneSError(Exception):
    """Base class for all TexTuneS errors."""


class UserInputError(TexTuneSError):
    """Bad input from a user; ``str(err)`` is a friendly message safe to show them."""


class BackendError(TexTuneSError):
    """A generation backend failed (model crash, bad weights, ...)."""


class BackendUnavailable(BackendError):
    """A backend cannot be loaded here (no weights, missing extra, ...)."""
