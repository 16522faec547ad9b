"""The one exception family lensarith raises for user mistakes."""

from __future__ import annotations


class LensarithError(ValueError):
    """A user-facing error: names the argument, what was given and what would be valid."""


class ModelNotAvailableError(LensarithError):
    """A model could not be loaded (no network, unknown name, missing directory)."""


def check_choice(value, valid, name: str) -> None:
    """Raise unless ``value`` is one of ``valid`` (never a silent default for a typo)."""
    if isinstance(value, bool) or value not in tuple(valid):
        raise LensarithError(f"{name} must be one of {', '.join(repr(v) for v in valid)}, got {value!r}")
