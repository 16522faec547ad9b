"""The one exception family lensarith raises for user mistakes."""

from __future__ import annotations


class LensarithError(ValueError):
    """A user-facing error: names the argument, what was given and what would be valid."""


class ModelNotAvailableError(LensarithError):
    """A model could not be loaded (no network, unknown name, missing directory)."""


class LensarithWarning(UserWarning):
    """Something in the input was not as asked and the result says so (e.g. unknown words in a
    prompt); the batch's ``report`` has the details."""


#: seeds lensarith accepts: torch, numpy and ``random`` take them, with room for the offsets recipes add
SEED_LIMIT = 2 ** 62


def check_seed(value, name: str = "seed") -> int:
    """Raise unless ``value`` is an int torch's generators take, with room for offsets (|seed| <= 2**62)."""
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > SEED_LIMIT:
        what = f"{type(value).__name__} " if not isinstance(value, int) or isinstance(value, bool) else ""
        raise LensarithError(f"{name} must be an int in -2**62..2**62, got {what}{value!r}")
    return value


def check_choice(value, valid, name: str) -> None:
    """Raise unless ``value`` is one of ``valid`` (never a silent default for a typo)."""
    valid = tuple(valid)
    if isinstance(value, bool) or value not in valid:
        raise LensarithError(f"{name} must be one of {', '.join(repr(v) for v in valid)}, got {value!r}")


def check_int(value, name: str, *, minimum: int | None = None, allow_none: bool = False, hint: str = "") -> int | None:
    """Raise unless ``value`` is an int (not a bool, a float or a string) of at least ``minimum``."""
    if value is None and allow_none:
        return None
    kind = {1: "a positive int", 0: "a non-negative int"}.get(minimum, "an int" if minimum is None else f"an int >= {minimum}")
    if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
        what = f"{type(value).__name__} " if not isinstance(value, int) or isinstance(value, bool) else ""
        raise LensarithError(f"{name} must be {'None or ' if allow_none else ''}{kind}{' ' + hint if hint else ''}, "
                             f"got {what}{value!r}")
    return value
