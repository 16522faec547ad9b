"""One self-contained HTML report: text, tables, PNG figures and circuitsvis widgets.

Figures are embedded as ``data:`` URIs, circuitsvis's JavaScript bundle is inlined once
(only when a widget needs it), and nothing on the page refers to another site: the
report opens offline, and ``Report.html()`` raises if a URL slipped in.
"""

from __future__ import annotations

import base64
import html as _html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import LensarithError
from .._io import atomic_write_text
from ._bundle import bundle_script, find_urls

__all__ = ["Report", "html_table"]

_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1400px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:24px}h2{font-size:19px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px}p,li{line-height:1.45}.lensarith-title{font-weight:600;margin:10px 0 4px}
table.lensarith-data{border-collapse:collapse;font-size:13px;margin:8px 0}
table.lensarith-data td,table.lensarith-data th{border:1px solid #ddd;padding:3px 8px;text-align:right}
table.lensarith-data th{background:#f4f4f4}table.lensarith-data td:first-child{text-align:left}
img.lensarith-fig{max-width:100%;height:auto;border:1px solid #eee;margin:6px 0;cursor:zoom-in}
.lensarith-row{display:flex;gap:12px}.lensarith-row>figure{flex:1 1 0;min-width:0;margin:8px 0}
.lensarith-zoom{position:fixed;inset:0;z-index:1000;background:rgba(255,255,255,.97);overflow:auto;cursor:zoom-out}
.lensarith-zoom img{display:block;margin:0 auto;max-width:none;width:auto}
.lensarith-tabs input{position:absolute;opacity:0}.lensarith-tabs label{display:inline-block;padding:4px 12px;
border:1px solid #ccc;border-bottom:none;cursor:pointer;background:#f4f4f4;margin-right:2px}
.lensarith-tabs input:checked+label{background:#fff;font-weight:600}.lensarith-tab{display:none;border-top:1px solid #ccc}
.lensarith-caveats li{margin:4px 0}
.lensarith-note{color:#555;font-size:13px}code{background:#f4f4f4;padding:0 3px}
nav a{margin-right:10px}
"""

#: a click on a figure opens it at its native size over the page; a click (or Escape) closes it
_ZOOM_JS = """<script>
function lensarithZoom(img){var d=document.createElement('div');d.className='lensarith-zoom';
var big=document.createElement('img');big.src=img.src;big.alt=img.alt;d.appendChild(big);
d.onclick=function(){d.remove()};document.body.appendChild(d)}
document.addEventListener('keydown',function(e){if(e.key==='Escape'){document.querySelectorAll('.lensarith-zoom')
.forEach(function(d){d.remove()})}});
</script>"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"
    if value is None:
        return "–"
    return str(value)


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain HTML table from a list of dicts (first row's keys by default)."""
    if not rows:
        return "<p class='lensarith-note'>(no rows)</p>"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table class='lensarith-data'><tr>{head}</tr>{body}</table>"


def _figure_html(figure: str | os.PathLike[str] | bytes, caption: str = "") -> str:
    data = figure if isinstance(figure, bytes) else Path(figure).read_bytes()
    b64 = base64.b64encode(data).decode("ascii")
    cap = f"<figcaption class='lensarith-note'>{_html.escape(caption)}</figcaption>" if caption else ""
    return (f"<figure style='margin:8px 0'><img class='lensarith-fig' alt='{_html.escape(caption)}' "
            f"title='click to open at full size' onclick='lensarithZoom(this)' "
            f"src='data:image/png;base64,{b64}'/>{cap}</figure>")


class Report:
    """Build a report section by section, then ``save(path)`` (atomic).

    Example:
        >>> r = Report("demo").add_text("hello")
        >>> "hello" in r.html()
        True
    """

    def __init__(self, title: str, *, subtitle: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self._parts: list[str] = []
        self._sections: list[tuple[str, str]] = []
        self._needs_bundle = False
        self._tabs = 0

    def add_section(self, title: str, text: str = "") -> Report:
        """A new ``<h2>`` section (listed in the table of contents), optional paragraph."""
        anchor = f"s{len(self._sections) + 1}"
        self._sections.append((anchor, title))
        self._parts.append(f"<h2 id='{anchor}'>{_html.escape(title)}</h2>")
        if text:
            self.add_text(text)
        return self

    def add_text(self, text: str, *, note: bool = False) -> Report:
        """A paragraph (escaped); ``note`` makes it small and grey."""
        cls = " class='lensarith-note'" if note else ""
        self._parts.append(f"<p{cls}>{_html.escape(text)}</p>")
        return self

    def add_html(self, fragment: str) -> Report:
        """Raw HTML (checked for URLs when the report is rendered)."""
        self._parts.append(fragment)
        return self

    def add_table(self, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *,
                  caption: str = "") -> Report:
        if caption:
            self._parts.append(f"<div class='lensarith-title'>{_html.escape(caption)}</div>")
        self._parts.append(html_table(rows, columns))
        return self

    def add_figure(self, figure: str | os.PathLike[str] | bytes, *, caption: str = "") -> Report:
        """A PNG (path or bytes) embedded as a ``data:`` URI, at the page's full width; a click opens
        it at its native size."""
        self._parts.append(_figure_html(figure, caption))
        return self

    def add_figures(self, figures: dict[str, str | os.PathLike[str] | bytes], *, side_by_side: bool,
                    group: str = "") -> Report:
        """Several versions of one figure (e.g. one per model): side by side (for figures whose axes
        match) or behind a switch, one at a time at full width. Each one enlarges on a click."""
        if not figures:
            return self
        if side_by_side:
            self._parts.append("<div class='lensarith-row'>" + "".join(_figure_html(f, label) for label, f in
                                                                         figures.items()) + "</div>")
            return self
        self._tabs += 1
        name = f"lensarith-tabs-{self._tabs}"
        radios, panes, css = [], [], []
        for i, (label, fig) in enumerate(figures.items()):
            tab = f"{name}-{i}"
            checked = " checked" if i == 0 else ""
            radios.append(f"<input type='radio' name='{name}' id='{tab}'{checked}>"
                          f"<label for='{tab}'>{_html.escape(label)}</label>")
            panes.append(f"<div class='lensarith-tab' id='{tab}-pane'>{_figure_html(fig, label)}</div>")
            css.append(f"#{tab}:checked~#{tab}-pane{{display:block}}")
        title = f"<div class='lensarith-title'>{_html.escape(group)}</div>" if group else ""
        self._parts.append(f"{title}<div class='lensarith-tabs'><style>{''.join(css)}</style>{''.join(radios)}"
                           f"{''.join(panes)}</div>")
        return self

    def add_widget(self, widget) -> Report:
        """A ``lensarith.viz.circuits.Widget`` (circuitsvis or static); the bundle is inlined once for all."""
        if not (hasattr(widget, "needs_bundle") and callable(getattr(widget, "html", None))):
            raise LensarithError(f"add_widget needs a lensarith.viz.circuits.Widget, got {type(widget).__name__}")
        self._needs_bundle |= widget.needs_bundle
        self._parts.append(widget.html())
        return self

    def html(self) -> str:
        """The whole page; raises ``LensarithError`` if any external URL is in it."""
        toc = "".join(f"<a href='#{a}'>{_html.escape(t)}</a>" for a, t in self._sections)
        head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_html.escape(self.title)}</title>"
                f"<style>{_CSS}</style>{_ZOOM_JS}{bundle_script() if self._needs_bundle else ''}</head><body>")
        sub = f"<p class='lensarith-note'>{_html.escape(self.subtitle)}</p>" if self.subtitle else ""
        page = head + f"<h1>{_html.escape(self.title)}</h1>{sub}<nav>{toc}</nav>" + "\n".join(self._parts) + "</body></html>"
        # inlined images are base64 payloads, which can spell "unpkg" by chance but fetch nothing
        urls = find_urls(_DATA_URI.sub("data:", page))
        if urls:
            raise LensarithError(f"the report would reference external resources: {urls[:3]}")
        return page

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the page atomically (temporary file + rename)."""
        return atomic_write_text(path, self.html())
