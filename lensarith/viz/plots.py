"""matplotlib figures: reciprocal-rank curves, control vs transplant, ablation, token grids.

matplotlib is imported inside the functions (``import lensarith`` stays light), and figures
are built as ``matplotlib.figure.Figure`` objects without pyplot (no global state, no GUI;
a notebook shows a returned figure inline). ``save_png(fig, path)`` writes one atomically.
"""

from __future__ import annotations

import base64
import io
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import LensarithError
from .._io import atomic_write_bytes
from ._bundle import find_urls

__all__ = [
    "save_png",
    "png_bytes",
    "rr_curves",
    "x_pattern",
    "example_curve",
    "example_curves",
    "transplant_curves",
    "ablation_curves",
    "token_grid",
    "analogy_bars",
]

_ARG, _ANS = "#1f77b4", "#ff7f0e"
#: one number per point: a list, an array or a tensor
Values = Any


def _figure(figsize: tuple[float, float]):
    """A ``matplotlib.figure.Figure`` without pyplot: no global state, no GUI backend; it
    saves to PNG anywhere and shows inline in notebooks."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def png_bytes(fig, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes.

    The report inlines PNGs as base64 and refuses any text that looks like an external URL
    (``unpkg``, ``//cdn``, case-insensitive), which random base64 can spell by chance; such a
    PNG is written again with a longer ``Software`` tag, which shifts every later byte.
    """
    data = b""
    for pad in range(32):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": "lensarith" + "-" * pad})
        data = buf.getvalue()
        if not find_urls(base64.b64encode(data).decode("ascii")):
            return data
    return data


