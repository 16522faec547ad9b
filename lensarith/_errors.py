"""The one exception family lensarith raises for user mistakes."""

from __future__ import annotations


class LensarithError(ValueError):
    """A user-facing error: names the argument, what was given and what would be valid."""


class ModelNotAvailableError(LensarithError):
    """A model could not be loaded (no network, unknown name, missing directory)."""
