"""``lensarith reproduce``: the paper's Figs 2-7 on any model, one JSON summary, one HTML report.

For GPT2-Medium the paper's layers are used (o-vectors from MLP 19 for capitals and
uppercasing, 18 for past tense; MLPs 18-23 replaced). Any other model gets its layers from
``lensarith.vectors.find_layers`` (a transplant sweep over layers on the task's prompts).

Outputs (every file written atomically) under ``out``:

- ``summary.json``: every figure's numbers, the chosen layers, the paper's numbers;
- ``figures/fig2.png`` ... ``fig7.png`` (+ ``patching.png``);
- ``results/<name>/``: the underlying ``Result`` objects (safetensors + JSON);
- ``report.html``: one self-contained page (figures inlined, circuitsvis bundle inlined once).
"""

from __future__ import annotations

import html
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


from .._errors import LensarithError
from .._io import atomic_directory, atomic_write_text
from ..core import tokenize
from ..core.progress import progress_bar
from ..tasks import Example, build_prompts
from .figures import (
    PAPER,
    PAPER_LAYERS,
    dla_by_position,
    find_example,
    lens_tokens,
    task_curves,
    top_heads,
    upper_layers,
)

__all__ = ["ReproduceConfig", "reproduce", "choose_layers", "format_summary", "TASKS", "FIG5_SETS", "is_gpt2_medium"]

TASKS = ("capitals", "uppercase", "past")
#: Fig 5's in-domain and out-of-domain context sets per task.
FIG5_SETS = {"capitals": ("capitals", "us_capitals"), "uppercase": ("uppercase", "uppercase_words"),
             "past": ("past_regular", "past_irregular")}
FIG7_TASKS = ("capitals", "uppercase")
FIG4_CONTEXT = Example("table mug free China table mug free China table mug free", " Beijing", " China", "random:capitals")


