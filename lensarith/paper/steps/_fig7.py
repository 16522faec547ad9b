"""Fig 7: accuracy on abstractive and extractive prompts as MLPs are removed from the top down."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..._types import Model
from ..config import ReproduceConfig
from ..stats import bootstrap_distribution, percentile_ci
from ..text import scroll_table
from ..verdicts import format_ci, judge_contrast
from ._outputs import Outputs
from ._scoring import counts

__all__ = ["Fig7", "FIG7_TASKS", "fig7"]

FIG7_TASKS = ("capitals", "uppercase")


@dataclass(frozen=True)
class Fig7:
    """Fig 7's result.

    Attributes:
        numbers: ``{task: {"removed", "accuracy", "accuracy_ci", "contrast", ...}}``
            (``summary["figures"]["fig7"]``; the verdicts read each task's ``contrast``).
        scoring: ``{"fig7/<task>/<set>": counts}``.
        n_layers: the model's depth.
        png: the figure.
    """

    name: ClassVar[str] = "fig7"
    numbers: dict[str, dict[str, Any]]
    scoring: dict[str, dict[str, Any]]
    n_layers: int
    png: Path

    def line(self) -> str:
        return "fig 7: " + "; ".join(f"{t}: " + _fig7_line(d) for t, d in self.numbers.items())

    def render(self, report) -> None:
        fig7, L = self.numbers, self.n_layers
        judged = {t: judge_contrast(d["contrast"])[0] for t, d in fig7.items()}
        yes = [t for t, v in judged.items() if v == "yes"]
        part = [t for t, v in judged.items() if v == "partial"]
        no = [t for t, v in judged.items() if v == "no"]
        which = ("Reproduces the paper's contrast: " + (", ".join(yes) or "none")
                 + (f"; partly: {', '.join(part)}" if part else "") + (f"; does not: {', '.join(no)}" if no else "")
                 + " (criterion in the 'reproduced?' table).")
        report.add_section("Fig 7: removing MLPs from the top down",
                           "Zero-ablating the top k MLPs (one sixth of the layers at a time): top-1 accuracy on "
                           "abstractive prompts (answer from memory) and extractive prompts (answer in the context), with "
                           "bootstrap 95% CIs. Paper (BLOOM): extractive -17%, abstractive -73% after 24 of 30 FFNs. "
                           + which)
        report.add_figure(self.png)
        for task, d in fig7.items():
            c = d["contrast"]
            rows = [{"MLPs removed": k, "layers": d["table"][j]["layers"],
                     **{f"{s} accuracy": format_ci(d["accuracy"][s][j], d["accuracy_ci"][s][j]) for s in d["accuracy"]}}
                    for j, k in enumerate(d["removed"])]
            cap = (f"{task} (n = {', '.join(f'{s} {n}' for s, n in (d['sizes'] or {}).items())}): relative drop after "
                   f"{c['removed']} of {L} MLPs: abstractive "
                   f"{format_ci(c['abstractive_drop'], c['abstractive_drop_ci'], pct=True)}, "
                   f"extractive {format_ci(c['extractive_drop'], c['extractive_drop_ci'], pct=True)}; difference "
                   f"{format_ci(c['difference'], c['difference_ci'])}: {judged[task]}")
            report.add_html(f"<div class='lensarith-title'>{html.escape(cap)}</div>")
            report.add_html(scroll_table(rows))


def fig7(model: Model, config: ReproduceConfig, out: Outputs) -> Fig7:
    """Fig 7: ``ffn_ablation`` per task; accuracies with intervals and the abstractive-minus-extractive
    contrast after removing about 80% of the MLPs."""
    from ...ablation import ffn_ablation
    from ...viz import plots

    L = model.cfg.n_layers
    numbers, panels, scoring = {}, {}, {}
    for task in FIG7_TASKS:
        res = ffn_ablation(model, task, n=config.n, batch_size=config.batch_size, progress=out.progress)
        res.save(out.results / f"fig7-{task}")
        for set_name, rep in (res.meta.get("reports") or {}).items():
            scoring[f"fig7/{task}/{set_name}"] = counts(rep)
        removed = res.n_removed
        acc = {s: [round(float(x), 4) for x in res.accuracy_of(s)] for s in res.sets}
        k80 = _nearest(removed, 0.8 * L)
        rel = {s: (None if acc[s][0] == 0 else round(1 - acc[s][k80] / acc[s][0], 4)) for s in res.sets}
        numbers[task] = {"removed": removed, "accuracy": acc, "sizes": res.meta.get("sizes"), "at_80pct": removed[k80],
                         "relative_drop_at_80pct": rel, "drop_all": {s: round(res.drop(s), 4) for s in res.sets},
                         "table": res.table(), "accuracy_ci": _accuracy_ci(res, config.seed, config.n_boot),
                         "contrast": _contrast(res, k80, removed[k80], config.seed, config.n_boot)}
        panels[task] = {"removed": removed, **acc, "ci": numbers[task]["accuracy_ci"], "note": _fig7_note(numbers[task])}
    png = out.png(plots.ablation_curves(panels, title="Fig 7: accuracy as MLPs are removed from the top down (bands: "
                                                      "bootstrap 95% CIs)"), "fig7")
    return Fig7(numbers, scoring, L, png)


def _nearest(values: list[int], target: float) -> int:
    return min(range(len(values)), key=lambda i: (abs(values[i] - target), -values[i]))


def _pair(ci) -> list[float]:
    return [round(float(ci[0]), 4), round(float(ci[1]), 4)]


def _relative_drop(k: int) -> Callable[[np.ndarray], float]:
    """The statistic: 1 - accuracy after step ``k`` / accuracy before, over rows ``[example, step]``."""
    def stat(rows: np.ndarray) -> float:
        base = rows[:, 0].mean()
        return 0.0 if base == 0 else float(1.0 - rows[:, k].mean() / base)

    return stat


def _contrast(res, k80: int, removed: int, seed: int, n_boot: int) -> dict[str, Any]:
    """Relative drops after step ``k80`` per set with bootstrap CIs, and abstractive minus extractive."""
    draws, out = {}, {"removed": removed}
    for j, s in enumerate(("abstractive", "extractive")):
        rows = res.tensors[f"correct.{s}"].T.double().numpy()  # [example, step]
        stat = _relative_drop(k80)
        draws[s] = bootstrap_distribution(rows, stat, n=n_boot, seed=seed + j)
        out[f"{s}_drop"] = round(stat(rows), 4)
        out[f"{s}_drop_ci"] = _pair(percentile_ci(draws[s]))
        out[f"{s}_n"] = int(rows.shape[0])
    out["difference"] = round(out["abstractive_drop"] - out["extractive_drop"], 4)
    out["difference_ci"] = _pair(percentile_ci(draws["abstractive"] - draws["extractive"]))
    return out


def _accuracy_ci(res, seed: int, n_boot: int) -> dict[str, list[list[float]]]:
    from ..stats import bootstrap_columns

    out = {}
    for s in res.sets:
        lo, hi = bootstrap_columns(res.tensors[f"correct.{s}"].T.double(), n=n_boot, seed=seed)
        out[s] = [[round(float(a), 4), round(float(b), 4)] for a, b in zip(lo, hi)]
    return out


def _fig7_note(d: dict[str, Any]) -> str:
    c = d["contrast"]
    v, why = judge_contrast(c)
    return (f"{'contrast reproduced' if v == 'yes' else 'contrast partly reproduced' if v == 'partial' else 'contrast NOT reproduced'}"
            f" ({v}): after {c['removed']} MLPs abstractive -{c['abstractive_drop']:.0%}, extractive "
            f"-{c['extractive_drop']:.0%}")


def _fig7_line(d: dict[str, Any]) -> str:
    j, c = d["removed"].index(d["at_80pct"]), d["contrast"]
    return (f"after {d['at_80pct']} MLPs " + ", ".join(
        f"{s} {format_ci(acc[0], d['accuracy_ci'][s][0])} -> {format_ci(acc[j], d['accuracy_ci'][s][j])}"
        f" (-{format_ci(c[f'{s}_drop'], c[f'{s}_drop_ci'], pct=True)})" for s, acc in d["accuracy"].items())
        + f"; contrast: {judge_contrast(c)[0]}")
