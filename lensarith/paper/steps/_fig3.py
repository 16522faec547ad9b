"""Fig 3: the argument's and the answer's mean reciprocal rank per layer (the "X"), per task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor

from ..._types import Model
from ...core import Batch
from ..config import TASKS, ReproduceConfig
from ..figures import PAPER, task_curves
from ..text import scroll_table
from ..verdicts import NOISE_FLOOR, format_ci, judge_depth, judge_x
from ._outputs import Outputs
from ._scoring import counts

__all__ = ["Fig3", "TaskData", "fig3"]


@dataclass(frozen=True)
class TaskData:
    """A task's scored prompts and which of them the model answers correctly (top-1 at the output)."""

    batch: Batch
    correct: Tensor  # [batch] bool


@dataclass(frozen=True)
class Fig3:
    """Fig 3's result.

    Attributes:
        numbers: ``{task: task_curves' summary}`` (``summary["figures"]["fig3"]``; the verdicts
            read each task's ``x`` and ``crossing``).
        tasks: each task's prompts and correctness (Fig 2, the layers and the extras read them).
        scoring: ``{"fig3/<task>": counts}``.
        png: the figure.
    """

    name: ClassVar[str] = "fig3"
    numbers: dict[str, dict[str, Any]]
    tasks: dict[str, TaskData]
    scoring: dict[str, dict[str, Any]]
    png: Path

    def line(self) -> str:
        return "fig 3: " + "; ".join(f"{t} acc {format_ci(s['accuracy'], s['accuracy_ci'])}, "
                                     + _fig3_note(s).replace("\n", ", ") for t, s in self.numbers.items())

    def render(self, report) -> None:
        fig3 = self.numbers
        first = next(iter(fig3.values()))
        report.add_section("Fig 3: argument and answer per layer (the 'X')",
                           "Mean reciprocal rank 1/(rank+1) of the argument and the answer at the last position, per "
                           "layer, over the prompts the model answers correctly; bands are bootstrap 95% CIs. Paper: "
                           + PAPER["fig3"]["text"] + f". Noise floor: MRR {NOISE_FLOOR} (a token ranked ~20th on average; "
                           f"a uniform random ranking over the vocabulary gives {first['uniform_mrr']:.4f}). The crossing "
                           "is the first layer from which the answer's MRR stays above the argument's and above the noise "
                           "floor to the output; the raw reading (answer above argument, noise included) is shown for "
                           "comparison: it lands on the first layer when both curves are still noise.")
        report.add_figure(self.png)
        rows = []
        for t, s in fig3.items():
            c, x = s["crossing"], s["x"]
            rows.append({"task": t, "n (correct)": f"{s['n']} ({s['n_correct']})",
                         "accuracy": format_ci(s["accuracy"], s["accuracy_ci"]),
                         "argument peak": f"L{x['peak_layer']}: {format_ci(x['peak_mrr'], x['peak_ci'])}",
                         "argument rise / fall": f"{format_ci(x['rise']['value'], x['rise']['ci'])} / "
                                                 f"{format_ci(x['fall']['value'], x['fall']['ci'])}",
                         "answer rise after the peak": format_ci(x["answer_rise"]["value"], x["answer_rise"]["ci"]),
                         "argument leads at": ", ".join(f"L{i}" for i in c["argument_leads_layers"]) or "never",
                         "crossing (depth)": "none" if c["layer"] is None else f"L{c['layer']} ({c['fraction']:.2f})",
                         "raw: answer above argument from": f"L{s['crossover_layer']}" if s["crossover_layer"] is not None
                         else "never",
                         "'X'": judge_x(x)[0], "depth ~2/3": judge_depth(c)[0]})
        report.add_html(scroll_table(rows))


def fig3(model: Model, config: ReproduceConfig, out: Outputs) -> Fig3:
    """Fig 3: the logit lens over each task's prompts; MRR curves with intervals, the crossing, the "X"."""
    from ...viz import plots

    numbers, tasks, scoring = {}, {}, {}
    for task in TASKS:
        s, lens, batch, correct = task_curves(model, task, n=config.n, batch_size=config.batch_size, seed=config.seed,
                                             progress=out.progress)
        lens.save(out.results / f"fig3-{task}")
        scoring[f"fig3/{task}"] = counts(batch.report)
        numbers[task] = s
        tasks[task] = TaskData(batch, correct)
    # the crossing is marked only where the arms cross (the argument led somewhere before the answer took over):
    # where the answer leads from the first readable layer, the verdict says they never cross and nothing is drawn
    panels = {t: {**s, "floor": s["noise_floor"], "crossing_layer": _drawn_crossing(s), "note": _fig3_note(s)}
              for t, s in numbers.items()}
    png = out.png(plots.x_pattern(panels, title="Fig 3: mean reciprocal rank per layer over the examples answered "
                                                "correctly (bands: bootstrap 95% CIs; dashed: noise floor; dotted: the "
                                                "crossing)"), "fig3")
    return Fig3(numbers, tasks, scoring, png)


def _fig3_note(s: dict[str, Any]) -> str:
    c = s["crossing"]
    if c["layer"] is None:
        where = "no crossing"
    elif c["argument_leads_layers"]:
        where = f"crossing {s['layers'][c['layer']]} ({c['fraction']:.2f} of depth)"
    else:
        where = f"arms never cross; answer above argument and floor from {s['layers'][c['layer']]}"
    return f"{where}, depth ~2/3: {judge_depth(c)[0]}\n'X' (hump, answer rise, arms cross): {judge_x(s['x'])[0]}"


def _drawn_crossing(s: dict[str, Any]) -> int | None:
    """The layer Fig 3 marks as the crossing: None unless the arms cross (judge_x's criterion)."""
    c = s["crossing"]
    return c["layer"] if c["layer"] is not None and c["argument_leads_layers"] else None
