"""Fig 5: each task's o-vector transplanted into random-token contexts, against three baselines."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..._errors import LensarithError
from ..._types import Model
from ...core import Batch, tokenize
from ...tasks import Example, build_prompts
from ..baselines import BASELINES, BaselineResult, summarize, to_transplant_result, transplant_baselines
from ..config import ReproduceConfig
from ..figures import PAPER
from ..text import scroll_table
from ..verdicts import format_ci, judge_lift
from ._layers import Layers
from ._outputs import Outputs
from ._scoring import counts

__all__ = ["Fig5", "FIG5_SETS", "MIN_SET_ITEMS", "fig5", "contexts"]

#: Fig 5's in-domain and out-of-domain context sets per task. ``region_capitals`` (capitals of
#: other countries' states and provinces) is there for real tokenizers: the 50 US states leave too
#: few items once multi-token names are dropped; a model that can score fewer than
#: ``MIN_SET_ITEMS`` of a set's items (the bundled models do not know those names) skips it.
FIG5_SETS = {"capitals": ("capitals", "us_capitals", "region_capitals"), "uppercase": ("uppercase", "uppercase_words"),
             "past": ("past_regular", "past_irregular")}
#: the fewest scored items an extra out-of-domain set needs to be run (otherwise it is skipped, and said so)
MIN_SET_ITEMS = 10


@dataclass(frozen=True)
class Fig5:
    """Fig 5's result.

    Attributes:
        numbers: ``{set: baselines.summarize(...) + task, domain}`` (``summary["figures"]["fig5"]``;
            the verdicts read each set's ``domain``, ``final`` and ``lift``).
        runs: ``{set: (BaselineResult, Batch)}``: the per-context runs (Fig 4 and the word2vec side read them).
        skipped: ``{set: why}`` for the extra out-of-domain sets not run (``summary["fig5_skipped"]``).
        scoring: ``{"fig5/<set>": counts}``.
        n_random: random vectors per context in the random baseline.
        png: the figure.
    """

    name: ClassVar[str] = "fig5"
    numbers: dict[str, dict[str, Any]]
    runs: dict[str, tuple[BaselineResult, Batch]]
    skipped: dict[str, str]
    scoring: dict[str, dict[str, Any]]
    n_random: int
    png: Path

    def line(self) -> str:
        return "fig 5: " + "; ".join(
            f"{k} MRR control {format_ci(v['final']['control']['mrr'], v['final']['control']['mrr_ci'])}, o "
            f"{format_ci(v['final']['transplant']['mrr'], v['final']['transplant']['mrr_ci'])}, random "
            f"{format_ci(v['final']['random']['mrr'], v['final']['random']['mrr_ci'])}, zeroed "
            f"{format_ci(v['final']['zeroed']['mrr'], v['final']['zeroed']['mrr_ci'])}, no effect "
            f"{format_ci(v['no_effect_rate'], v['no_effect_ci'], pct=True)} (n={v['n']})" for k, v in self.numbers.items())

    def render(self, report) -> None:
        fig5 = self.numbers
        worse = [k for k, v in fig5.items() if v["lift"]["control"]["diff"] < 0]
        report.add_section("Fig 5: o-vectors in random-token contexts, against baselines",
                           "Mean reciprocal rank of the answer per layer; contexts w1 w2 w3 X w1 w2 w3 X w1 w2 w3 for "
                           "arguments of the task's own (in-domain) and another (out-of-domain) dataset. Runs, in the same "
                           "forwards: control; o replacing the upper MLP outputs at every position (the paper); "
                           f"{self.n_random} random vectors of o's norm in o's place (seeded, averaged per context); the "
                           "same MLPs zeroed. A lift counts only against all three baselines. 'rank' = 1/MRR at the output "
                           "(1 = top); 'no real effect': the transplant did not improve the answer's output rank. "
                           "Intervals: bootstrap 95% over contexts (lifts paired per context)."
                           + (f" The transplant makes the answer worse than the control on: {', '.join(worse)}."
                              if worse else ""))
        report.add_figure(self.png)
        report.add_html(scroll_table(_fig5_rows(fig5)))
        for name, why in self.skipped.items():
            report.add_text(f"{name} skipped: {why}", note=True)


def fig5(model: Model, config: ReproduceConfig, out: Outputs, layers: Layers) -> Fig5:
    """Fig 5: per task and context set, the o-vector of ``layers`` replacing its MLPs, with the
    control, same-norm random vectors and the same MLPs zeroed in the same forwards."""
    from ...viz import plots

    numbers, runs, skipped, scoring = {}, {}, {}, {}
    for task, sets in FIG5_SETS.items():
        replace = layers.numbers[task]["replace"]
        for j, set_name in enumerate(sets):
            examples = contexts(set_name, config.n, config.seed, layers.sources[task].argument)
            try:
                batch = tokenize(model, examples, drop_multi_token=True)
            except LensarithError as exc:
                if j < 2:
                    raise
                skipped[set_name] = str(exc)
                continue
            scoring[f"fig5/{set_name}"] = counts(batch.report)
            if j >= 2 and len(batch) < MIN_SET_ITEMS:
                skipped[set_name] = (f"{len(batch)} of {len(examples)} contexts can be scored on this model (fewer than "
                                     f"{MIN_SET_ITEMS}); see summary['scoring']")
                continue
            res = transplant_baselines(model, layers.ovecs[task], batch, layers=replace, n_random=config.n_random,
                                       seed=config.seed, batch_size=config.batch_size, progress=out.progress)
            to_transplant_result(model, res, batch, layers.ovecs[task]).save(out.results / f"fig5-{set_name}")
            res.save(out.results / f"fig5-{set_name}-baselines")
            s = summarize(res, seed=config.seed, n_boot=config.n_boot)
            s.update(task=task, domain="in" if set_name == sets[0] else "out")
            numbers[set_name] = s
            runs[set_name] = (res, batch)
    panels = {f"{k} ({v['domain']}-domain)": {**v, "labels": _fig5_labels(v), "note": _fig5_note(v)}
              for k, v in numbers.items()}
    png = out.png(plots.transplant_curves(panels, runs=("control", "transplant", "random", "zeroed"),
                                          title="Fig 5: MRR of the answer per layer in random-token contexts: control, o "
                                                "transplanted, same-norm random vectors, the same MLPs zeroed (legend: "
                                                "MRR at the output [95% CI]; bands: 95% CIs)"), "fig5")
    return Fig5(numbers, runs, skipped, scoring, config.n_random, png)


def contexts(set_name: str, n: int | None, seed: int, exclude: str) -> list[Example]:
    """A set's random-token contexts: its distinct arguments but ``exclude``, shuffled with ``seed``, the first ``n``."""
    from ...vectors import transplant_contexts

    seen, examples = set(), []
    for e in build_prompts(set_name):
        key = e.argument.strip()
        if key in seen or key == exclude.strip():
            continue
        seen.add(key)
        examples.append(e)
    random.Random(seed).shuffle(examples)
    if n is not None:
        examples = examples[:n]
    return transplant_contexts(examples, seed=seed)


def _fig5_labels(s: dict[str, Any]) -> dict[str, str]:
    f = s["final"]
    names = {"control": "control", "transplant": "o transplanted", "random": f"random vectors ({s['n_random']}, o's norm)",
             "zeroed": "MLPs zeroed"}
    return {r: f"{names[r]}: {format_ci(f[r]['mrr'], f[r]['mrr_ci'])}" for r in names}


def _fig5_note(s: dict[str, Any]) -> str:
    lift = s["lift"]
    worst = min(lift, key=lambda b: lift[b]["diff"])
    f = s["final"]
    return (f"o minus best baseline ({worst}): {format_ci(lift[worst]['diff'], lift[worst]['ci'])}, lift: "
            f"{judge_lift(lift)[0]}\ntop-1 o {format_ci(f['transplant']['top1'], f['transplant']['top1_ci'])}; no effect "
            f"{format_ci(s['no_effect_rate'], s['no_effect_ci'], pct=True)}")


def _fig5_rows(fig5: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for k, v in fig5.items():
        p = PAPER["fig5"].get(k, {})
        paper = (f"{p['control_rank']} → {p['transplant_rank']}" if "control_rank" in p else p.get("text", ""))
        f = v["final"]
        row = {"set": k, "domain": v["domain"], "n": v["n"]}
        for r, name in (("control", "control"), ("transplant", "o"), ("random", "random"), ("zeroed", "zeroed")):
            row[f"MRR {name}"] = format_ci(f[r]["mrr"], f[r]["mrr_ci"])
        for r, name in (("control", "control"), ("transplant", "o"), ("random", "random"), ("zeroed", "zeroed")):
            row[f"top-1 {name}"] = format_ci(f[r]["top1"], f[r]["top1_ci"])
        row.update({"lift vs control / random / zeroed": " / ".join(format_ci(v["lift"][b]["diff"], v["lift"][b]["ci"])
                                                                   for b in BASELINES),
                    "verdict": judge_lift(v["lift"])[0],
                    "rank control → o": f"{v['control_rank']} → {v['transplant_rank']}",
                    "no real effect": format_ci(v["no_effect_rate"], v["no_effect_ci"], pct=True),
                    "copy (argument top-1, control)": format_ci(v.get("argument_top1_control"),
                                                                 v.get("argument_top1_control_ci")),
                    "paper rank": paper, "paper no real effect": p.get("no_effect")})
        rows.append(row)
    return rows