@dataclass(frozen=True)
class ReproduceConfig:
    """Sizes of a reproduction run.

    Attributes:
        n: prompts per task (Fig 3, Fig 7) and contexts per set (Fig 5); None: all.
        n_search: task prompts and contexts for the layer search (models other than GPT2-Medium).
        seed: seeds context sampling and the search.
        batch_size: prompts per forward.
        patching_pairs: prompt pairs for the activation-patching extra (0: skip it).
        small: a CI-sized run (recorded in the summary).
    """

    n: int | None = 200
    n_search: int = 48
    seed: int = 0
    batch_size: int = 32
    patching_pairs: int = 8
    small: bool = False

    def __post_init__(self) -> None:
        if self.n is not None and (not isinstance(self.n, int) or self.n < 2):
            raise LensarithError(f"n must be None or an int >= 2 (prompts per task), got {self.n!r}")
        if not isinstance(self.n_search, int) or self.n_search < 2:
            raise LensarithError(f"n_search must be an int >= 2, got {self.n_search!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise LensarithError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not isinstance(self.patching_pairs, int) or self.patching_pairs < 0:
            raise LensarithError(f"patching_pairs must be an int >= 0, got {self.patching_pairs!r}")

    @classmethod
    def small_run(cls, **overrides: Any) -> ReproduceConfig:
        """A quick run (CI, notebooks): 16 prompts per task, 12 for the search."""
        return cls(**{"n": 16, "n_search": 12, "patching_pairs": 4, "small": True, **overrides})


def is_gpt2_medium(model) -> bool:
    """True for GPT2-Medium (the paper's model: its layers are used as published)."""
    cfg = model.cfg
    return getattr(cfg, "model_name", "") == "gpt2-medium" or (
        cfg.n_layers == 24 and cfg.d_model == 1024 and "gpt2" in str(getattr(cfg, "original_architecture", "")).lower())


def choose_layers(model, task: str, source: Example, search_examples: list[Example], config: ReproduceConfig,
                  progress: bool | None = None) -> tuple[dict[str, Any], Any]:
    """The application layer and the replaced MLP range for a task.

    GPT2-Medium: the paper's (19/19/18 and 18-23). Otherwise ``find_layers`` on the task's
    prompts, with ``source`` as the o-vector's source prompt, sweeping the same intervention
    Fig 5 evaluates (o_l replacing MLPs l..last, then the best start of the range).

    Returns:
        ``({"method", "application", "replace", ...}, LayerSearchResult or None)``.
    """
    if is_gpt2_medium(model):
        return {"method": "paper", "application": PAPER_LAYERS["application"][task],
                "replace": list(PAPER_LAYERS["replace"])}, None
    from ..vectors import SearchConfig, find_layers

    found = find_layers(model, [source] + search_examples, source=0,
                        config=SearchConfig(n_prompts=config.n_search, n_contexts=config.n_search, seed=config.seed,
                                            apply_mode="replace"),
                        batch_size=8, progress=progress)
    info = {"method": "search", "application": found.application_layer, "replace": found.layers,
            "source_correct": found.meta.get("source_correct"), "task_accuracy": found.meta.get("task_accuracy"),
            "table": found.table()}
    return info, found


def _r(x: Any, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def _single_token(model, ex: Example) -> bool:
    try:
        b = tokenize(model, [ex], drop_multi_token=True)
    except LensarithError:
        return False
    return len(b) == 1


def _pick_source(model, task: str, batch, correct, preferred: Example | None, preferred_ok: bool) -> tuple[Example, bool]:
    if preferred is not None and preferred_ok and _single_token(model, preferred):
        return preferred, True
    exs = list(batch.examples)
    ok = correct.tolist()
    keep = [i for i in range(len(exs)) if task != "past" or exs[i].meta.get("source") == "past_regular"] or list(range(len(exs)))
    for i in keep:
        if ok[i]:
            return exs[i], True
    return exs[keep[0]], False


def _contexts(set_name: str, n: int | None, seed: int, exclude: str) -> list[Example]:
    from ..vectors import transplant_contexts

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


def _curve_summary(res, run_names=("control", "transplant")) -> dict[str, Any]:
    s = res.summary()
    out: dict[str, Any] = {"n": s["n"], "layers": list(res.labels["layer"])}
    for run in run_names:
        mrr = res.mrr("answer", run)
        out[run] = [round(float(x), 4) for x in mrr]
        out[f"{run}_mrr_last"] = _r(mrr[-1])
        out[f"{run}_rank"] = _r(1.0 / float(mrr[-1]), 2) if float(mrr[-1]) > 0 else None
        out[f"{run}_top1"] = _r(s[f"answer_top1_{run}"])
        out[f"{run}_median_rank"] = s[f"answer_median_rank_{run}"] + 1
    out["no_effect_rate"] = _r(s["no_effect_rate"])
    if "argument_top1_control" in s:
        out["argument_top1_control"] = _r(s["argument_top1_control"])
    return out


def _nearest(values: list[int], target: float) -> int:
    return min(range(len(values)), key=lambda i: (abs(values[i] - target), -values[i]))


def reproduce(
    model,
    out: str | Path,
    config: ReproduceConfig = ReproduceConfig(),
    *,
    model_name: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Regenerate the paper's Figs 2-7 for ``model``; write results, figures, summary and report.

    Args:
        model: a HookedTransformer whose tokenizer covers the task prompts.
        out: the output folder.
        config: sizes (``ReproduceConfig()`` or ``ReproduceConfig.small_run()``).
        model_name: the name recorded in the summary (default ``model.cfg.model_name``).
        progress: show progress bars.
        log: receives one line per finished figure (default: silent).

    Returns:
        The summary (also written to ``out/summary.json``).
    """
    if not isinstance(config, ReproduceConfig):
        raise LensarithError(f"config must be a lensarith.paper.ReproduceConfig, got {type(config).__name__}")
    final = Path(out)
    if final.exists() and not final.is_dir():
        raise LensarithError(f"out={str(final)!r} exists and is not a folder")
    # every output of the run is written into a staging folder that replaces ``out`` as a whole:
    # a reader sees this run's results, figures, summary and report together, or the previous run's
    with atomic_directory(final) as stage:
        return _reproduce(model, final, stage, config, model_name=model_name, progress=progress, log=log)


def _reproduce(model, final: Path, out: Path, config: ReproduceConfig, *, model_name: str | None,
               progress: bool | None, log: Callable[[str], None] | None) -> dict[str, Any]:
    """``reproduce`` writing into ``out`` (the staging folder); paths are recorded under ``final``."""
    from ..viz import circuits, plots
    from ..viz.report import Report

    say = log or (lambda s: None)
    figs, results = out / "figures", out / "results"
    L = model.cfg.n_layers
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    summary: dict[str, Any] = {
        "model": model_name or getattr(model.cfg, "model_name", "unknown"), "n_layers": L, "d_model": model.cfg.d_model,
        "config": asdict(config), "paper": PAPER, "layers": {}, "figures": {}, "files": {}}
    report = Report(f"lensarith reproduction of Merullo, Eickhoff & Pavlick (2023) on {summary['model']}",
                    subtitle=f"{L} layers, d_model {model.cfg.d_model}; n={config.n} prompts per task"
                             f"{' (small run)' if config.small else ''}; seed {config.seed}")
    steps = progress_bar(total=9, desc="reproduce", unit="step", show=progress)
    fig_out = summary["figures"]

    def tick(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 2)
        steps.update(1)

    def png(fig, name: str) -> Path:
        path = plots.save_png(fig, figs / f"{name}.png")
        summary["files"][name] = str(final / path.relative_to(out))
        return path

    # ---- Fig 3: the X pattern per task
    t0 = time.perf_counter()
    fig3, task_data = {}, {}
    for task in TASKS:
        s, lens, batch, correct = task_curves(model, task, n=config.n, batch_size=config.batch_size, seed=config.seed,
                                             progress=progress)
        lens.save(results / f"fig3-{task}")
        fig3[task] = s
        task_data[task] = (batch, correct)
    fig_out["fig3"] = fig3
    png(plots.x_pattern(fig3, title="Fig 3: mean reciprocal rank per layer (examples answered correctly)"), "fig3")
    tick("fig3", t0)
    say("fig 3: " + "; ".join(f"{t} acc {s['accuracy']:.2f}, crossover layer {s['crossover_layer']}" for t, s in fig3.items()))

    # ---- Fig 2 / Table 1 and Fig 6's prompts: logit lens tokens per layer
    t0 = time.perf_counter()
    paper_prompts = (find_example("capitals", argument="Poland"),
                     find_example("uppercase", answer="Brown", contains="sheet of paper"))
    _, paper_toks = lens_tokens(model, list(paper_prompts), k=1, batch_size=config.batch_size, progress=False)
    shown, notes = [], {}
    for key, ex, t, task in (("capitals", paper_prompts[0], paper_toks[0], "capitals"),
                             ("colours", paper_prompts[1], paper_toks[1], "uppercase")):
        if t["top1"][-1].strip() == ex.answer.strip():
            shown.append(ex)
            continue
        batch, correct = task_data[task]
        alt = next((e for e, ok in zip(batch.examples, correct.tolist()) if ok), None)
        shown.append(alt or ex)
        notes[key] = {"paper_prompt_prediction": t["top1"][-1], "paper_prompt_answer": ex.answer,
                      "paper_prompt_argument": ex.argument, "substituted": alt is not None}
    cap_ex, col_ex = shown
    cap_x = find_example("capitals", argument=cap_ex.argument.strip(), format="extractive")
    lens3, toks = lens_tokens(model, [cap_ex, col_ex, cap_x], k=5, batch_size=config.batch_size, progress=False)
    lens3.save(results / "fig2-lens")
    fig2 = {}
    for key, ex, t in (("capitals", paper_prompts[0], toks[0]), ("colours", paper_prompts[1], toks[1])):
        fig2[key] = {kk: v for kk, v in t.items() if kk != "probs"}
        fig2[key]["correct"] = t["top1"][-1].strip() == t["answer"].strip()
        fig2[key]["paper_prompt"] = key not in notes or not notes[key]["substituted"]
        fig2[key].update(notes.get(key, {}))
    fig_out["fig2"] = fig2
    marks = {e.argument: "#cfe2ff" for e in (cap_ex, col_ex)} | {e.answer: "#ffe0b2" for e in (cap_ex, col_ex)}
    png(plots.token_grid(toks[0]["layers"], {f"{cap_ex.argument.strip()} prompt": toks[0]["top1"],
                                             f"colours ({col_ex.argument.strip()}) prompt": toks[1]["top1"]},
                         title="Fig 2 / Table 1: top-1 logit-lens token per layer (last position)", highlight=marks), "fig2")
    intro = ("Top-1 token decoded from the residual stream after each layer at the last position (argument blue, answer "
             "orange). Paper, GPT2-Medium: " + PAPER["fig2"]["poland"] + "; " + PAPER["fig2"]["colours"] + ".")
    for key, n in notes.items():
        intro += (f" The model answers the paper's {key} prompt ({n['paper_prompt_argument'].strip()} → "
                  f"{n['paper_prompt_answer'].strip()}) with {n['paper_prompt_prediction'].strip()!r}"
                  + ("; shown instead: the first prompt of the task it answers correctly." if n["substituted"] else "."))
    report.add_section("Fig 2 / Table 1: the logit lens on two prompts", intro)
    report.add_figure(figs / "fig2.png", caption="top-1 token per layer")
    for i, key in enumerate(("capitals", "colours")):
        t = toks[i]
        report.add_widget(circuits.logit_lens_table(lens3, i, k=5, title=f"{key}: ...{t['prompt'][-60:]!r} → {t['answer']!r}"))
        report.add_text(f"{key}: argument top-1 at layers {t['argument_layers'] or 'none'}; answer top-1 from layer "
                        f"{t['answer_from'] if t['answer_from'] is not None else 'never'} (of {L}).", note=True)
    tick("fig2", t0)
    say(f"fig 2: {cap_ex.argument.strip()} prompt: argument layers {toks[0]['argument_layers']}, answer from "
        f"{toks[0]['answer_from']}; colours ({col_ex.argument.strip()}) answer from {toks[1]['answer_from']}"
        + "".join(f"; the paper's {k} prompt is answered {n['paper_prompt_prediction'].strip()!r}" for k, n in notes.items()))

    report.add_section("Fig 3: argument and answer per layer (the 'X')",
                       "Mean reciprocal rank 1/(rank+1) of the argument and the answer at the last position, per layer, "
                       "over the prompts the model answers correctly. Paper: " + PAPER["fig3"]["text"] + ".")
    report.add_figure(figs / "fig3.png")
    report.add_table([{"task": t, "n": s["n"], "accuracy": s["accuracy"], "argument peak layer": s["argument_peak_layer"],
                       "argument peak MRR": s["argument_peak_mrr"], "answer above argument from layer": s["crossover_layer"],
                       "fraction of depth": s["crossover_fraction"]} for t, s in fig3.items()])

    # ---- layers: the paper's for GPT2-Medium, else the transplant layer search
    t0 = time.perf_counter()
    sources: dict[str, Example] = {}
    for task in TASKS:
        batch, correct = task_data[task]
        preferred = cap_ex if task == "capitals" else None
        src, src_ok = _pick_source(model, task, batch, correct, preferred, bool(fig2["capitals"]["correct"]))
        sources[task] = src
        others = [e for e, c in zip(batch.examples, correct.tolist()) if c and e.prompt != src.prompt]
        others += [e for e, c in zip(batch.examples, correct.tolist()) if not c and e.prompt != src.prompt]
        info, found = choose_layers(model, task, src, others[: config.n_search - 1], config, progress=progress)
        info.update(source=src.prompt, source_answer=src.answer, source_correct_check=src_ok)
        summary["layers"][task] = info
        if found is not None:
            found.save(results / f"layers-{task}")
    report.add_section("Layers",
                       "GPT2-Medium uses the paper's layers (o from MLP 19 / 19 / 18, MLPs 18-23 replaced); other models "
                       "use lensarith.vectors.find_layers (each layer's o transplanted into random-token contexts; "
                       "the layer lifting the answer most, then the best start of the replaced range).")
    report.add_table([{"task": t, "method": i["method"], "o from MLP": i["application"],
                       "replaced MLPs": f"{i['replace'][0]}-{i['replace'][-1]}", "source prompt": i["source"][-60:],
                       "source answered correctly": i["source_correct_check"]} for t, i in summary["layers"].items()])
    tick("layers", t0)
    say("layers: " + "; ".join(f"{t} o@{i['application']} replace {i['replace'][0]}-{i['replace'][-1]} ({i['method']})"
                               for t, i in summary["layers"].items()))

    # ---- o-vectors
    from ..vectors import extract_o_vector, transplant

    ovecs = {}
    for task in TASKS:
        o = extract_o_vector(model, [sources[task]], summary["layers"][task]["application"], reduce="mean")
        o.save(results / f"o-{task}")
        ovecs[task] = o

    # ---- Fig 4: one random-token example
    t0 = time.perf_counter()
    ctx = FIG4_CONTEXT
    try:
        tokenize(model, [ctx])
    except LensarithError:
        ctx = _contexts("capitals", 1, config.seed, sources["capitals"].argument)[0]
    layers_c = summary["layers"]["capitals"]["replace"]
    res4 = transplant(model, ovecs["capitals"], [ctx], layers=layers_c, mode="replace", positions="all",
                      drop_multi_token=True, progress=False)
    res4.save(results / "fig4")
    rr_c = res4.reciprocal_rank("answer", "control")[:, 0].tolist()
    rr_t = res4.reciprocal_rank("answer", "transplant")[:, 0].tolist()
    top = res4.meta.get("top1_tokens", {})
    fig_out["fig4"] = {"context": ctx.prompt, "answer": ctx.answer, "argument": ctx.argument, "source": sources["capitals"].prompt,
                       "layers": list(res4.labels["layer"]), "original": [round(x, 4) for x in rr_c],
                       "transplant": [round(x, 4) for x in rr_t], "replaced": layers_c,
                       "top1_original": top.get("control", [None])[0], "top1_transplant": top.get("transplant", [None])[0],
                       "answer_rank_original": int(res4.rank("answer", "control")[-1, 0]) + 1,
                       "answer_rank_transplant": int(res4.rank("answer", "transplant")[-1, 0]) + 1}
    png(plots.example_curve(res4.labels["layer"], rr_c, rr_t, token=ctx.answer,
                            title=f"Fig 4: {ctx.prompt[:40]}... MLPs {layers_c[0]}-{layers_c[-1]} replaced by o"), "fig4")
    f4 = fig_out["fig4"]
    report.add_section("Fig 4: one random-token context",
                       f"Context {ctx.prompt!r}; o from the source prompt's MLP {summary['layers']['capitals']['application']} "
                       f"replaces MLPs {layers_c[0]}-{layers_c[-1]} at every position. Prediction: {f4['top1_original']!r} → "
                       f"{f4['top1_transplant']!r}; rank of {ctx.answer!r}: {f4['answer_rank_original']} → "
                       f"{f4['answer_rank_transplant']}. Paper: " + PAPER["fig4"]["text"] + ".")
    report.add_figure(figs / "fig4.png")
    tick("fig4", t0)
    say(f"fig 4: {ctx.argument.strip()} context, prediction {f4['top1_original']!r} -> {f4['top1_transplant']!r}, "
        f"rank of {ctx.answer!r} {f4['answer_rank_original']} -> {f4['answer_rank_transplant']}")

    # ---- Fig 5: control vs transplant, in- and out-of-domain
    t0 = time.perf_counter()
    fig5 = {}
    for task, sets in FIG5_SETS.items():
        for set_name in sets:
            contexts = _contexts(set_name, config.n, config.seed, sources[task].argument)
            res = transplant(model, ovecs[task], contexts, layers=summary["layers"][task]["replace"], mode="replace",
                             positions="all", batch_size=config.batch_size, drop_multi_token=True, progress=progress)
            res.save(results / f"fig5-{set_name}")
            s = _curve_summary(res)
            s.update(task=task, domain="in" if set_name == sets[0] else "out")
            fig5[set_name] = s
    fig_out["fig5"] = fig5
    png(plots.transplant_curves({f"{k} ({v['domain']}-domain)": v for k, v in fig5.items()},
                                title="Fig 5: MRR of the answer per layer, control vs o transplanted"), "fig5")
    report.add_section("Fig 5: o-vectors in random-token contexts",
                       "Mean reciprocal rank of the answer per layer without (control) and with the task's o replacing "
                       "the upper MLP outputs; contexts w1 w2 w3 X w1 w2 w3 X w1 w2 w3 for arguments of the task's own "
                       "(in-domain) and another (out-of-domain) dataset. 'rank' = 1/MRR at the last layer (1 = top). "
                       "'no real effect': the transplant did not improve the answer's final rank.")
    report.add_figure(figs / "fig5.png")
    report.add_table(_fig5_rows(fig5))
    tick("fig5", t0)
    say("fig 5: " + "; ".join(f"{k} rank {v['control_rank']} -> {v['transplant_rank']}, no effect {v['no_effect_rate']:.2f}"
                              for k, v in fig5.items()))

    # ---- Fig 6: abstractive vs extractive, upper layers
    t0 = time.perf_counter()
    up = upper_layers(L) if not is_gpt2_medium(model) else PAPER_LAYERS["fig6_layers"]
    fig6 = {}
    for name, t in (("abstractive", toks[0]), ("extractive", toks[2])):
        fig6[name] = {"prompt": t["prompt"], "layers": up, "top1": [t["top1"][i] for i in up],
                      "answer_from": t["answer_from"], "argument_layers": t["argument_layers"]}
    fig_out["fig6"] = fig6
    png(plots.token_grid([toks[0]["layers"][i] for i in up], {"abstractive": fig6["abstractive"]["top1"],
                                                             "extractive": fig6["extractive"]["top1"]},
                         title=f"Fig 6: top-1 token, layers {up[0]}-{up[-1]}", highlight=marks), "fig6")
    report.add_section("Fig 6: abstractive vs extractive (capitals)",
                       f"Layers {up[0]}-{up[-1]}. Abstractive answer from layer {fig6['abstractive']['answer_from']}, "
                       f"extractive from layer {fig6['extractive']['answer_from']}. Paper: " + PAPER["fig6"]["text"] + ".")
    report.add_figure(figs / "fig6.png")
    report.add_widget(circuits.logit_lens_table(lens3, 0, k=3, layers=up, title="abstractive: " + cap_ex.prompt.splitlines()[-2]))
    report.add_widget(circuits.logit_lens_table(lens3, 2, k=3, layers=up, title="extractive: " + cap_x.prompt.splitlines()[0]))
    tick("fig6", t0)
    say(f"fig 6: answer from layer {fig6['abstractive']['answer_from']} (abstractive) vs "
        f"{fig6['extractive']['answer_from']} (extractive)")

    # ---- Fig 7: FFN ablation
    t0 = time.perf_counter()
    from ..ablation import ffn_ablation

    fig7, panels = {}, {}
    for task in FIG7_TASKS:
        res = ffn_ablation(model, task, n=config.n, batch_size=config.batch_size, progress=progress)
        res.save(results / f"fig7-{task}")
        removed = res.n_removed
        acc = {s: [round(float(x), 4) for x in res.accuracy_of(s)] for s in res.sets}
        k80 = _nearest(removed, 0.8 * L)
        rel = {s: (None if acc[s][0] == 0 else round(1 - acc[s][k80] / acc[s][0], 4)) for s in res.sets}
        fig7[task] = {"removed": removed, "accuracy": acc, "sizes": res.meta.get("sizes"), "at_80pct": removed[k80],
                      "relative_drop_at_80pct": rel, "drop_all": {s: round(res.drop(s), 4) for s in res.sets},
                      "table": res.table()}
        panels[task] = {"removed": removed, **acc}
    fig_out["fig7"] = fig7
    png(plots.ablation_curves(panels, title="Fig 7: accuracy as MLPs are removed from the top down"), "fig7")
    report.add_section("Fig 7: removing MLPs from the top down",
                       "Zero-ablating the top k MLPs (one sixth of the layers at a time): top-1 accuracy on abstractive "
                       "prompts (answer from memory) and extractive prompts (answer in the context). Paper (BLOOM): "
                       "extractive -17%, abstractive -73% after 24 of 30 FFNs.")
    report.add_figure(figs / "fig7.png")
    for task, d in fig7.items():
        report.add_table(d["table"], caption=f"{task} (relative drop after {d['at_80pct']} of {L} MLPs: "
                                             + ", ".join(f"{s} {v:.0%}" for s, v in d["relative_drop_at_80pct"].items()
                                                         if v is not None) + ")")
    tick("fig7", t0)
    say("fig 7: " + "; ".join(f"{t}: after {d['at_80pct']} MLPs " + ", ".join(
        f"{s} {d['accuracy'][s][0]:.2f}->{d['accuracy'][s][d['removed'].index(d['at_80pct'])]:.2f}" for s in d["accuracy"])
        for t, d in fig7.items()))

    # ---- renderers on the capitals source prompt: per-position DLA, top heads, patching
    t0 = time.perf_counter()
    _extras(model, sources["capitals"], task_data["capitals"], config, summary, report, results, png, figs, progress)
    tick("extras", t0)

    summary["timings_s"] = {**timings, "total": round(time.perf_counter() - t_start, 2)}
    report.add_section("Ours vs the paper", "Every figure's headline number on this model next to the paper's "
                                            "(GPT2-Medium; Fig 7: BLOOM).")
    report.add_html("<pre style='font-size:12px;background:#f8f8f8;padding:8px'>" +
                    html.escape(format_summary(summary)) + "</pre>")
    report.add_section("Files", "summary.json holds every number shown here; results/ the tensors (safetensors + JSON); "
                                "figures/ the PNGs.")
    summary["files"]["summary"] = str(final / "summary.json")
    summary["files"]["report"] = str(final / "report.html")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    report.save(out / "report.html")
    steps.update(1)
    steps.close()
    return summary


def _fig5_rows(fig5: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for k, v in fig5.items():
        p = PAPER["fig5"].get(k, {})
        paper = (f"{p['control_rank']} → {p['transplant_rank']}" if "control_rank" in p else p.get("text", ""))
        rows.append({"set": k, "domain": v["domain"], "n": v["n"], "copy (argument top-1, control)": v.get("argument_top1_control"),
                     "rank control → transplant": f"{v['control_rank']} → {v['transplant_rank']}",
                     "top-1 control → transplant": f"{v['control_top1']:.2f} → {v['transplant_top1']:.2f}",
                     "no real effect": v["no_effect_rate"], "paper rank": paper,
                     "paper no real effect": p.get("no_effect")})
    return rows


def _extras(model, source: Example, capitals, config, summary, report, results, png, figs, progress) -> None:
    from ..viz import circuits

    extras: dict[str, Any] = {}
    report.add_section("Inside the capitals prompt: renderers",
                       "Per-position direct logit attribution through attention, the attention patterns of the heads "
                       "with the largest direct effect, and activation patching between capitals prompts.")
    tokens, values = dla_by_position(model, source)
    extras["dla_by_position"] = {"prompt": source.prompt, "tokens": tokens, "values": [round(v, 4) for v in values]}
    report.add_widget(circuits.colored_tokens(tokens, values, title=f"direct effect via attention of each position on "
                                                                    f"logit({source.answer!r}) - logit({source.argument!r})"))
    batch, correct = capitals
    idx = correct.nonzero().flatten()
    sub = batch.take(idx[:32]) if len(idx) else batch[0:32]
    heads = top_heads(model, sub, k=2, batch_size=config.batch_size)
    extras["top_heads"] = [{"layer": l, "head": h, "mean_dla": round(v, 4)} for l, h, v in heads]
    if heads:
        report.add_widget(circuits.attention_patterns(model, source, [(l, h) for l, h, _ in heads],
                                                      title="attention of the heads with the largest direct effect on "
                                                            "answer - argument: " + ", ".join(f"L{l}H{h}" for l, h, _ in heads)))
    if config.patching_pairs:
        from ..patching import activation_patch, pair_examples

        try:
            pairs = pair_examples(model, build_prompts("capitals", n=max(40, 4 * config.patching_pairs)),
                                  n=config.patching_pairs, seed=config.seed)
            pat = activation_patch(model, pairs, site="resid_pre", metric="recovery", progress=progress)
        except LensarithError as exc:
            extras["patching"] = {"skipped": str(exc)}
            report.add_text(f"activation patching skipped: {exc}", note=True)
        else:
            pat.save(results / "patching")
            from ..viz.heatmap import heatmap

            labels = pat.labels.get("pos", [str(i) for i in range(pat.values.shape[1])])
            png(heatmap(pat, title="activation patching (resid_pre, clean into corrupted): recovery of the logit "
                                   "difference (0 = corrupted run, 1 = clean run)"), "patching")
            best = int(pat.values.abs().amax(-1).argmax())
            extras["patching"] = {"pairs": len(pairs), "site": "resid_pre", "metric": "recovery",
                                  "values": [[round(float(x), 4) for x in row] for row in pat.values],
                                  "layers": pat.labels["layer"], "positions": labels, "clean_mean": float(pat.clean.mean()),
                                  "corrupted_mean": float(pat.corrupted.mean())}
            report.add_figure(figs / "patching.png", caption=f"{len(pairs)} pairs of capitals prompts (same length, "
                                                             "different answers); e.g. " + pairs.clean.examples[0].prompt.splitlines()[-2])
            report.add_widget(circuits.patch_tokens(pat, best, title=f"patching by position at layer {pat.labels['layer'][best]}"))
    summary["figures"]["extras"] = extras


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.2f}"
    return str(x)


def format_summary(summary: dict[str, Any]) -> str:
    """Every figure's headline numbers next to the paper's, as text."""
    f = summary["figures"]
    L = summary["n_layers"]
    rows: list[tuple[str, str, str]] = []
    if "fig2" in f:
        p, c = f["fig2"]["capitals"], f["fig2"]["colours"]
        arg, ans = p["argument"].strip(), p["answer"].strip()
        extra = ("" if p["paper_prompt"] else
                 f" (Poland prompt answered {p.get('paper_prompt_prediction', '?').strip()!r}; shown: {arg})")
        rows.append((f"Fig 2 {arg}", f"{arg!r} top-1 at layers {p['argument_layers'] or 'none'}, {ans!r} from "
                                     f"{_fmt(p['answer_from'])} (of {L}); predicts {p['top1'][-1].strip()!r}{extra}",
                     PAPER["fig2"]["poland"]))
        extra = ("" if c["paper_prompt"] else
                 f" (brown-paper prompt answered {c.get('paper_prompt_prediction', '?').strip()!r})")
        rows.append(("Fig 2 colours", f"({c['argument'].strip()}) {c['answer'].strip()!r} from {_fmt(c['answer_from'])} (of {L}); "
                                      f"predicts {c['top1'][-1].strip()!r}{extra}", PAPER["fig2"]["colours"]))
    for task, s in f.get("fig3", {}).items():
        rows.append((f"Fig 3 {task}", f"acc {s['accuracy']:.2f} (n={s['n']}); argument peak L{s['argument_peak_layer']} "
                                      f"(MRR {s['argument_peak_mrr']:.2f}); answer above argument from L{_fmt(s['crossover_layer'])}"
                                      f" = {_fmt(s['crossover_fraction'])} of depth", "~2/3 of depth"))
    if "fig4" in f:
        d = f["fig4"]
        rows.append(("Fig 4", f"{d['top1_original']!r} -> {d['top1_transplant']!r}; rank of {d['answer']!r} "
                              f"{d['answer_rank_original']} -> {d['answer_rank_transplant']}", "' Beijing' promoted to the top"))
    for k, v in f.get("fig5", {}).items():
        p = PAPER["fig5"].get(k, {})
        paper = (f"rank {p['control_rank']} -> {p['transplant_rank']}" if "control_rank" in p else p.get("text", ""))
        if "no_effect" in p:
            paper += f", no effect {p['no_effect']:.0%}"
        rows.append((f"Fig 5 {k}", f"rank {_fmt(v['control_rank'])} -> {_fmt(v['transplant_rank'])}, top-1 "
                                   f"{v['control_top1']:.2f} -> {v['transplant_top1']:.2f}, no effect {v['no_effect_rate']:.0%}"
                                   f" (n={v['n']})", paper))
    if "fig6" in f:
        a, e = f["fig6"]["abstractive"], f["fig6"]["extractive"]
        rows.append(("Fig 6", f"answer top-1 from L{_fmt(a['answer_from'])} (abstractive) vs L{_fmt(e['answer_from'])} "
                              "(extractive)", "extractive saturates at once"))
    for task, d in f.get("fig7", {}).items():
        rel, j = d["relative_drop_at_80pct"], d["removed"].index(d["at_80pct"])
        rows.append((f"Fig 7 {task}", f"after {d['at_80pct']}/{L} MLPs: " + ", ".join(
            f"{s} {acc[0]:.2f}->{acc[j]:.2f}" + (f" (-{rel[s]:.0%})" if rel[s] is not None else "")
            for s, acc in d["accuracy"].items()), "BLOOM, 24/30 FFNs: extractive -17%, abstractive -73%"))
    w1 = max(len(r[0]) for r in rows) if rows else 6
    w2 = max(len(r[1]) for r in rows) if rows else 4
    head = f"{'figure':<{w1}}  {'ours (' + str(summary['model']) + ')':<{w2}}  paper (GPT2-Medium)"
    return "\n".join([head, "-" * len(head)] + [f"{a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in rows])
