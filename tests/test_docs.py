"""The documentation site: built strictly, offline, every public name documented, and the pages
render in headless Chromium with no request to another host and no console error.

CI builds the site first (``make docs``, notebooks executed); where ``site/`` is missing the
test builds it here, strictly, with the notebooks rendered from the stored files (no execution)
to keep it short.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from browser import Watched, browser, serve

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

PAGES = ["index.html", "getting-started.html", "reproduction.html", "guides/index.html",
         "guides/adding-a-recipe.html", "guides/which-ffn-writes.html", "guides/patching.html", "cli.html",
         "reference/index.html", "reference/vectors.html", "reference/core.html", "models/organism.html",
         "models/organism-planted.html", "tasks/index.html", "tasks/capitals.html", "benchmarks.html",
         "notebooks/index.html", "notebooks/01_logit_lens_and_decomposition.html"]


def _mkdocs() -> list[str]:
    pytest.importorskip("mkdocs", reason="pip install -e '.[docs]'") if not os.environ.get("CI") else None
    return [sys.executable, "-m", "mkdocs"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    built = ROOT / "site"
    if (built / "index.html").is_file() and not os.environ.get("LENSARITH_DOCS_REBUILD"):
        return built
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "LENSARITH_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([*_mkdocs(), "build", "--strict", "--site-dir", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_every_page_is_there(site):
    for page in PAGES:
        assert (site / page).is_file(), page


def test_no_url_to_another_host_in_the_html(site):
    """No script, stylesheet, font, image or link that would reach another host."""
    attr = re.compile(r"""(?:src|href|action)\s*=\s*["'](?:https?:)?//([^/"']+)""", re.I)
    imports = re.compile(r"""import\(\s*["']https?://""")
    bad = []
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8", errors="replace")
        bad += [f"{html.relative_to(site)}: {h}" for h in attr.findall(text)]
        bad += [f"{html.relative_to(site)}: dynamic import" for _ in imports.findall(text)]
    assert not bad, bad[:10]


def test_every_public_name_has_a_reference_entry(site):
    import importlib

    import lensarith as la

    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks
    finally:
        sys.path.remove(str(ROOT / "docs"))
    names = set(la.__all__)
    for page, _, module in hooks.PACKAGES:
        html = (site / "reference" / f"{page}.html").read_text(encoding="utf-8")
        for name in hooks._public(module):
            ident = hooks._ident(module, name)
            assert f'id="{ident}"' in html, f"{ident} has no entry on reference/{page}.html"
            names.discard(name)
        if module != "lensarith._errors":
            assert set(hooks._public(module)) == set(importlib.import_module(module).__all__)
    assert not names, f"la.__all__ names without a reference entry: {sorted(names)}"
    index = (site / "reference" / "index.html").read_text(encoding="utf-8")
    assert all(f"<code>{n}</code>" in index for n in la.__all__)


def test_included_not_copied(site):
    """The cards and the README are read from the repository when the site is built."""
    assert not (ROOT / "docs" / "index.md").exists() and not (ROOT / "docs" / "models" / "organism.md").exists()
    card = (ROOT / "data" / "organism-planted" / "card.md").read_text(encoding="utf-8")
    heading = re.search(r"^## (.+)$", card, re.M).group(1)
    assert heading.split("(")[0].strip() in (site / "models" / "organism-planted.html").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"^## (.+)$", readme, re.M).group(1)
    assert first.split("`")[0].strip() in (site / "index.html").read_text(encoding="utf-8")


def test_notebook_pages_have_outputs_when_ci_built_them(site):
    """In CI the site is built by ``make docs``, which executes the notebooks in small mode."""
    html = (site / "notebooks" / "01_logit_lens_and_decomposition.html").read_text(encoding="utf-8")
    assert "jp-Cell" in html or "jupyter-wrapper" in html
    if os.environ.get("CI"):
        assert "jp-OutputArea-output" in html and "data:image/png;base64," in html


def test_pages_render_in_chromium_without_external_requests_or_errors(site):
    with serve(site) as base, browser(width=1400) as ctx:
        for path in PAGES:
            page = ctx.new_page()
            w = Watched(page, base)
            page.goto(base + path, wait_until="networkidle")
            h1 = page.locator("article h1, .md-content h1").first
            assert h1.count() and h1.inner_text().strip(), f"{path}: no title rendered"
            assert not w.external(), f"{path}: requests to other hosts: {w.external()[:5]}"
            assert not w.errors, f"{path}: {w.errors[:5]}"
            shots = os.environ.get("LENSARITH_SCREENSHOTS")
            if shots:
                page.screenshot(path=str(Path(shots) / ("site-" + path.replace("/", "-") + ".png")))
            if path.startswith("reference/") and path != "reference/index.html":
                assert page.locator(".doc-object").count() > 0, f"{path}: no API entries rendered"
            page.close()
