"""The word2vec side: GloVe's analogy accuracy next to Fig 5's o-vector transplants, on the same pairs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..._errors import LensarithError
from ..._io import atomic_write_text
from ..config import ReproduceConfig
from ..text import scroll_table
from ..verdicts import format_ci
from ._fig5 import FIG5_SETS, Fig5
from ._layers import Layers
from ._outputs import Outputs

__all__ = ["Word2vec", "word2vec"]


@dataclass(frozen=True)
class Word2vec:
    """The word2vec side's result.

    Attributes:
        numbers: ``{"source", "lowercased", "relations", "sets"}``, or ``{"skipped": why}`` where the
            GloVe vectors are not installed (``summary["figures"]["word2vec"]``).
        png: the figure (None when skipped).
    """

    name: ClassVar[str] = "word2vec"
    numbers: dict[str, Any]
    png: Path | None = None

    def line(self) -> str:
        if "skipped" in self.numbers:
            return f"word2vec: skipped ({self.numbers['skipped']})"
        return "word2vec: " + "; ".join(
            f"{k} (n={v['n']}) o {v.get('o_top1')} vs GloVe {v.get('glove_source', v.get('glove_pairs'))}"
            if v.get("applicable") else f"{k}: n/a" for k, v in self.numbers["sets"].items())

    def render(self, report) -> None:
        from ..word2vec import GLOVE_PACKAGE

        w = self.numbers
        intro = ("Word2vec-style arithmetic in static embeddings next to the FFN's: GloVe 6B 50d (Stanford; the PyPI "
                 f"package {GLOVE_PACKAGE}). For each Fig 5 context (b, b') GloVe gets two chances: the offset of "
                 "the o-vector's own source pair (b - a + a' with (a, a') = the source prompt's argument and answer) and "
                 "the offsets of other pairs of the task; the nearest word by cosine, excluding the three inputs, must "
                 "be b'. GloVe 6B is lowercased, so names are looked up in lowercase, names of several words are not "
                 "covered (n counts the pairs it covers), and uppercasing is not expressible (n/a).")
        if "skipped" in w:
            report.add_section("The word2vec side: GloVe offsets vs the o-vector",
                               intro + f" Not run here: {w['skipped']}")
            return
        report.add_section("The word2vec side: GloVe offsets vs the o-vector", intro)
        report.add_figure(self.png)
        report.add_html(scroll_table([_set_row(name, v) for name, v in w["sets"].items()]))
        report.add_html("<div class='lensarith-title'>Each relation's own pairs (all of the task's data)</div>")
        report.add_html(scroll_table([_relation_row(task, r) for task, r in w["relations"].items()]))


def word2vec(config: ReproduceConfig, out: Outputs, layers: Layers, fig5: Fig5) -> Word2vec:
    """GloVe's nearest neighbour of b - a + a' on Fig 5's contexts (``fig5``'s runs, ``layers``'
    source pairs) and on each relation's own pairs; skipped, and said so, without GloVe."""
    from ..word2vec import compare_with_baselines, glove_relation, load_glove

    try:
        glove = load_glove()
    except LensarithError as exc:
        return Word2vec({"skipped": str(exc)})
    quads = 300 if config.small else 2000  # analogy questions per relation (a seeded sample of the pairs of pairs)
    relations = {task: glove_relation(glove, task, max_quads=quads, seed=config.seed, n_boot=config.n_boot)
                 for task in FIG5_SETS}
    sets, full = {}, {}
    for task, names in FIG5_SETS.items():
        for name in names:
            if name not in fig5.runs:
                continue
            res, batch = fig5.runs[name]
            got = compare_with_baselines(glove, name, res, batch.examples, source=layers.sources[task], seed=config.seed,
                                         n_boot=config.n_boot)
            got["relation"] = task
            full[name] = got
            sets[name] = {k: v for k, v in got.items() if k != "rows"}
    numbers = {"source": glove.source, "lowercased": True, "relations": relations, "sets": sets}
    atomic_write_text(out.results / "word2vec.json", json.dumps(full, indent=1, default=str))
    from ...viz import plots

    png = out.png(plots.analogy_bars(sets, title="The word2vec side: top-1 accuracy of the answer in Fig 5's random-token "
                                                 "contexts with o transplanted vs GloVe's nearest neighbour of b - a + a' "
                                                 "on the same pairs (GloVe 6B, lowercased; bars: bootstrap 95% CIs)"),
                  "word2vec")
    return Word2vec(numbers, png)


def _set_row(name: str, v: dict[str, Any]) -> dict[str, Any]:
    if not v.get("applicable"):
        return {"set": name, "contexts": v["n_contexts"], "o top-1": format_ci(v.get("o_top1"), v.get("o_top1_ci")),
                "GloVe": "n/a: " + v.get("why", "")}
    a = v.get("agreement") or {}
    oc = v.get("offset_cosine") or {}
    return {"set": name, "contexts": v["n_contexts"], "GloVe covers": v["n"],
            "control top-1": format_ci(v.get("control_top1"), v.get("control_top1_ci")),
            "o top-1": format_ci(v.get("o_top1"), v.get("o_top1_ci")),
            "GloVe, source offset": format_ci(v.get("glove_source"), v.get("glove_source_ci")),
            "GloVe, other pairs' offsets": format_ci(v.get("glove_pairs"), v.get("glove_pairs_ci")),
            "o - GloVe (paired)": format_ci(v["o_minus_glove"]["diff"], v["o_minus_glove"]["ci"])
            if "o_minus_glove" in v else "",
            "both / only o / only GloVe / neither": " / ".join(str(a.get(k, "")) for k in
                                                             ("both", "only_o", "only_glove", "neither")),
            "offset cosine to the mean": format_ci(oc.get("mean"), oc.get("ci"))}


def _relation_row(task: str, r: dict[str, Any]) -> dict[str, Any]:
    if not r["applicable"]:
        return {"relation": task, "analogy accuracy": "n/a: " + r["why"]}
    an, oc = r["analogy"], r["offset_cosine"]
    return {"relation": task, "pairs": an["n_pairs"], "GloVe covers": an["n_covered"],
            "analogy accuracy (pairs of pairs)": f"{format_ci(an['accuracy'], an['ci'])} (n={an['n']}"
                                                 f"{', sampled' if an['sampled'] else ''})",
            "offset cosine to the mean": format_ci(oc["mean"], oc["ci"])}
