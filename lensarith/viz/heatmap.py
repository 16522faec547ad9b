"""Heatmaps of grid results (layer x position, layer x head, layer x head x position) as PNG.

matplotlib is imported inside ``heatmap`` only, so ``import lensarith`` stays light. The
figure is built without pyplot (no global state, no GUI backend needed).
"""

from __future__ import annotations

import io
import os
import textwrap

import torch

from .._errors import LensarithError
from .._io import atomic_write_bytes
from ..core import Result

__all__ = ["heatmap", "format_cell"]


def format_cell(value: float, digits: int = 2, zero: str = "") -> str:
    """A cell's text: ``value`` rounded to ``digits``; ``zero`` (default blank) where it rounds
    to 0, so no cell reads ``-0.00``.

    Example:
        >>> format_cell(-0.004), format_cell(-0.006), format_cell(0.5, zero="0")
        ('', '-0.01', '0.50')
    """
    if value != value:  # NaN
        return "nan"
    rounded = round(float(value), digits)
    if rounded == 0:
        return zero
    return f"{rounded:.{digits}f}"


def _grid(result: Result, tensor: str) -> tuple[torch.Tensor, list[str], list[str], str, str]:
    if tensor not in result.tensors:
        raise LensarithError(f"tensor={tensor!r} is not in this result; it has {', '.join(result.tensors)}")
    data = result.tensors[tensor].detach().float().cpu()
    axes = result.axes[tensor]

    def labels(axis: str, n: int) -> list[str]:
        got = result.labels.get(axis)
        return [str(x) for x in got] if got is not None and len(got) == n else [str(i) for i in range(n)]

    if data.ndim == 2:
        return data, labels(axes[0], data.shape[0]), labels(axes[1], data.shape[1]), axes[0], axes[1]
    if data.ndim == 3:  # [layer, head, pos] -> rows "L{layer}H{head}"
        rows = [f"L{a}H{b}" for a in labels(axes[0], data.shape[0]) for b in labels(axes[1], data.shape[1])]
        return data.reshape(-1, data.shape[2]), rows, labels(axes[2], data.shape[2]), f"{axes[0]}.{axes[1]}", axes[2]
    raise LensarithError(f"heatmap draws 2-d or 3-d tensors; {tensor!r} has axes {axes}")


def heatmap(
    result: Result,
    *,
    tensor: str = "values",
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
    cmap: str = "RdBu_r",
    ax=None,
    annotate: bool | None = None,
    dpi: int = 120,
    col_labels: list[str] | None = None,
    row_labels: list[str] | None = None,
    digits: int = 2,
    zero: str = "",
):
    """Draw a 2-d (or ``[layer, head, pos]``) tensor of a result as a heatmap.

    Args:
        result: e.g. a ``PatchResult`` (``[layer, pos]``, ``[layer, head]`` or
            ``[layer, head, pos]``, drawn with one row per layer and head).
        tensor: which tensor to draw.
        path: write a PNG here (atomically).
        title: default: recipe, site, metric and direction from the result's metadata.
        cmap: a diverging colour map; the scale is symmetric around zero.
        ax: draw into an existing matplotlib ``Axes`` instead of a new figure.
        annotate: write values in the cells (default: when there are at most 300 cells).
        dpi: PNG resolution.
        col_labels, row_labels: axis tick labels instead of the result's (one per column / row).
        digits: decimals of the cell values.
        zero: the text of a cell that rounds to 0 at ``digits`` (default blank; never ``-0.00``).

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> from lensarith.patching import activation_patch, pair_examples
        >>> pairs = pair_examples(model, build_prompts("capitals", format="zero_shot", n=40), n=2)
        >>> fig = heatmap(activation_patch(model, pairs), path=tmp_path / "resid_pre.png")
        >>> (tmp_path / "resid_pre.png").stat().st_size > 1000
        True
    """
    from matplotlib.figure import Figure

    data, rows, cols, row_axis, col_axis = _grid(result, tensor)
    for given, have, what in ((col_labels, cols, "col_labels"), (row_labels, rows, "row_labels")):
        if given is not None and len(given) != len(have):
            raise LensarithError(f"{what} needs one label per {what[:3]} ({len(have)}), got {len(given)}")
    cols = [str(c) for c in col_labels] if col_labels is not None else cols
    rows = [str(r) for r in row_labels] if row_labels is not None else rows
    if ax is None:
        width = min(2.0 + 0.45 * len(cols), 24.0)
        height = min(1.5 + 0.3 * len(rows) + 0.06 * max((len(c) for c in cols), default=0), 30.0)
        fig = Figure(figsize=(max(width, 4.0), max(height, 3.0)))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    finite = data[torch.isfinite(data)]
    vmax = float(finite.abs().max()) if finite.numel() else 1.0
    vmax = vmax or 1.0
    image = ax.imshow(data.numpy(), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel(col_axis)
    ax.set_ylabel(row_axis)
    meta = result.meta
    if title is None:
        parts = [meta.get("recipe", result.kind), meta.get("site"), meta.get("metric"), meta.get("direction")]
        title = " · ".join(str(p) for p in parts if p)
    ax.set_title(textwrap.fill(title, width=int(max(40, 9 * fig.get_size_inches()[0]))), fontsize=9)
    fig.colorbar(image, ax=ax, label=str(meta.get("metric", tensor)))
    if annotate if annotate is not None else data.numel() <= 300:
        for (i, j), value in zip(torch.cartesian_prod(torch.arange(data.shape[0]), torch.arange(data.shape[1])).tolist(),
                                 data.flatten().tolist()):
            ax.text(j, i, format_cell(value, digits, zero), ha="center", va="center", fontsize=6,
                    color="white" if abs(value) > 0.6 * vmax else "black")
    fig.tight_layout()
    if path is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        atomic_write_bytes(path, buf.getvalue())
    return fig
