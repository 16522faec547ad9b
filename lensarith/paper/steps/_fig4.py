"""Fig 4: the capitals o-vector in random-token contexts, one context at a time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..._errors import LensarithError
from ..._types import Model
from ...core import tokenize
from ...tasks import Example
from ..config import ReproduceConfig
from ..figures import PAPER
from ._fig5 import Fig5, contexts
from ._layers import Layers
from ._outputs import Outputs

__all__ = ["Fig4", "FIG4_CONTEXT", "FIG4_PICKS", "fig4"]

FIG4_CONTEXT = Example("table mug free China table mug free China table mug free", " Beijing", " China", "random:capitals")
#: Fig 4's extra contexts: the capitals contexts at these quantiles of the transplant's effect
FIG4_PICKS = (("median", 0.5), ("25th percentile", 0.25), ("75th percentile", 0.75))


@dataclass(frozen=True)
class Fig4:
    """Fig 4's result.

    Attributes:
        numbers: the paper's context (or a capitals context where the model cannot tokenize it)
            with and without o, and ``contexts``: Fig 5's capitals contexts at ``FIG4_PICKS``
            (``summary["figures"]["fig4"]``).
        application: the MLP the capitals o-vector comes from.
        png: the figure.
    """

    name: ClassVar[str] = "fig4"
    numbers: dict[str, Any]
    application: int
    png: Path

    def line(self) -> str:
        f4 = self.numbers
        med = next((p for p in f4["contexts"] if p["pick"] == "median"), None)
        return (f"fig 4: {f4['argument'].strip()} context, prediction {f4['top1_original']!r} -> "
                f"{f4['top1_transplant']!r}, rank of {f4['answer']!r} {f4['answer_rank_original']} -> "
                f"{f4['answer_rank_transplant']}"
                + (f"; median context ({med['argument'].strip()}): rank {med['answer_rank_original']} -> "
                   f"{med['answer_rank_transplant']}" if med else ""))

    def render(self, report) -> None:
        f4 = self.numbers
        layers_c = f4["replaced"]
        text = (f"o from the source prompt's MLP {self.application} replaces MLPs "
                f"{layers_c[0]}-{layers_c[-1]} at every position. The paper's example {f4['context']!r}: prediction "
                f"{f4['top1_original']!r} → {f4['top1_transplant']!r}; rank of {f4['answer']!r} at the output "
                f"{f4['answer_rank_original']} → {f4['answer_rank_transplant']}. One context is an anecdote, so the "
                f"capitals contexts of Fig 5 (n={f4['effect_over_contexts']['n']}) are sorted by the transplant's effect "
                "(output-layer RR with o minus control) and the ones at the median and the quartiles are shown too: "
                + "; ".join(f"{p['pick']} ({p['argument'].strip()}): rank {p['answer_rank_original']} → "
                            f"{p['answer_rank_transplant']}" for p in f4["contexts"])
                + ". Paper: " + PAPER["fig4"]["text"] + ".")
        report.add_section("Fig 4: random-token contexts, one by one", text)
        report.add_figure(self.png)


def fig4(model: Model, config: ReproduceConfig, out: Outputs, layers: Layers, fig5: Fig5) -> Fig4:
    """Fig 4: the paper's context for ' China' with the capitals o replacing its MLPs (``layers``),
    then the contexts of Fig 5's capitals set (``fig5``) at the median and quartiles of the effect."""
    from ...vectors import transplant
    from ...viz import plots

    ctx = FIG4_CONTEXT
    try:
        tokenize(model, [ctx])
    except LensarithError:
        ctx = contexts("capitals", 1, config.seed, layers.sources["capitals"].argument)[0]
    layers_c = layers.numbers["capitals"]["replace"]
    res4 = transplant(model, layers.ovecs["capitals"], [ctx], layers=layers_c, mode="replace", positions="all",
                      drop_multi_token=True, progress=False)
    res4.save(out.results / "fig4")
    rr_c = res4.reciprocal_rank("answer", "control")[:, 0].tolist()
    rr_t = res4.reciprocal_rank("answer", "transplant")[:, 0].tolist()
    top = res4.meta.get("top1_tokens", {})
    f4 = {"context": ctx.prompt, "answer": ctx.answer, "argument": ctx.argument, "source": layers.sources["capitals"].prompt,
          "layers": list(res4.labels["layer"]), "original": [round(x, 4) for x in rr_c],
          "transplant": [round(x, 4) for x in rr_t], "replaced": layers_c,
          "top1_original": top.get("control", [None])[0], "top1_transplant": top.get("transplant", [None])[0],
          "answer_rank_original": int(res4.rank("answer", "control")[-1, 0]) + 1,
          "answer_rank_transplant": int(res4.rank("answer", "transplant")[-1, 0]) + 1}
    res5, batch5 = fig5.runs["capitals"]
    picks = _fig4_picks(res5, batch5, model)
    f4["contexts"] = picks
    f4["effect_over_contexts"] = {"n": len(res5.labels["batch"]), "rule": "output-layer RR with o minus control"}
    panels = [{"layers": f4["layers"], "original": rr_c, "transplant": rr_t, "token": ctx.answer,
               "title": _panel_title("the paper's example", f4)}]
    panels += [{"layers": f4["layers"], "original": p["original"], "transplant": p["transplant"], "token": p["answer"],
                "title": _panel_title(f"{p['pick']} context by effect", p)} for p in picks]
    app = layers.numbers["capitals"]["application"]
    png = out.png(plots.example_curves(panels, title=f"Fig 4: reciprocal rank of the answer per layer, original vs MLPs "
                                                    f"{layers_c[0]}-{layers_c[-1]} replaced by o (capitals, from MLP "
                                                    f"{app} of the source prompt)"), "fig4")
    return Fig4(f4, app, png)


def _fig4_picks(res, batch, model) -> list[dict[str, Any]]:
    """The capitals contexts at ``FIG4_PICKS``'s quantiles of the transplant's effect on the answer's output RR."""
    rr_c, rr_t = res.reciprocal_rank("control"), res.reciprocal_rank("transplant")
    effect = (rr_t[-1] - rr_c[-1]).numpy()
    order = np.argsort(effect, kind="stable")
    ranks = res.tensors["rank_answer"]
    ci, ti = res.runs.index("control"), res.runs.index("transplant")
    picks, used = [], set()
    for label, q in FIG4_PICKS:
        i = int(order[int(round(q * (len(order) - 1)))])
        if i in used:
            continue
        used.add(i)
        ex = batch.examples[i]
        picks.append({"pick": label, "quantile": q, "context": ex.prompt, "answer": ex.answer, "argument": ex.argument,
                      "effect": round(float(effect[i]), 4),
                      "original": [round(float(x), 4) for x in rr_c[:, i]],
                      "transplant": [round(float(x), 4) for x in rr_t[:, i]],
                      "answer_rank_original": int(ranks[ci, -1, i]) + 1, "answer_rank_transplant": int(ranks[ti, -1, i]) + 1,
                      "top1_original": model.to_single_str_token(int(res.tensors["top1"][ci, i])),
                      "top1_transplant": model.to_single_str_token(int(res.tensors["top1"][ti, i]))})
    return picks


def _panel_title(label: str, d: dict[str, Any]) -> str:
    return (f"{label}: {d['context']!r} → {d['answer']!r}\nrank of {d['answer']!r} at the output: "
            f"{d['answer_rank_original']} → {d['answer_rank_transplant']} (top-1 {d['top1_original']!r} → "
            f"{d['top1_transplant']!r})")
