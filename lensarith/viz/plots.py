"""matplotlib figures: reciprocal-rank curves, control vs transplant, ablation, token grids.

matplotlib is imported inside the functions (``import lensarith`` stays light) with the
non-interactive Agg backend unless a backend is already chosen (notebooks keep theirs).
Every function returns the ``Figure``; ``save_png(fig, path)`` writes it atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._errors import LensarithError
from ..result import atomic_write_bytes

__all__ = [
    "save_png",
    "png_bytes",
    "rr_curves",
    "x_pattern",
    "example_curve",
    "transplant_curves",
    "ablation_curves",
    "token_grid",
    "patch_heatmap",
]

_ARG, _ANS = "#1f77b4", "#ff7f0e"


def _plt():
    import matplotlib

    if "matplotlib.pyplot" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, *, dpi: int = 110, close: bool = True) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        _plt().close(fig)
    return buf.getvalue()


def save_png(fig, path: str | os.PathLike[str], *, dpi: int = 110, close: bool = True) -> Path:
    """Write the figure as a PNG via a temporary file and a rename."""
    return atomic_write_bytes(path, png_bytes(fig, dpi=dpi, close=close))


def _list(x) -> list[float]:
    return [float(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def rr_curves(ax, layers: Sequence, curves: Mapping[str, Sequence[float]], *, styles: Mapping[str, dict] | None = None,
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


def x_pattern(per_task: Mapping[str, Mapping[str, Sequence]], *, title: str = "") -> object:
    """The paper's Fig 3: mean RR of argument and answer per layer, one panel per task.

    Args:
        per_task: ``{task: {"layers": [...], "argument": [...], "answer": [...], "n": int}}``.
        title: figure title.
    """
    plt = _plt()
    if not per_task:
        raise LensarithError("x_pattern: no tasks to plot")
    fig, axes = plt.subplots(1, len(per_task), figsize=(4.2 * len(per_task), 3.3), squeeze=False)
    for ax, (task, d) in zip(axes[0], per_task.items()):
        rr_curves(ax, d["layers"], {"argument": d["argument"], "answer": d["answer"]},
                  styles={"argument": {"color": _ARG}, "answer": {"color": _ANS}},
                  title=f"{task} (n={d.get('n', '?')})")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def example_curve(layers: Sequence, original: Sequence[float], transplanted: Sequence[float], *, token: str = "answer",
                  title: str = "") -> object:
    """The paper's Fig 4: RR of the answer per layer for one context, original vs transplanted."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    rr_curves(ax, layers, {"original": original, "o transplanted": transplanted},
              styles={"original": {"color": "#555"}, "o transplanted": {"color": _ANS}},
              title=title, ylabel=f"reciprocal rank of {token!r}")
    fig.tight_layout()
    return fig


def transplant_curves(sets: Mapping[str, Mapping[str, Sequence]], *, title: str = "", ncols: int = 2) -> object:
    """The paper's Fig 5: mean RR of the answer per layer, control vs transplant, per set.

    Args:
        sets: ``{name: {"layers": [...], "control": [...], "transplant": [...], "n": int}}``
            (a ``TransplantResult`` gives these as ``mrr(run=...)``), in panel order.
        title: figure title.
        ncols: panels per row.
    """
    plt = _plt()
    if not sets:
        raise LensarithError("transplant_curves: no sets to plot")
    n = len(sets)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.1 * nrows), squeeze=False)
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


def ablation_curves(panels: Mapping[str, Mapping[str, Sequence]], *, title: str = "", ylabel: str = "top-1 accuracy") -> object:
    """The paper's Fig 7: accuracy vs MLPs removed from the top down, one line per prompt set.

    Args:
        panels: ``{panel: {"removed": [0, k1, ...], set_name: [acc, ...], ...}}`` (e.g. one
            panel per task with ``abstractive`` and ``extractive`` sets).
        title: figure title.
    """
    plt = _plt()
    if not panels:
        raise LensarithError("ablation_curves: nothing to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
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
    plt = _plt()
    marks = {k.strip(): v for k, v in (highlight or {}).items()}
    names = list(columns)
    for name in names:
        if len(columns[name]) != len(layers):
            raise LensarithError(f"token_grid: column {name!r} has {len(columns[name])} tokens for {len(layers)} layers")
    fig, ax = plt.subplots(figsize=(1.2 + 2.2 * len(names), 0.5 + 0.26 * len(layers)))
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


def patch_heatmap(values, *, row_labels: Sequence[str], col_labels: Sequence[str], title: str = "",
                  xlabel: str = "position", ylabel: str = "layer") -> object:
    """A simple diverging heatmap ``[row, col]`` (activation patching by layer x position or head)."""
    plt = _plt()
    import numpy as np

    arr = np.asarray(values.tolist() if hasattr(values, "tolist") else values, dtype=float)
    vmax = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 1.0
    fig, ax = plt.subplots(figsize=(0.5 + 0.45 * arr.shape[1], 0.8 + 0.3 * arr.shape[0]))
    im = ax.imshow(arr, cmap="RdBu", vmin=-vmax or -1, vmax=vmax or 1, aspect="auto")
    ax.set_xticks(range(arr.shape[1]))
    ax.set_xticklabels([str(c) for c in col_labels], rotation=90, fontsize=7)
    ax.set_yticks(range(arr.shape[0]))
    ax.set_yticklabels([str(r) for r in row_labels], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig
