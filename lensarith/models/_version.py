"""The installed TransformerLens version (``transformer_lens`` itself is not imported: on 4.x,
``hasattr(transformer_lens, "HookedTransformer")`` raises)."""

from __future__ import annotations

from functools import cache

__all__ = ["tl_version", "tl_major"]


@cache
def tl_version() -> str:
    """``"3.9"``, ``"4.3"``: major.minor of the installed ``transformer-lens``."""
    from importlib.metadata import version

    return ".".join(version("transformer-lens").split(".")[:2])


def tl_major() -> int:
    return int(tl_version().split(".")[0])
