"""circuitsvis's JavaScript bundle, made safe to inline in an offline page."""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

from .._errors import LensarithError

__all__ = ["bundle_js", "bundle_script", "find_urls"]

_URL_PATTERN = re.compile(r"https?://|//cdn|unpkg", re.IGNORECASE)


def _bundle_path() -> Path:
    spec = importlib.util.find_spec("circuitsvis")
    if spec is None or not spec.submodule_search_locations:
        raise LensarithError("circuitsvis is not installed: pip install circuitsvis (it ships the JavaScript bundle)")
    for base in spec.submodule_search_locations:
        path = Path(base) / "dist" / "cdn" / "iife.js"
        if path.is_file():
            return path
    raise LensarithError("the installed circuitsvis has no dist/cdn/iife.js bundle; reinstall circuitsvis>=1.43")


@lru_cache(maxsize=1)
def bundle_js() -> str:
    """circuitsvis's browser bundle (defines ``window.CircuitsVis``), safe to inline.

    Changes that keep the code's meaning: ``://`` inside string literals becomes ``:\\/\\/``
    (the same string at run time; the bundle only holds URLs as namespace names and error
    texts), ``</script`` becomes ``<\\/script``, and the ``sourceMappingURL`` comment (a
    fetch by developer tools) is dropped.
    """
    text = _bundle_path().read_text(encoding="utf-8")
    text = re.sub(r"^//# sourceMappingURL=.*$", "", text, flags=re.MULTILINE)
    text = text.replace("://", ":\\/\\/").replace("</script", "<\\/script").replace("<!--", "<\\!--")
    if find_urls(text):
        raise LensarithError(f"could not make the circuitsvis bundle URL-free: {find_urls(text)[:3]}")
    return text


def bundle_script() -> str:
    """The bundle as one ``<script>`` element."""
    return f"<script>{bundle_js()}</script>"


def find_urls(text: str) -> list[str]:
    """External references in ``text`` (``http://``, ``https://``, ``//cdn``, ``unpkg``), with context."""
    return [text[max(0, m.start() - 30): m.end() + 30] for m in _URL_PATTERN.finditer(text)]
