"""matplotlib figures: reciprocal-rank curves, control vs transplant, ablation, token grids.

matplotlib is imported inside the functions (``import lensarith`` stays light), and figures
are built as ``matplotlib.figure.Figure`` objects without pyplot (no global state, no GUI;
a notebook shows a returned figure inline). ``save_png(fig, path)`` writes one atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import LensarithError
from .._io import atomic_write_bytes

__all__ = [
    "save_png",
    "png_bytes",
    "rr_curves",
    "x_pattern",
    "example_curve",
    "transplant_curves",
    "ablation_curves",
    "token_grid",
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
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def save_png(fig, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write the figure as a PNG via a temporary file and a rename."""
    return atomic_write_bytes(path, png_bytes(fig, dpi=dpi))


def _list(x) -> list[float]:
    return [float(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def rr_curves(ax, layers: Sequence, curves: Mapping[str, Values], *, styles: Mapping[str, dict] | None = None,
              title: str = "", ylabel: str = "mean reciprocal rank") -> None:
    """Draw one line per curve on ``ax`` (x: layers)."""
    xs = list(range(len(layers)))
    for name, ys in curves.items():
        ys = _list(ys)
        if len(ys) != len(xs):
            raise LensarithError(f"curve {name!r} has {len(ys)} points but there are {len(xs)} layers")
        ax.plot(xs, ys, marker="o", ms=3, label=name, **(styles or {}).get(name, {}))
    step = max(1, len(xs) // 12)
    ax.set_xticks(xs[::step])
    ax.set_xticklabels([str(layers[i]) for i in xs[::step]], fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def x_pattern(per_task: Mapping[str, Mapping[str, Any]], *, title: str = "") -> object:
    """The paper's Fig 3: mean RR of argument and answer per layer, one panel per task.

    Args:
        per_task: ``{task: {"layers": [...], "argument": [...], "answer": [...], "n": int}}``.
        title: figure title.
    """
    if not per_task:
        raise LensarithError("x_pattern: no tasks to plot")
    fig = _figure((4.2 * len(per_task), 3.3))
    axes = fig.subplots(1, len(per_task), squeeze=False)
    for ax, (task, d) in zip(axes[0], per_task.items()):
        rr_curves(ax, d["layers"], {"argument": d["argument"], "answer": d["answer"]},
                  styles={"argument": {"color": _ARG}, "answer": {"color": _ANS}},
                  title=f"{task} (n={d.get('n', '?')})")
    if title:
        fig.suptitle(title, fontsize=11)
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


def transplant_curves(sets: Mapping[str, Mapping[str, Any]], *, title: str = "", ncols: int = 2) -> object:
    """The paper's Fig 5: mean RR of the answer per layer, control vs transplant, per set.

    Args:
        sets: ``{name: {"layers": [...], "control": [...], "transplant": [...], "n": int}}``
            (a ``TransplantResult`` gives these as ``mrr(run=...)``), in panel order.
        title: figure title.
        ncols: panels per row.
    """
    if not sets:
        raise LensarithError("transplant_curves: no sets to plot")
    n = len(sets)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig = _figure((4.4 * ncols, 3.1 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (name, d) in zip(axes.flat, sets.items()):
        rr_curves(ax, d["layers"], {"control": d["control"], "transplant": d["transplant"]},
                  styles={"control": {"color": "#555"}, "transplant": {"color": _ANS}},
                  title=f"{name} (n={d.get('n', '?')})")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def ablation_curves(panels: Mapping[str, Mapping[str, Any]], *, title: str = "", ylabel: str = "top-1 accuracy") -> object:
    """The paper's Fig 7: accuracy vs MLPs removed from the top down, one line per prompt set.

    Args:
        panels: ``{panel: {"removed": [0, k1, ...], set_name: [acc, ...], ...}}`` (e.g. one
            panel per task with ``abstractive`` and ``extractive`` sets).
        title: figure title.
    """
    if not panels:
        raise LensarithError("ablation_curves: nothing to plot")
    fig = _figure((4.2 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    colours = {"abstractive": _ANS, "extractive": _ARG}
    for ax, (name, d) in zip(axes[0], panels.items()):
        removed = _list(d["removed"])
        for key, ys in d.items():
            if key == "removed":
                continue
            ax.plot(removed, _list(ys), marker="o", ms=3, label=key, color=colours.get(key))
        ax.set_xlabel("MLPs removed (top down)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(removed)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
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
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
