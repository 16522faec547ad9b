"""Headless Chromium for the tests that look at pages (the docs site, the reports).

Chromium is the Debian package (``apt-get install chromium``; .ci/run installs it), driven by
playwright-python (the ``docs`` extra) with ``executable_path``: nothing is downloaded. Pages are
served from a local HTTP server on 127.0.0.1, and every request the page makes is recorded, so a
test can assert that none went to another host and that the console stayed free of errors.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = os.environ.get("LENSARITH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def need_browser():
    """playwright's sync API; in CI a missing browser or driver fails, elsewhere the test is skipped."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"chromium ({CHROMIUM}; Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright (pip install -e '.[docs]')")
        sync_playwright = None
    if missing:
        if os.environ.get("CI"):
            pytest.fail("the browser checks need " + " and ".join(missing))
        pytest.skip("needs " + " and ".join(missing))
    return sync_playwright


@contextmanager
def serve(folder: Path):
    """A local HTTP server for ``folder``; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102
        pass

    def do_GET(self) -> None:  # noqa: D102
        if self.path == "/favicon.ico" and not (Path(self.directory) / "favicon.ico").exists():
            self.send_response(204)  # the browser asks for one on its own; a page without one is not broken
            self.end_headers()
            return
        super().do_GET()


class Watched:
    """A page whose requests, console errors and page errors are recorded."""

    def __init__(self, page, base: str) -> None:
        self.page = page
        self.base = base
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def external(self) -> list[str]:
        """Requests to any host but the local server (data:, blob: and about: URLs fetch nothing)."""
        own = urlparse(self.base).netloc
        return [u for u in self.requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
                and urlparse(u).netloc != own]


@contextmanager
def browser(width: int = 1400, height: int = 1000):
    """A headless Chromium context with a ``width`` x ``height`` viewport."""
    sync_playwright = need_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b.new_context(viewport={"width": width, "height": height})
        finally:
            b.close()