def save_png(fig, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write the figure as a PNG via a temporary file and a rename."""
    return atomic_write_bytes(path, png_bytes(fig, dpi=dpi))


def _list(x) -> list[float]:
    return [float(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def _wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters (titles are never cut off)."""
    return "\n".join(textwrap.fill(part, width=width, break_long_words=False) for part in str(text).split("\n"))


def _band(ax, xs: list[int], band, **style) -> None:
    """A shaded interval ``[[lo, hi] per point]`` around a curve."""
    if band is None:
        return
    lo, hi = [float(b[0]) for b in band], [float(b[1]) for b in band]
    if len(lo) != len(xs):
        raise LensarithError(f"an interval band has {len(lo)} points but there are {len(xs)} layers")
    ax.fill_between(xs, lo, hi, alpha=0.18, linewidth=0, **style)


def rr_curves(ax, layers: Sequence, curves: Mapping[str, Values], *, styles: Mapping[str, dict] | None = None,
              title: str = "", ylabel: str = "mean reciprocal rank", bands: Mapping[str, Any] | None = None,
              labels: Mapping[str, str] | None = None, title_width: int = 60) -> None:
    """Draw one line per curve on ``ax`` (x: layers).

    Args:
        ax: a matplotlib ``Axes``.
        layers: x labels.
        curves: ``{name: values per layer}``.
        styles: ``{name: matplotlib style}`` per curve.
        title: panel title (wrapped, never cut).
        ylabel: y axis label.
        bands: ``{name: [[lo, hi] per layer]}``: shaded confidence intervals.
        labels: ``{name: legend text}`` (default the name).
        title_width: characters per title line.
    """
    xs = list(range(len(layers)))
    for name, ys in curves.items():
        ys = _list(ys)
        if len(ys) != len(xs):
            raise LensarithError(f"curve {name!r} has {len(ys)} points but there are {len(xs)} layers")
        style = dict((styles or {}).get(name, {}))
        ax.plot(xs, ys, marker="o", ms=3, label=(labels or {}).get(name, name), **style)
        if bands and name in bands:
            _band(ax, xs, bands[name], color=style.get("color"))
    step = max(1, len(xs) // 12)
    ax.set_xticks(xs[::step])
    ax.set_xticklabels([str(layers[i]) for i in xs[::step]], fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(_wrap(title, title_width), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def x_pattern(per_task: Mapping[str, Mapping[str, Any]], *, title: str = "") -> object:
    """The paper's Fig 3: mean RR of argument and answer per layer, one panel per task.

    Args:
        per_task: ``{task: {"layers": [...], "argument": [...], "answer": [...], "n": int}}``;
            optional per task: ``argument_ci`` / ``answer_ci`` (``[[lo, hi], ...]``, shaded),
            ``floor`` (a dashed noise-floor line), ``crossing_layer`` (a layer index, marked),
            ``note`` (a line under the panel title, e.g. the verdict).
        title: figure title.
    """
    if not per_task:
        raise LensarithError("x_pattern: no tasks to plot")
    fig = _figure((4.4 * len(per_task), 3.7))
    axes = fig.subplots(1, len(per_task), squeeze=False)
    for ax, (task, d) in zip(axes[0], per_task.items()):
        head = f"{task} (n={d.get('n', '?')})" + (f"\n{d['note']}" if d.get("note") else "")
        rr_curves(ax, d["layers"], {"argument": d["argument"], "answer": d["answer"]},
                  styles={"argument": {"color": _ARG}, "answer": {"color": _ANS}},
                  bands={k: d[f"{k}_ci"] for k in ("argument", "answer") if d.get(f"{k}_ci") is not None},
                  title=head, title_width=55)
        if d.get("floor") is not None:
            ax.axhline(float(d["floor"]), color="#999", ls="--", lw=0.8, label=f"noise floor {d['floor']}")
        if d.get("crossing_layer") is not None:
            ax.axvline(int(d["crossing_layer"]), color="#2ca02c", ls=":", lw=1.2, label=f"crossing {d['layers'][int(d['crossing_layer'])]}")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(_wrap(title, int(8 + 24 * len(per_task))), fontsize=11)
    fig.tight_layout()
    return fig


def example_curve(layers: Sequence, original: Values, transplanted: Values, *, token: str = "answer",
                  title: str = "") -> object:
    """The paper's Fig 4: RR of the answer per layer for one context, original vs transplanted."""
    fig = _figure((5.5, 3.3))
    ax = fig.subplots()
    rr_curves(ax, layers, {"original": original, "o transplanted": transplanted},
              styles={"original": {"color": "#555"}, "o transplanted": {"color": _ANS}},
              title=title, ylabel=f"reciprocal rank of {token!r}")
    fig.tight_layout()
    return fig


def example_curves(panels: Sequence[Mapping[str, Any]], *, title: str = "", ncols: int = 2) -> object:
    """Fig 4 for several contexts: RR of the answer per layer, original vs transplanted.

    Args:
        panels: ``[{"layers", "original", "transplant", "title"}]`` (titles wrapped, never cut;
            put the context and the answer's rank at the output there).
        title: figure title.
        ncols: panels per row.
    """
    if not panels:
        raise LensarithError("example_curves: no contexts to plot")
    ncols = min(ncols, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig = _figure((5.2 * ncols, 3.5 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, d in zip(axes.flat, panels):
        rr_curves(ax, d["layers"], {"original": d["original"], "o transplanted": d["transplant"]},
                  styles={"original": {"color": "#555"}, "o transplanted": {"color": _ANS}},
                  title=d.get("title", ""), ylabel=f"reciprocal rank of {d.get('token', 'the answer')!r}", title_width=62)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(_wrap(title, 50 * ncols), fontsize=11)
    fig.tight_layout()
    return fig


_RUN_STYLES = {"control": {"color": "#555"}, "transplant": {"color": _ANS},
               "random": {"color": "#9467bd", "ls": "--"}, "zeroed": {"color": "#17becf", "ls": "-."}}


def transplant_curves(sets: Mapping[str, Mapping[str, Any]], *, title: str = "", ncols: int = 2,
                      runs: Sequence[str] = ("control", "transplant")) -> object:
    """The paper's Fig 5: mean RR of the answer per layer, control vs transplant (and baselines), per set.

    Args:
        sets: ``{name: {"layers": [...], "control": [...], "transplant": [...], "n": int}}``
            (a ``TransplantResult`` gives these as ``mrr(run=...)``), in panel order;
            optional: ``<run>_ci`` (``[[lo, hi], ...]``, shaded), ``labels``
            (``{run: legend text}``), ``note`` (a line under the panel title).
        title: figure title.
        ncols: panels per row.
        runs: the curves to draw; a set lacking one (e.g. ``random``) skips it.
    """
    if not sets:
        raise LensarithError("transplant_curves: no sets to plot")
    n = len(sets)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig = _figure((5.4 * ncols, 3.9 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (name, d) in zip(axes.flat, sets.items()):
        shown = [r for r in runs if r in d]
        head = f"{name} (n={d.get('n', '?')})" + (f"\n{d['note']}" if d.get("note") else "")
        rr_curves(ax, d["layers"], {r: d[r] for r in shown}, styles={r: _RUN_STYLES.get(r, {}) for r in shown},
                  bands={r: d[f"{r}_ci"] for r in shown if d.get(f"{r}_ci") is not None},
                  labels=d.get("labels"), title=head, title_width=66)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(_wrap(title, 55 * ncols), fontsize=11)
    fig.tight_layout()
    return fig


def ablation_curves(panels: Mapping[str, Mapping[str, Any]], *, title: str = "", ylabel: str = "top-1 accuracy") -> object:
    """The paper's Fig 7: accuracy vs MLPs removed from the top down, one line per prompt set.

    Args:
        panels: ``{panel: {"removed": [0, k1, ...], set_name: [acc, ...], ...}}`` (e.g. one
            panel per task with ``abstractive`` and ``extractive`` sets); optional
            ``"ci": {set_name: [[lo, hi], ...]}`` (shaded) and ``"note"`` (a line under the
            panel title, e.g. whether the contrast reproduces).
        title: figure title.
    """
    if not panels:
        raise LensarithError("ablation_curves: nothing to plot")
    fig = _figure((4.6 * len(panels), 3.7))
    axes = fig.subplots(1, len(panels), squeeze=False)
    colours = {"abstractive": _ANS, "extractive": _ARG}
    for ax, (name, d) in zip(axes[0], panels.items()):
        removed = _list(d["removed"])
        for key, ys in d.items():
            if key in ("removed", "ci", "note"):
                continue
            ax.plot(removed, _list(ys), marker="o", ms=3, label=key, color=colours.get(key))
            band = (d.get("ci") or {}).get(key)
            if band is not None:
                ax.fill_between(removed, [b[0] for b in band], [b[1] for b in band], alpha=0.18, linewidth=0,
                                color=colours.get(key))
        ax.set_xlabel("MLPs removed (top down)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(removed)
        ax.set_title(_wrap(name + (f"\n{d['note']}" if d.get("note") else ""), 55), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(_wrap(title, int(8 + 26 * len(panels))), fontsize=11)
    fig.tight_layout()
    return fig


def token_grid(layers: Sequence, columns: Mapping[str, Sequence[str]], *, title: str = "",
               highlight: Mapping[str, str] | None = None) -> object:
    """Figs 2 and 6 as a picture: the top-1 logit-lens token per layer (rows), one column per prompt.

    Args:
        layers: row labels.
        columns: ``{prompt name: [token per layer]}``.
        title: figure title.
        highlight: ``{token: colour}`` cell colours (spaces ignored).
    """
    marks = {k.strip(): v for k, v in (highlight or {}).items()}
    names = list(columns)
    for name in names:
        if len(columns[name]) != len(layers):
            raise LensarithError(f"token_grid: column {name!r} has {len(columns[name])} tokens for {len(layers)} layers")
    fig = _figure((1.2 + 2.2 * len(names), 0.5 + 0.26 * len(layers)))
    ax = fig.subplots()
    ax.axis("off")
    cells = [[repr(columns[n][i].replace("\n", "\\n")) if columns[n][i].strip() == "" else columns[n][i].strip()
              for n in names] for i in range(len(layers))]
    colours = [[marks.get(columns[n][i].strip(), "white") for n in names] for i in range(len(layers))]
    table = ax.table(cellText=cells, cellColours=colours, rowLabels=[str(x) for x in layers], colLabels=names,
                     loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.1)
    if title:
        ax.set_title(_wrap(title, int(20 + 18 * len(names))), fontsize=10)
    fig.tight_layout()
    return fig


def analogy_bars(rows: Mapping[str, Mapping[str, Any]], *, title: str = "",
                 bars: Sequence[tuple[str, str]] = (("control_top1", "control (no transplant)"),
                                                    ("o_top1", "o transplanted"),
                                                    ("glove_source", "GloVe: source pair's offset"),
                                                    ("glove_pairs", "GloVe: other pairs' offsets"))) -> object:
    """GloVe's analogy accuracy next to the o-vector's transplant accuracy, one group per set.

    Args:
        rows: ``{set: {"n": int, key: value, f"{key}_ci": [lo, hi], ...}}`` for the keys in
            ``bars`` (``lensarith.paper.word2vec.compare_with_o`` returns these); a set with
            ``"applicable": False`` is drawn as an empty group labelled "n/a" with its ``why``.
        title: figure title.
        bars: ``(key, legend label)`` per bar, in order.
    """
    if not rows:
        raise LensarithError("analogy_bars: no sets to plot")
    fig = _figure((max(5.0, 1.9 * len(rows) + 2.5), 3.9))
    ax = fig.subplots()
    width = 0.8 / len(bars)
    colours = ("#9e9e9e", _ANS, "#2ca02c", "#98df8a")
    names = list(rows)
    for b, (key, label) in enumerate(bars):
        xs, ys, lo, hi = [], [], [], []
        for i, name in enumerate(names):
            d = rows[name]
            v = d.get(key)
            if not d.get("applicable", True) or v is None:
                continue
            ci = d.get(f"{key}_ci") or [v, v]
            xs.append(i + (b - (len(bars) - 1) / 2) * width)
            ys.append(v)
            lo.append(max(0.0, v - ci[0]))
            hi.append(max(0.0, ci[1] - v))
        ax.bar(xs, ys, width=width, label=label, color=colours[b % len(colours)], yerr=[lo, hi], capsize=2)
    for i, name in enumerate(names):
        if not rows[name].get("applicable", True):
            ax.text(i, 0.5, _wrap("n/a: " + str(rows[name].get("why", "")), 28), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n(n={rows[n].get('n', 0)})" if rows[n].get("applicable", True) else f"{n}\n(n/a)"
                        for n in names], fontsize=8)
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    if title:
        ax.set_title(_wrap(title, 90), fontsize=9)
    fig.tight_layout()
    return fig
