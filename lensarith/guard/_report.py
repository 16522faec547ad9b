"""The operator's page: which FFN, how sure (both ways), how well the monitor catches wrong answers,
what each intervention buys and costs, the generation overhead, the spec and the criteria.
One self-contained HTML file (figures inlined, no external resource)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from ..viz.plots import _figure, png_bytes
from ..viz.report import Report
from ._locate import locate_figure
from ._loop import GuardResult
from ._monitor import monitor_figure

__all__ = ["guard_report", "effects_figure"]


def effects_figure(res, *, title: str = ""):
    """Paired change per set (accuracy; LM loss in its own panel) for each policy, with 95% intervals."""
    sets = res.labels["set"]
    pols = res.labels["policy"]
    acc_sets = [s for s in sets if s != "lm_loss"]
    fig = _figure((10.0, 4.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1]})
    width = 0.8 / max(len(pols), 1)
    xs = np.arange(len(acc_sets))
    for p, name in enumerate(pols):
        idx = [sets.index(s) for s in acc_sets]
        d = res.tensors["delta"][p, idx].numpy()
        err = np.stack([d - res.tensors["delta_lo"][p, idx].numpy(), res.tensors["delta_hi"][p, idx].numpy() - d])
        ax1.bar(xs + (p - (len(pols) - 1) / 2) * width, d, width, yerr=np.clip(err, 0, None), capsize=2, label=name)
        j = sets.index("lm_loss")
        dl = float(res.tensors["delta"][p, j])
        el = [[dl - float(res.tensors["delta_lo"][p, j])], [float(res.tensors["delta_hi"][p, j]) - dl]]
        ax2.bar([p], [dl], yerr=np.clip(el, 0, None), capsize=2)
    ax1.set_xticks(xs)
    ax1.set_xticklabels(acc_sets, rotation=35, ha="right", fontsize=7)
    ax1.axhline(0, color="k", lw=0.8)
    ax1.set_ylabel("accuracy change vs unmodified")
    ax1.legend(fontsize=7)
    ax2.set_xticks(range(len(pols)))
    ax2.set_xticklabels(pols, rotation=60, ha="right", fontsize=6)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_ylabel("LM loss change (nats/token)")
    ax1.set_title(title or f"side effects of each policy at MLP {res.meta['policies'][pols[0]]['layer']}", fontsize=10)
    return fig


def guard_report(res: GuardResult, path: str | os.PathLike[str] | None = None) -> str:
    """The HTML page for a ``GuardResult`` (written atomically to ``path`` when given); returns the HTML."""
    s = res.summary
    loc = res.locate
    r = Report(f"operator's loop: {s['task']} on {s['model']}",
               subtitle="locate -> monitor -> intervene -> side effects -> hand-off; every number computed in this run")
    nec, suf = loc.necessary_layers, loc.sufficient_layers
    r.add_section("1. Which FFN", f"Watching and editing MLP {s['layer']}, chosen by {s['chosen_by']}. Necessary MLPs "
                  f"(the relation is lost without them): {nec or 'none'}; sufficient MLPs (their output, transplanted, "
                  f"writes the relation elsewhere): {suf or 'none'}.")
    r.add_text("Necessity answers 'which MLP does the model need for this relation?' (that MLP alone removed: zero or mean, "
               "at the last position or at every position). Sufficiency (find_layers' transplant sweep) and DLA answer "
               "'which MLP can write the relation?'. They can disagree, and the verdict column keeps them apart.", note=True)
    r.add_figure(png_bytes(locate_figure(loc)), caption="top: accuracy drop with 95% paired bootstrap intervals; bottom: "
                                                         "transplant gain and DLA; x labels carry the verdict")
    rows = [{k: v for k, v in row.items() if not k.startswith("dlogp")} for row in loc.table()]
    r.add_table(rows, caption=f"per layer (n={loc.meta['n']} prompts, clean accuracy {loc.meta['clean_accuracy']:.2f})")
    r.add_section("2. How well the monitor catches wrong answers")
    if res.monitor_eval is None:
        r.add_text(s["notes"].get("monitor", "no monitor"))
    else:
        ev = res.monitor_eval
        r.add_text(s.get("monitor_verdict", ""))
        r.add_text(f"{ev.meta['n']} labelled prompts ({ev.meta['n_wrong']} wrong; formats {', '.join(ev.meta['formats'])}), "
                   f"split by argument: fit on {ev.meta['n_fit']}, reported on {ev.meta['n_held_out']} held-out prompts "
                   f"whose answer is not in their context; {ev.meta['n_leaked_held_out']} held-out prompts with the answer "
                   f"in the context are scored separately (leakage control). Alert threshold: the fit half's top "
                   f"{ev.meta['alert_rate']:.0%}.", note=True)
        r.add_figure(png_bytes(monitor_figure(ev)), caption="ROC on held-out arguments; dashed: the model's own confidence")
        cols = ["group", "feature", "n", "n_wrong", "auroc", "auroc_lo", "auroc_hi", "precision", "precision_lo",
                "precision_hi", "recall", "recall_lo", "recall_hi", "alert_rate"]
        r.add_table(ev.meta["metrics"], cols, caption="metrics with 95% bootstrap intervals (NaN: undefined, e.g. no "
                                                      "wrong answer in the group)")
    r.add_section("3. What each intervention buys and costs")
    eff = res.effects
    r.add_figure(png_bytes(effects_figure(eff)), caption="paired change vs the unmodified model, 95% bootstrap intervals")
    r.add_table(eff.table(), caption=f"known tasks: {eff.meta['criterion_known']}; LM loss on {eff.meta['n_text_windows']} "
                                     f"windows of data/text/held_out.txt (lower is better; a uniform guess scores "
                                     f"ln(d_vocab) = {np.log(eff.meta['d_vocab']):.2f} nats)")
    for k, v in s.get("notes", {}).items():
        if k.startswith("gate"):
            r.add_text(v)
    r.add_section("4. Generation overhead")
    r.add_table(res.overhead, caption="greedy generation through lensarith.core (median of interleaved repeats); ratio "
                                      "to plain generation in the same run")
    r.add_section("5. Hand-off spec")
    iv = res.spec["intervention"]
    r.add_text(f"Exported: {iv['policy']} at {iv['hook']} (operation {iv['operation']}, positions {iv['position']}, "
               f"gate {None if iv['gate'] is None else iv['gate']['kind']}). replay_spec reproduces the live policy's "
               "logits through lensarith (tested). Mapping: the hook is the same legacy name in TransformerLens 4's "
               "bridge and model.model.layers[L].mlp.output in nnsight; add / set / scale are x+v, v and factor*x at the "
               "listed positions. A gate is a conditional edit and needs an engine-side hook. Not run here: no GPU "
               "serving engine (vLLM) is available on these machines, so neither TransformerLens 4's remote/vLLM bridge "
               "nor nnsight's vLLM wrapper was exercised.")
    short = json.dumps({**res.spec, "intervention": {k: (f"[{len(v)} numbers]" if isinstance(v, list) else v)
                                                     for k, v in iv.items() if k != "gate"}}, indent=1, default=str)
    r.add_html(f"<pre style='font-size:12px'>{html.escape(short[:3000])}</pre>")
    r.add_section("6. Criteria")
    for k, v in loc.meta["criteria"].items():
        r.add_text(f"{k}: {v}")
    r.add_text("monitor: AUROC, precision and recall on held-out arguments; an internal read-out beats confidence only "
               "when its interval lies above confidence's.")
    page = r.html()
    if path is not None:
        r.save(path)
    return page
