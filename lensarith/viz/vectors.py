"""The vector bench's figures: each vector kind at its best layer vs its same-norm random baseline,
and the layer sweeps behind that choice (``lensarith.vectors.vector_bench`` results).

``lensarith.vectors`` re-exports ``bench_figure`` and ``sweep_figure``. This module reads a
``BenchResult`` through its public API only and imports nothing of ``lensarith.vectors`` (which sits
above ``viz`` and imports these two functions). matplotlib is imported inside the functions
(``import lensarith`` stays light); figures are ``matplotlib.figure.Figure`` objects built without
pyplot (save them with ``lensarith.viz.plots.save_png``; a notebook shows them inline).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._errors import LensarithError, check_choice
from ..core import Result

if TYPE_CHECKING:
    from ..vectors import BenchResult

__all__ = ["bench_figure", "sweep_figure", "KIND_NAMES"]

#: how the figures name each kind
KIND_NAMES = {"o": "o-vector", "fv": "function vector", "tv": "task vector"}
_COLOURS = {"o": "#1f77b4", "fv": "#ff7f0e", "tv": "#2ca02c"}


def _is_bench(result) -> bool:
    """A ``lensarith.vectors.BenchResult`` (the result kind it registers), without importing vectors."""
    return isinstance(result, Result) and result.kind == "vector_bench"


def _results(results) -> dict[str, BenchResult]:
    if _is_bench(results):
        return {results.task: results}
    if not isinstance(results, Mapping) or not results or not all(_is_bench(r) for r in results.values()):
        raise LensarithError("results must be a BenchResult or a non-empty {task: BenchResult} mapping (compare_vectors)")
    return dict(results)


def bench_figure(results, *, metric: str = "rr", title: str = ""):
    """Bars per task: each kind at its best layer (solid) next to its same-norm random baseline
    (hatched), with bootstrap 95% intervals; a black tick marks the control. One panel per
    context type.

    Args:
        results: ``{task: BenchResult}`` (``compare_vectors``) or one ``BenchResult``.
        metric: ``rr`` (mean reciprocal rank) or ``top<k>`` (e.g. ``top1``).
        title: a figure title.

    Returns:
        A matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    res = _results(results)
    first = next(iter(res.values()))
    contexts = first.contexts
    kinds = first.kinds
    tasks = list(res)
    width = max(6.0, 1.1 * len(tasks) * len(kinds) * 0.5 + 2)
    fig = Figure(figsize=(width, 3.2 * len(contexts)))
    axes = fig.subplots(len(contexts), 1, squeeze=False)[:, 0]
    bar = 0.8 / (2 * len(kinds))
    for ax, context in zip(axes, contexts):
        for t, task in enumerate(tasks):
            r = res[task]
            if context not in r.contexts:
                continue
            for k, kind in enumerate(kinds):
                if kind not in r.kinds:
                    continue
                for v, (run, hatch, alpha) in enumerate(((kind, None, 0.9), (f"{kind}:random", "//", 0.35))):
                    m, lo, hi = r.ci(context, run, metric)
                    x = t - 0.4 + bar * (2 * k + v + 0.5)
                    ax.bar(x, m, bar, color=_COLOURS.get(kind, "grey"), alpha=alpha, hatch=hatch,
                           yerr=[[m - lo], [hi - m]], capsize=2, error_kw={"lw": 0.8})
            m, _, _ = r.ci(context, "control", metric)
            ax.hlines(m, t - 0.42, t + 0.42, colors="black", lw=1.2)
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels(tasks, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("MRR" if metric == "rr" else metric.replace("top", "top-") + " accuracy")
        ax.set_title(f"{context.replace('_', '-')} contexts", fontsize=10)
    handles = [Patch(color=_COLOURS[k], label=KIND_NAMES.get(k, k)) for k in kinds]
    handles += [Patch(facecolor="white", edgecolor="grey", hatch="//", label="same-norm random"),
                Patch(color="black", label="control (no vector)")]
    axes[0].legend(handles=handles, fontsize=7, ncol=len(handles), loc="upper left", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep_figure(result: BenchResult, *, context: str | None = None):
    """Dev MRR per layer for each kind (at its best scale), vector vs random, with the control."""
    from matplotlib.figure import Figure

    if not _is_bench(result):
        raise LensarithError(f"result must be a BenchResult, got {type(result).__name__}")
    contexts = result.contexts if context is None else [context]
    for c in contexts:
        check_choice(c, result.contexts, "context")
    fig = Figure(figsize=(4.2 * len(contexts), 3.0))
    axes = fig.subplots(1, len(contexts), squeeze=False)[0]
    layers = list(range(len(result.labels["layer"])))
    for ax, ctx in zip(axes, contexts):
        c = result.contexts.index(ctx)
        for k, kind in enumerate(result.kinds):
            sw = result.tensors["sweep_mrr"][c, k]
            ax.plot(layers, sw[0].tolist(), "-o", ms=3, color=_COLOURS.get(kind, "grey"), label=KIND_NAMES.get(kind, kind))
            ax.plot(layers, sw[1].tolist(), ":", color=_COLOURS.get(kind, "grey"), alpha=0.6)
        ax.axhline(float(result.tensors["sweep_control_mrr"][c]), color="black", lw=1, label="control")
        ax.set_xticks(layers)
        ax.set_xticklabels(result.labels["layer"], fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("layer")
        ax.set_ylabel("dev MRR")
        ax.set_title(f"{result.task}: {ctx.replace('_', '-')} (dotted: random)", fontsize=9)
    axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
