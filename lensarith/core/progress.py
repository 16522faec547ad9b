"""Progress bars that appear only where a person is watching and the work takes a while."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 show: bool | None = None, enough: bool = True) -> Any:
    """A ``tqdm`` bar: shown when ``show`` is True; hidden when False; by default (None) shown only
    when there is ``enough`` work and standard error is a terminal. Bars appear after 1 s, so
    sub-second steps never flash one."""
    from tqdm.auto import tqdm

    visible = show if show is not None else (enough and sys.stderr.isatty())
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not visible, leave=False, delay=1.0)
