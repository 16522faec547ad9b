"""``lensarith reproduce``: the paper's Figs 2-7 on any model, one JSON summary, one HTML report.

For GPT2-Medium the paper's layers are used (o-vectors from MLP 19 for capitals and
uppercasing, 18 for past tense; MLPs 18-23 replaced). Any other model gets its layers from
``lensarith.vectors.find_layers`` (a transplant sweep over layers on the task's prompts).

Every rate and MRR comes with a seeded bootstrap 95% interval over examples
(``lensarith.paper.stats``); Fig 5 compares the transplant with three baselines run in the
same forwards (control, same-norm random vectors, the same MLPs zeroed); and a
"reproduced?" column is computed for each claim from stated criteria
(``lensarith.paper.verdicts``), never typed by hand. Hub models are tokenized as the
paper's code did (``tokenizer.encode``: no BOS token) unless ``ReproduceConfig(prepend_bos=True)``;
lensarith-trained models keep their own convention (``lensarith.paper.tokenization``).

Outputs (every file written atomically) under ``out``:

- ``summary.json``: every figure's numbers with intervals, the chosen layers, the paper's
  numbers, the tokenization used, ``verdicts`` (claim, criterion, numbers, verdict);
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import LensarithError
from .._io import atomic_directory, atomic_write_text
from ..core import tokenize
from ..core.progress import progress_bar
from ..tasks import Example, build_prompts
from .baselines import BASELINES, summarize, to_transplant_result, transplant_baselines
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
from .stats import N_RESAMPLES, bootstrap_distribution, percentile_ci
from .text import REPORT_CSS, caveats_html, format_summary, headline_table_html, scroll_table, verdict_table_html
from .tokenization import bos_convention, bos_plan
from .verdicts import NOISE_FLOOR, format_ci, judge_contrast, judge_depth, judge_lift, judge_x, verdicts

__all__ = ["ReproduceConfig", "reproduce", "reproduce_models", "write_comparison", "comparison_rows", "choose_layers", "format_summary", "TASKS", "FIG5_SETS", "is_gpt2_medium"]

TASKS = ("capitals", "uppercase", "past")
#: Fig 5's in-domain and out-of-domain context sets per task. ``region_capitals`` (capitals of
#: other countries' states and provinces) is there for real tokenizers: the 50 US states leave too
#: few items once multi-token names are dropped; a model that can score fewer than
#: ``MIN_SET_ITEMS`` of a set's items (the bundled models do not know those names) skips it.
FIG5_SETS = {"capitals": ("capitals", "us_capitals", "region_capitals"), "uppercase": ("uppercase", "uppercase_words"),
             "past": ("past_regular", "past_irregular")}
#: the fewest scored items an extra out-of-domain set needs to be run (otherwise it is skipped, and said so)
MIN_SET_ITEMS = 10
FIG7_TASKS = ("capitals", "uppercase")
FIG4_CONTEXT = Example("table mug free China table mug free China table mug free", " Beijing", " China", "random:capitals")
#: Fig 4's extra contexts: the capitals contexts at these quantiles of the transplant's effect
FIG4_PICKS = (("median", 0.5), ("25th percentile", 0.25), ("75th percentile", 0.75))


@dataclass(frozen=True)
class ReproduceConfig:
    """Sizes of a reproduction run.

    Attributes:
        n: prompts per task (Fig 3, Fig 7) and contexts per set (Fig 5); None: all.
        n_search: task prompts and contexts for the layer search (models other than GPT2-Medium).
        seed: seeds context sampling, the search, the random vectors and the bootstraps.
        batch_size: prompts per forward.
        patching_pairs: prompt pairs for the activation-patching extra (0: skip it).
        small: a CI-sized run (recorded in the summary).
        prepend_bos: None: the paper's tokenization for hub models (``tokenizer.encode``, no
            BOS token) and the model's own default for lensarith-trained models (the organism
            was trained with a BOS token); True / False: force it (True is TransformerLens's
            default for GPT-2). Recorded in ``summary["tokenization"]``.
        n_random: random vectors of o's norm in Fig 5's random baseline (averaged per context).
        n_boot: bootstrap resamples per interval.
    """

    n: int | None = 200
    n_search: int = 48
    seed: int = 0
    batch_size: int = 32
    patching_pairs: int = 8
    small: bool = False
    prepend_bos: bool | None = None
    n_random: int = 5
    n_boot: int = N_RESAMPLES

    def __post_init__(self) -> None:
        if self.n is not None and (not isinstance(self.n, int) or self.n < 2):
            raise LensarithError(f"n must be None or an int >= 2 (prompts per task), got {self.n!r}")
        if not isinstance(self.n_search, int) or self.n_search < 2:
            raise LensarithError(f"n_search must be an int >= 2, got {self.n_search!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise LensarithError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not isinstance(self.patching_pairs, int) or self.patching_pairs < 0:
            raise LensarithError(f"patching_pairs must be an int >= 0, got {self.patching_pairs!r}")
        if self.prepend_bos is not None and not isinstance(self.prepend_bos, bool):
            raise LensarithError(f"prepend_bos must be None (automatic), True or False, got {self.prepend_bos!r}")
        for name in ("n_random", "n_boot"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LensarithError(f"{name} must be a positive int, got {value!r}")

    @classmethod
    def small_run(cls, **overrides: Any) -> ReproduceConfig:
        """A quick run (CI, notebooks): 16 prompts per task, 12 for the search."""
        return cls(**{"n": 16, "n_search": 12, "patching_pairs": 4, "small": True, **overrides})


def is_gpt2_medium(model) -> bool:
    """True for GPT2-Medium (the paper's model: its layers are used as published): its shape
    (24 layers, d_model 1024, GPT-2's vocabulary) and either its name or GPT-2's architecture. A
    local folder named ``gpt2-medium`` holding another model is not taken for it."""
    cfg = model.cfg
    shape = cfg.n_layers == 24 and cfg.d_model == 1024 and cfg.d_vocab == 50257
    named = getattr(cfg, "model_name", "") == "gpt2-medium"
    return shape and (named or "gpt2" in str(getattr(cfg, "original_architecture", "")).lower())


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


def _count(run: _Run, key: str, report: dict[str, Any]) -> None:
    """Record how many items of a figure's set were given, scored and dropped (by reason)."""
    from ..tasks import scoring_counts

    run.summary.setdefault("scoring", {})[key] = scoring_counts(report)


def _nearest(values: list[int], target: float) -> int:
    return min(range(len(values)), key=lambda i: (abs(values[i] - target), -values[i]))


# --------------------------------------------------------------------------- the run's state


@dataclass
class _Run:
    """What the steps of one reproduction share: the model, paths, the summary, deferred report parts."""

    model: Any
    config: ReproduceConfig
    final: Path
    out: Path
    summary: dict[str, Any]
    progress: bool | None
    say: Callable[[str], None]
    renders: list[tuple[int, Callable[[Any, Any], None]]] = field(default_factory=list)
    task_data: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Example] = field(default_factory=dict)
    ovecs: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def figs(self) -> Path:
        return self.out / "figures"

    @property
    def results(self) -> Path:
        return self.out / "results"

    @property
    def figures(self) -> dict[str, Any]:
        return self.summary["figures"]

    @property
    def n_layers(self) -> int:
        return self.model.cfg.n_layers

    def png(self, fig, name: str) -> Path:
        from ..viz import plots

        path = plots.save_png(fig, self.figs / f"{name}.png")
        self.summary["files"][name] = str(self.final / path.relative_to(self.out))
        return path

    def render(self, order: int, fn: Callable[[Any, Any], None]) -> None:
        """Add report parts later, in ``order`` (the report is written after every number is known)."""
        self.renders.append((order, fn))


def _pair(ci) -> list[float]:
    return [round(float(ci[0]), 4), round(float(ci[1]), 4)]


# --------------------------------------------------------------------------- entry point


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
        config: sizes and conventions (``ReproduceConfig()`` or ``ReproduceConfig.small_run()``).
        model_name: the name recorded in the summary (default ``model.cfg.model_name``).
        progress: show progress bars.
        log: receives one line per finished figure (default: silent).

    Returns:
        The summary (also written to ``out/summary.json``). ``model.cfg.default_prepend_bos``
        is set to the run's convention during the run and restored afterwards (also on error).
    """
    if not isinstance(config, ReproduceConfig):
        raise LensarithError(f"config must be a lensarith.paper.ReproduceConfig, got {type(config).__name__}")
    final = Path(out)
    if final.exists() and not final.is_dir():
        raise LensarithError(f"out={str(final)!r} exists and is not a folder")
    plan = bos_plan(model, config.prepend_bos)
    # every output of the run is written into a staging folder that replaces ``out`` as a whole:
    # a reader sees this run's results, figures, summary and report together, or the previous run's
    with atomic_directory(final) as stage, bos_convention(model, plan["prepend_bos"]):
        return _reproduce(model, final, stage, config, plan, model_name=model_name, progress=progress, log=log)


def _reproduce(model, final: Path, out: Path, config: ReproduceConfig, plan: dict[str, Any], *, model_name: str | None,
               progress: bool | None, log: Callable[[str], None] | None) -> dict[str, Any]:
    """``reproduce`` writing into ``out`` (the staging folder); paths are recorded under ``final``."""
    L = model.cfg.n_layers
    t_start = time.perf_counter()
    summary: dict[str, Any] = {
        "model": model_name or getattr(model.cfg, "model_name", "unknown"), "n_layers": L, "d_model": model.cfg.d_model,
        "config": asdict(config), "tokenization": plan, "paper": PAPER, "layers": {}, "figures": {}, "files": {}}
    run = _Run(model, config, final, out, summary, progress, log or (lambda s: None))
    steps = progress_bar(total=len(_STEPS) + 1, desc="reproduce", unit="step", show=progress)
    timings: dict[str, float] = {}
    for name, step in _STEPS:
        t0 = time.perf_counter()
        step(run)
        timings[name] = round(time.perf_counter() - t0, 2)
        steps.update(1)
    summary["verdicts"] = verdicts(summary)
    summary["timings_s"] = {**timings, "total": round(time.perf_counter() - t_start, 2)}
    summary["files"]["summary"] = str(final / "summary.json")
    summary["files"]["report"] = str(final / "report.html")
    _write_report(run)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    steps.update(1)
    steps.close()
    return summary


def _write_report(run: _Run) -> None:
    from ..viz.report import Report

    s, cfg, L = run.summary, run.config, run.n_layers
    tok = s["tokenization"]
    report = Report(f"lensarith reproduction of Merullo, Eickhoff & Pavlick (2023) on {s['model']}",
                    subtitle=f"{L} layers, d_model {s['d_model']}; n={cfg.n} prompts per task"
                             f"{' (small run)' if cfg.small else ''}; seed {cfg.seed}; "
                             f"{'BOS token prepended' if tok['prepend_bos'] else 'no BOS token'} ({tok['source']}); "
                             f"intervals: bootstrap 95% over examples, {cfg.n_boot} resamples")
    report.add_html(REPORT_CSS)
    report.add_section("Ours vs the paper: reproduced?",
                       "Each claim of the paper this report covers, judged from this run's numbers by the criterion "
                       "listed below the table (computed by lensarith.paper.verdicts, also in summary.json "
                       "'verdicts'). A claim over several tasks or sets is 'yes' when every case is, 'no' when every "
                       "case is, 'partial' otherwise.")
    report.add_html(verdict_table_html(s["verdicts"]))
    report.add_section(f"Caveats for {s['model']}", "What the model's card says a reader of these figures should know.")
    report.add_html(caveats_html(s["model"]))
    report.add_section("Headline numbers", "Every figure's headline number on this model next to the paper's "
                                           "(GPT2-Medium; Fig 7: BLOOM), 95% CIs in brackets. Figures below, in the "
                                           "paper's order; click a figure to open it at full size.")
    report.add_html(headline_table_html({s["model"]: s}))
    for _, fn in sorted(run.renders, key=lambda r: r[0]):
        fn(run, report)
    report.add_section("Files", "summary.json holds every number shown here; results/ the tensors (safetensors + JSON); "
                                "figures/ the PNGs.")
    report.save(run.out / "report.html")


# --------------------------------------------------------------------------- Fig 3


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


def _step_fig3(run: _Run) -> None:
    from ..viz import plots

    cfg = run.config
    fig3 = {}
    for task in TASKS:
        s, lens, batch, correct = task_curves(run.model, task, n=cfg.n, batch_size=cfg.batch_size, seed=cfg.seed,
                                             progress=run.progress)
        lens.save(run.results / f"fig3-{task}")
        _count(run, f"fig3/{task}", batch.report)
        fig3[task] = s
        run.task_data[task] = (batch, correct)
    run.figures["fig3"] = fig3
    # the crossing is marked only where the arms cross (the argument led somewhere before the answer took over):
    # where the answer leads from the first readable layer, the verdict says they never cross and nothing is drawn
    panels = {t: {**s, "floor": s["noise_floor"], "crossing_layer": _drawn_crossing(s), "note": _fig3_note(s)}
              for t, s in fig3.items()}
    run.png(plots.x_pattern(panels, title="Fig 3: mean reciprocal rank per layer over the examples answered correctly "
                                          "(bands: bootstrap 95% CIs; dashed: noise floor; dotted: the crossing)"), "fig3")
    run.say("fig 3: " + "; ".join(f"{t} acc {format_ci(s['accuracy'], s['accuracy_ci'])}, " + _fig3_note(s).replace("\n", ", ")
                                  for t, s in fig3.items()))
    run.render(20, _render_fig3)
    run.render(5, _render_scoring)


def _render_scoring(run: _Run, report) -> None:
    from ..tasks import DROP_REASONS

    counts = run.summary.get("scoring", {})
    report.add_section("Which items are scored",
                       "Each figure scores an item on the first token of its answer (and tracks its argument's first "
                       "token). Single-token items are scored as they are; a multi-token item is scored on its first "
                       "tokens when the answer's first token differs from the argument's and no other answer of the "
                       "task starts with it (the first-token rule, lensarith.tasks); the rest are dropped, counted "
                       "here by reason (also in summary.json 'scoring').")
    reasons = list(dict.fromkeys(r for c in counts.values() for r in c["dropped"]))
    rows = [{"figure / set": k, "items": c["items"], "scored": c["scored"], "single-token": c["single_token"],
             "by first token": c["first_token"],
             **{f"dropped: {DROP_REASONS.get(r, r)}": c["dropped"].get(r, 0) for r in reasons}}
            for k, c in counts.items()]
    report.add_html(scroll_table(rows) if rows else "<p>(no counts)</p>")


def _render_fig3(run: _Run, report) -> None:
    fig3 = run.figures["fig3"]
    first = next(iter(fig3.values()))
    report.add_section("Fig 3: argument and answer per layer (the 'X')",
                       "Mean reciprocal rank 1/(rank+1) of the argument and the answer at the last position, per layer, "
                       "over the prompts the model answers correctly; bands are bootstrap 95% CIs. Paper: "
                       + PAPER["fig3"]["text"] + f". Noise floor: MRR {NOISE_FLOOR} (a token ranked ~20th on average; "
                       f"a uniform random ranking over the vocabulary gives {first['uniform_mrr']:.4f}). The crossing "
                       "is the first layer from which the answer's MRR stays above the argument's and above the noise "
                       "floor to the output; the raw reading (answer above argument, noise included) is shown for "
                       "comparison: it lands on the first layer when both curves are still noise.")
    report.add_figure(run.figs / "fig3.png")
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
                     "raw: answer above argument from": f"L{s['crossover_layer']}" if s["crossover_layer"] is not None else "never",
                     "'X'": judge_x(x)[0], "depth ~2/3": judge_depth(c)[0]})
    report.add_html(scroll_table(rows))


# --------------------------------------------------------------------------- Fig 2


def _step_fig2(run: _Run) -> None:
    from ..viz import plots

    model, cfg = run.model, run.config
    paper_prompts = (find_example("capitals", argument="Poland"),
                     find_example("uppercase", answer="Brown", contains="sheet of paper"))
    _, paper_toks = lens_tokens(model, list(paper_prompts), k=1, batch_size=cfg.batch_size, progress=False)
    shown, notes = [], {}
    for key, ex, t, task in (("capitals", paper_prompts[0], paper_toks[0], "capitals"),
                             ("colours", paper_prompts[1], paper_toks[1], "uppercase")):
        if t["top1"][-1].strip() == ex.answer.strip():
            shown.append(ex)
            continue
        batch, correct = run.task_data[task]
        alt = next((e for e, ok in zip(batch.examples, correct.tolist()) if ok), None)
        shown.append(alt or ex)
        notes[key] = {"paper_prompt_prediction": t["top1"][-1], "paper_prompt_answer": ex.answer,
                      "paper_prompt_argument": ex.argument, "substituted": alt is not None}
    cap_ex, col_ex = shown
    cap_x = find_example("capitals", argument=cap_ex.argument.strip(), format="extractive")
    lens3, toks = lens_tokens(model, [cap_ex, col_ex, cap_x], k=5, batch_size=cfg.batch_size, progress=False)
    lens3.save(run.results / "fig2-lens")
    fig2 = {}
    for key, ex, t in (("capitals", paper_prompts[0], toks[0]), ("colours", paper_prompts[1], toks[1])):
        fig2[key] = {kk: v for kk, v in t.items() if kk != "probs"}
        fig2[key]["correct"] = t["top1"][-1].strip() == t["answer"].strip()
        fig2[key]["paper_prompt"] = key not in notes or not notes[key]["substituted"]
        fig2[key].update(notes.get(key, {}))
    run.figures["fig2"] = fig2
    marks = {e.argument: "#cfe2ff" for e in (cap_ex, col_ex)} | {e.answer: "#ffe0b2" for e in (cap_ex, col_ex)}
    run.shared.update(cap_ex=cap_ex, col_ex=col_ex, cap_x=cap_x, lens3=lens3, toks=toks, marks=marks, notes=notes)
    run.png(plots.token_grid(toks[0]["layers"], {f"{cap_ex.argument.strip()} prompt": toks[0]["top1"],
                                                 f"colours ({col_ex.argument.strip()}) prompt": toks[1]["top1"]},
                             title="Fig 2 / Table 1: top-1 logit-lens token per layer (last position)", highlight=marks),
            "fig2")
    run.say(f"fig 2: {cap_ex.argument.strip()} prompt: argument layers {toks[0]['argument_layers']}, answer from "
            f"{toks[0]['answer_from']}; colours ({col_ex.argument.strip()}) answer from {toks[1]['answer_from']}"
            + "".join(f"; the paper's {k} prompt is answered {n['paper_prompt_prediction'].strip()!r}"
                      for k, n in notes.items()))
    run.render(10, _render_fig2)


def _render_fig2(run: _Run, report) -> None:
    from ..viz import circuits

    toks, notes, lens3 = run.shared["toks"], run.shared["notes"], run.shared["lens3"]
    intro = ("Top-1 token decoded from the residual stream after each layer at the last position (argument blue, answer "
             "orange). Paper, GPT2-Medium: " + PAPER["fig2"]["poland"] + "; " + PAPER["fig2"]["colours"] + ".")
    for key, n in notes.items():
        intro += (f" The model answers the paper's {key} prompt ({n['paper_prompt_argument'].strip()} → "
                  f"{n['paper_prompt_answer'].strip()}) with {n['paper_prompt_prediction'].strip()!r}"
                  + ("; shown instead: the first prompt of the task it answers correctly." if n["substituted"] else "."))
    report.add_section("Fig 2 / Table 1: the logit lens on two prompts", intro)
    report.add_figure(run.figs / "fig2.png", caption="top-1 token per layer")
    for i, key in enumerate(("capitals", "colours")):
        t = toks[i]
        report.add_widget(circuits.logit_lens_table(lens3, i, k=5, title=f"{key}: ...{t['prompt'][-60:]!r} → {t['answer']!r}"))
        report.add_text(f"{key}: argument top-1 at layers {t['argument_layers'] or 'none'}; answer top-1 from layer "
                        f"{t['answer_from'] if t['answer_from'] is not None else 'never'} (of {run.n_layers}).", note=True)


# --------------------------------------------------------------------------- layers and o-vectors


def _step_layers(run: _Run) -> None:
    from ..vectors import extract_o_vector

    model, cfg, summary = run.model, run.config, run.summary
    fig2_ok = bool(run.figures["fig2"]["capitals"]["correct"])
    for task in TASKS:
        batch, correct = run.task_data[task]
        preferred = run.shared["cap_ex"] if task == "capitals" else None
        src, src_ok = _pick_source(model, task, batch, correct, preferred, fig2_ok)
        run.sources[task] = src
        others = [e for e, c in zip(batch.examples, correct.tolist()) if c and e.prompt != src.prompt]
        others += [e for e, c in zip(batch.examples, correct.tolist()) if not c and e.prompt != src.prompt]
        info, found = choose_layers(model, task, src, others[: cfg.n_search - 1], cfg, progress=run.progress)
        info.update(source=src.prompt, source_answer=src.answer, source_correct_check=src_ok)
        summary["layers"][task] = info
        if found is not None:
            found.save(run.results / f"layers-{task}")
    for task in TASKS:
        o = extract_o_vector(model, [run.sources[task]], summary["layers"][task]["application"], reduce="mean")
        o.save(run.results / f"o-{task}")
        run.ovecs[task] = o
    run.say("layers: " + "; ".join(f"{t} o@{i['application']} replace {i['replace'][0]}-{i['replace'][-1]} ({i['method']})"
                                   for t, i in summary["layers"].items()))
    run.render(30, _render_layers)


def _render_layers(run: _Run, report) -> None:
    report.add_section("Layers",
                       "GPT2-Medium uses the paper's layers (o from MLP 19 / 19 / 18, MLPs 18-23 replaced); other models "
                       "use lensarith.vectors.find_layers (each layer's o transplanted into random-token contexts; "
                       "the layer lifting the answer most, then the best start of the replaced range).")
    report.add_html(scroll_table([{"task": t, "method": i["method"], "o from MLP": i["application"],
                                   "replaced MLPs": f"{i['replace'][0]}-{i['replace'][-1]}", "source prompt": i["source"][-60:],
                                   "source answered correctly": i["source_correct_check"]}
                                  for t, i in run.summary["layers"].items()]))


# --------------------------------------------------------------------------- Fig 5


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


def _step_fig5(run: _Run) -> None:
    from ..viz import plots

    model, cfg = run.model, run.config
    fig5, raw, skipped = {}, {}, {}
    for task, sets in FIG5_SETS.items():
        layers = run.summary["layers"][task]["replace"]
        for j, set_name in enumerate(sets):
            contexts = _contexts(set_name, cfg.n, cfg.seed, run.sources[task].argument)
            try:
                batch = tokenize(model, contexts, drop_multi_token=True)
            except LensarithError as exc:
                if j < 2:
                    raise
                skipped[set_name] = str(exc)
                continue
            _count(run, f"fig5/{set_name}", batch.report)
            if j >= 2 and len(batch) < MIN_SET_ITEMS:
                skipped[set_name] = (f"{len(batch)} of {len(contexts)} contexts can be scored on this model (fewer than "
                                     f"{MIN_SET_ITEMS}); see summary['scoring']")
                continue
            res = transplant_baselines(model, run.ovecs[task], batch, layers=layers, n_random=cfg.n_random,
                                       seed=cfg.seed, batch_size=cfg.batch_size, progress=run.progress)
            to_transplant_result(model, res, batch, run.ovecs[task]).save(run.results / f"fig5-{set_name}")
            res.save(run.results / f"fig5-{set_name}-baselines")
            s = summarize(res, seed=cfg.seed, n_boot=cfg.n_boot)
            s.update(task=task, domain="in" if set_name == sets[0] else "out")
            fig5[set_name] = s
            raw[set_name] = (res, batch)
    run.figures["fig5"] = fig5
    if skipped:
        run.summary["fig5_skipped"] = skipped
    run.shared["fig5_raw"] = raw
    panels = {f"{k} ({v['domain']}-domain)": {**v, "labels": _fig5_labels(v), "note": _fig5_note(v)} for k, v in fig5.items()}
    run.png(plots.transplant_curves(panels, runs=("control", "transplant", "random", "zeroed"),
                                    title="Fig 5: MRR of the answer per layer in random-token contexts: control, o "
                                          "transplanted, same-norm random vectors, the same MLPs zeroed (legend: MRR at "
                                          "the output [95% CI]; bands: 95% CIs)"), "fig5")
    run.say("fig 5: " + "; ".join(
        f"{k} MRR control {format_ci(v['final']['control']['mrr'], v['final']['control']['mrr_ci'])}, o "
        f"{format_ci(v['final']['transplant']['mrr'], v['final']['transplant']['mrr_ci'])}, random "
        f"{format_ci(v['final']['random']['mrr'], v['final']['random']['mrr_ci'])}, zeroed "
        f"{format_ci(v['final']['zeroed']['mrr'], v['final']['zeroed']['mrr_ci'])}, no effect "
        f"{format_ci(v['no_effect_rate'], v['no_effect_ci'], pct=True)} (n={v['n']})" for k, v in fig5.items()))
    run.render(50, _render_fig5)


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


def _render_fig5(run: _Run, report) -> None:
    fig5 = run.figures["fig5"]
    worse = [k for k, v in fig5.items() if v["lift"]["control"]["diff"] < 0]
    report.add_section("Fig 5: o-vectors in random-token contexts, against baselines",
                       "Mean reciprocal rank of the answer per layer; contexts w1 w2 w3 X w1 w2 w3 X w1 w2 w3 for arguments "
                       "of the task's own (in-domain) and another (out-of-domain) dataset. Runs, in the same forwards: "
                       "control; o replacing the upper MLP outputs at every position (the paper); "
                       f"{run.config.n_random} random vectors of o's norm in o's place (seeded, averaged per context); the "
                       "same MLPs zeroed. A lift counts only against all three baselines. 'rank' = 1/MRR at the output "
                       "(1 = top); 'no real effect': the transplant did not improve the answer's output rank. Intervals: "
                       "bootstrap 95% over contexts (lifts paired per context)."
                       + (f" The transplant makes the answer worse than the control on: {', '.join(worse)}." if worse else ""))
    report.add_figure(run.figs / "fig5.png")
    report.add_html(scroll_table(_fig5_rows(fig5)))
    for name, why in run.summary.get("fig5_skipped", {}).items():
        report.add_text(f"{name} skipped: {why}", note=True)


# --------------------------------------------------------------------------- word2vec


def _step_word2vec(run: _Run) -> None:
    """GloVe's analogy accuracy next to Fig 5's o-vector transplants, on the same pairs."""
    from .word2vec import compare_with_baselines, glove_relation, load_glove

    cfg = run.config
    run.render(55, _render_word2vec)
    try:
        glove = load_glove()
    except LensarithError as exc:
        run.figures["word2vec"] = {"skipped": str(exc)}
        run.say(f"word2vec: skipped ({exc})")
        return
    quads = 300 if cfg.small else 2000  # analogy questions per relation (a seeded sample of the pairs of pairs)
    relations = {task: glove_relation(glove, task, max_quads=quads, seed=cfg.seed, n_boot=cfg.n_boot) for task in FIG5_SETS}
    sets, full = {}, {}
    for task, names in FIG5_SETS.items():
        for name in names:
            if name not in run.shared["fig5_raw"]:
                continue
            res, batch = run.shared["fig5_raw"][name]
            got = compare_with_baselines(glove, name, res, batch.examples, source=run.sources[task], seed=cfg.seed,
                                             n_boot=cfg.n_boot)
            got["relation"] = task
            full[name] = got
            sets[name] = {k: v for k, v in got.items() if k != "rows"}
    run.figures["word2vec"] = {"source": glove.source, "lowercased": True, "relations": relations, "sets": sets}
    atomic_write_text(run.results / "word2vec.json", json.dumps(full, indent=1, default=str))
    from ..viz import plots

    run.png(plots.analogy_bars(sets, title="The word2vec side: top-1 accuracy of the answer in Fig 5's random-token "
                                           "contexts with o transplanted vs GloVe's nearest neighbour of b - a + a' on "
                                           "the same pairs (GloVe 6B, lowercased; bars: bootstrap 95% CIs)"), "word2vec")
    run.say("word2vec: " + "; ".join(
        f"{k} (n={v['n']}) o {v.get('o_top1')} vs GloVe {v.get('glove_source', v.get('glove_pairs'))}"
        if v.get("applicable") else f"{k}: n/a" for k, v in sets.items()))


def _render_word2vec(run: _Run, report) -> None:
    from .word2vec import GLOVE_PACKAGE

    w = run.figures.get("word2vec", {})
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
    report.add_figure(run.figs / "word2vec.png")
    rows = []
    for name, v in w["sets"].items():
        if not v.get("applicable"):
            rows.append({"set": name, "contexts": v["n_contexts"], "o top-1": format_ci(v.get("o_top1"), v.get("o_top1_ci")),
                         "GloVe": "n/a: " + v.get("why", "")})
            continue
        a = v.get("agreement") or {}
        oc = v.get("offset_cosine") or {}
        rows.append({"set": name, "contexts": v["n_contexts"], "GloVe covers": v["n"],
                     "control top-1": format_ci(v.get("control_top1"), v.get("control_top1_ci")),
                     "o top-1": format_ci(v.get("o_top1"), v.get("o_top1_ci")),
                     "GloVe, source offset": format_ci(v.get("glove_source"), v.get("glove_source_ci")),
                     "GloVe, other pairs' offsets": format_ci(v.get("glove_pairs"), v.get("glove_pairs_ci")),
                     "o - GloVe (paired)": format_ci(v["o_minus_glove"]["diff"], v["o_minus_glove"]["ci"])
                     if "o_minus_glove" in v else "",
                     "both / only o / only GloVe / neither": " / ".join(str(a.get(k, "")) for k in
                                                                      ("both", "only_o", "only_glove", "neither")),
                     "offset cosine to the mean": format_ci(oc.get("mean"), oc.get("ci"))})
    report.add_html(scroll_table(rows))
    rel = []
    for task, r in w["relations"].items():
        if not r["applicable"]:
            rel.append({"relation": task, "analogy accuracy": "n/a: " + r["why"]})
            continue
        an, oc = r["analogy"], r["offset_cosine"]
        rel.append({"relation": task, "pairs": an["n_pairs"], "GloVe covers": an["n_covered"],
                    "analogy accuracy (pairs of pairs)": f"{format_ci(an['accuracy'], an['ci'])} (n={an['n']}"
                                                         f"{', sampled' if an['sampled'] else ''})",
                    "offset cosine to the mean": format_ci(oc["mean"], oc["ci"])})
    report.add_html("<div class='lensarith-title'>Each relation's own pairs (all of the task's data)</div>")
    report.add_html(scroll_table(rel))


# --------------------------------------------------------------------------- Fig 4


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


def _step_fig4(run: _Run) -> None:
    from ..vectors import transplant
    from ..viz import plots

    model = run.model
    ctx = FIG4_CONTEXT
    try:
        tokenize(model, [ctx])
    except LensarithError:
        ctx = _contexts("capitals", 1, run.config.seed, run.sources["capitals"].argument)[0]
    layers_c = run.summary["layers"]["capitals"]["replace"]
    res4 = transplant(model, run.ovecs["capitals"], [ctx], layers=layers_c, mode="replace", positions="all",
                      drop_multi_token=True, progress=False)
    res4.save(run.results / "fig4")
    rr_c = res4.reciprocal_rank("answer", "control")[:, 0].tolist()
    rr_t = res4.reciprocal_rank("answer", "transplant")[:, 0].tolist()
    top = res4.meta.get("top1_tokens", {})
    f4 = {"context": ctx.prompt, "answer": ctx.answer, "argument": ctx.argument, "source": run.sources["capitals"].prompt,
          "layers": list(res4.labels["layer"]), "original": [round(x, 4) for x in rr_c],
          "transplant": [round(x, 4) for x in rr_t], "replaced": layers_c,
          "top1_original": top.get("control", [None])[0], "top1_transplant": top.get("transplant", [None])[0],
          "answer_rank_original": int(res4.rank("answer", "control")[-1, 0]) + 1,
          "answer_rank_transplant": int(res4.rank("answer", "transplant")[-1, 0]) + 1}
    res5, batch5 = run.shared["fig5_raw"]["capitals"]
    picks = _fig4_picks(res5, batch5, model)
    f4["contexts"] = picks
    f4["effect_over_contexts"] = {"n": len(res5.labels["batch"]), "rule": "output-layer RR with o minus control"}
    run.figures["fig4"] = f4
    panels = [{"layers": f4["layers"], "original": rr_c, "transplant": rr_t, "token": ctx.answer,
               "title": _panel_title("the paper's example", f4)}]
    panels += [{"layers": f4["layers"], "original": p["original"], "transplant": p["transplant"], "token": p["answer"],
                "title": _panel_title(f"{p['pick']} context by effect", p)} for p in picks]
    app = run.summary["layers"]["capitals"]["application"]
    run.png(plots.example_curves(panels, title=f"Fig 4: reciprocal rank of the answer per layer, original vs MLPs "
                                              f"{layers_c[0]}-{layers_c[-1]} replaced by o (capitals, from MLP {app} "
                                              "of the source prompt)"), "fig4")
    med = next((p for p in picks if p["pick"] == "median"), None)
    run.say(f"fig 4: {ctx.argument.strip()} context, prediction {f4['top1_original']!r} -> {f4['top1_transplant']!r}, "
            f"rank of {ctx.answer!r} {f4['answer_rank_original']} -> {f4['answer_rank_transplant']}"
            + (f"; median context ({med['argument'].strip()}): rank {med['answer_rank_original']} -> "
               f"{med['answer_rank_transplant']}" if med else ""))
    run.render(40, _render_fig4)


def _render_fig4(run: _Run, report) -> None:
    f4 = run.figures["fig4"]
    layers_c = f4["replaced"]
    text = (f"o from the source prompt's MLP {run.summary['layers']['capitals']['application']} replaces MLPs "
            f"{layers_c[0]}-{layers_c[-1]} at every position. The paper's example {f4['context']!r}: prediction "
            f"{f4['top1_original']!r} → {f4['top1_transplant']!r}; rank of {f4['answer']!r} at the output "
            f"{f4['answer_rank_original']} → {f4['answer_rank_transplant']}. One context is an anecdote, so the "
            f"capitals contexts of Fig 5 (n={f4['effect_over_contexts']['n']}) are sorted by the transplant's effect "
            "(output-layer RR with o minus control) and the ones at the median and the quartiles are shown too: "
            + "; ".join(f"{p['pick']} ({p['argument'].strip()}): rank {p['answer_rank_original']} → "
                        f"{p['answer_rank_transplant']}" for p in f4["contexts"])
            + ". Paper: " + PAPER["fig4"]["text"] + ".")
    report.add_section("Fig 4: random-token contexts, one by one", text)
    report.add_figure(run.figs / "fig4.png")


# --------------------------------------------------------------------------- Fig 6


def _step_fig6(run: _Run) -> None:
    from ..viz import plots

    L = run.n_layers
    toks, marks = run.shared["toks"], run.shared["marks"]
    up = upper_layers(L) if not is_gpt2_medium(run.model) else PAPER_LAYERS["fig6_layers"]
    fig6 = {}
    for name, t in (("abstractive", toks[0]), ("extractive", toks[2])):
        fig6[name] = {"prompt": t["prompt"], "layers": up, "top1": [t["top1"][i] for i in up],
                      "answer_from": t["answer_from"], "argument_layers": t["argument_layers"]}
    run.figures["fig6"] = fig6
    run.png(plots.token_grid([toks[0]["layers"][i] for i in up], {"abstractive": fig6["abstractive"]["top1"],
                                                                 "extractive": fig6["extractive"]["top1"]},
                             title=f"Fig 6: top-1 token, layers {up[0]}-{up[-1]}", highlight=marks), "fig6")
    run.say(f"fig 6: answer from layer {fig6['abstractive']['answer_from']} (abstractive) vs "
            f"{fig6['extractive']['answer_from']} (extractive)")
    run.render(60, _render_fig6)


def _render_fig6(run: _Run, report) -> None:
    from ..viz import circuits

    fig6, lens3 = run.figures["fig6"], run.shared["lens3"]
    up = fig6["abstractive"]["layers"]
    report.add_section("Fig 6: abstractive vs extractive (capitals)",
                       f"Layers {up[0]}-{up[-1]}. Abstractive answer from layer {fig6['abstractive']['answer_from']}, "
                       f"extractive from layer {fig6['extractive']['answer_from']}. Paper: " + PAPER["fig6"]["text"] + ".")
    report.add_figure(run.figs / "fig6.png")
    report.add_widget(circuits.logit_lens_table(lens3, 0, k=3, layers=up,
                                                title="abstractive: " + run.shared["cap_ex"].prompt.splitlines()[-2]))
    report.add_widget(circuits.logit_lens_table(lens3, 2, k=3, layers=up,
                                                title="extractive: " + run.shared["cap_x"].prompt.splitlines()[0]))


# --------------------------------------------------------------------------- Fig 7


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
    from .stats import bootstrap_columns

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


def _step_fig7(run: _Run) -> None:
    from ..ablation import ffn_ablation
    from ..viz import plots

    model, cfg, L = run.model, run.config, run.n_layers
    fig7, panels = {}, {}
    for task in FIG7_TASKS:
        res = ffn_ablation(model, task, n=cfg.n, batch_size=cfg.batch_size, progress=run.progress)
        res.save(run.results / f"fig7-{task}")
        for set_name, rep in (res.meta.get("reports") or {}).items():
            _count(run, f"fig7/{task}/{set_name}", rep)
        removed = res.n_removed
        acc = {s: [round(float(x), 4) for x in res.accuracy_of(s)] for s in res.sets}
        k80 = _nearest(removed, 0.8 * L)
        rel = {s: (None if acc[s][0] == 0 else round(1 - acc[s][k80] / acc[s][0], 4)) for s in res.sets}
        fig7[task] = {"removed": removed, "accuracy": acc, "sizes": res.meta.get("sizes"), "at_80pct": removed[k80],
                      "relative_drop_at_80pct": rel, "drop_all": {s: round(res.drop(s), 4) for s in res.sets},
                      "table": res.table(), "accuracy_ci": _accuracy_ci(res, cfg.seed, cfg.n_boot),
                      "contrast": _contrast(res, k80, removed[k80], cfg.seed, cfg.n_boot)}
        panels[task] = {"removed": removed, **acc, "ci": fig7[task]["accuracy_ci"], "note": _fig7_note(fig7[task])}
    run.figures["fig7"] = fig7
    run.png(plots.ablation_curves(panels, title="Fig 7: accuracy as MLPs are removed from the top down (bands: bootstrap "
                                                "95% CIs)"), "fig7")
    run.say("fig 7: " + "; ".join(f"{t}: " + _fig7_line(d) for t, d in fig7.items()))
    run.render(70, _render_fig7)


def _render_fig7(run: _Run, report) -> None:
    fig7, L = run.figures["fig7"], run.n_layers
    judged = {t: judge_contrast(d["contrast"])[0] for t, d in fig7.items()}
    yes = [t for t, v in judged.items() if v == "yes"]
    part = [t for t, v in judged.items() if v == "partial"]
    no = [t for t, v in judged.items() if v == "no"]
    which = ("Reproduces the paper's contrast: " + (", ".join(yes) or "none")
             + (f"; partly: {', '.join(part)}" if part else "") + (f"; does not: {', '.join(no)}" if no else "")
             + " (criterion in the 'reproduced?' table).")
    report.add_section("Fig 7: removing MLPs from the top down",
                       "Zero-ablating the top k MLPs (one sixth of the layers at a time): top-1 accuracy on abstractive "
                       "prompts (answer from memory) and extractive prompts (answer in the context), with bootstrap 95% "
                       "CIs. Paper (BLOOM): extractive -17%, abstractive -73% after 24 of 30 FFNs. " + which)
    report.add_figure(run.figs / "fig7.png")
    for task, d in fig7.items():
        c = d["contrast"]
        rows = [{"MLPs removed": k, "layers": d["table"][j]["layers"],
                 **{f"{s} accuracy": format_ci(d["accuracy"][s][j], d["accuracy_ci"][s][j]) for s in d["accuracy"]}}
                for j, k in enumerate(d["removed"])]
        cap = (f"{task} (n = {', '.join(f'{s} {n}' for s, n in (d['sizes'] or {}).items())}): relative drop after "
               f"{c['removed']} of {L} MLPs: abstractive {format_ci(c['abstractive_drop'], c['abstractive_drop_ci'], pct=True)}, "
               f"extractive {format_ci(c['extractive_drop'], c['extractive_drop_ci'], pct=True)}; difference "
               f"{format_ci(c['difference'], c['difference_ci'])}: {judged[task]}")
        report.add_html(f"<div class='lensarith-title'>{html.escape(cap)}</div>")
        report.add_html(scroll_table(rows))


# --------------------------------------------------------------------------- renderers on the capitals prompt


def _position_tokens(model, pairs) -> list[list[str]]:
    """Per position: the distinct tokens the pairs (clean and corrupted) have there, in order of appearance."""
    from ..viz.circuits import display_tokens

    rows = []
    for side in (pairs.clean, pairs.corrupted):
        for ids, n in zip(side.tokens.tolist(), side.lengths.tolist()):
            rows.append(display_tokens(model, ids[:n]))
    width = int(pairs.clean.tokens.shape[1])
    return [list(dict.fromkeys(r[p].replace("\n", "\\n").strip() or repr(r[p]) for r in rows if len(r) > p))
            for p in range(width)]


def _position_labels(tokens: list[list[str]]) -> list[str]:
    """Axis labels: ``position token`` where every pair has the same token, ``position (k tokens)`` where they differ."""
    return [f"{p} {t[0]}" if len(t) == 1 else f"{p} ({len(t)} tokens)" for p, t in enumerate(tokens)]


def _step_extras(run: _Run) -> None:
    model, cfg = run.model, run.config
    source = run.sources["capitals"]
    extras: dict[str, Any] = {}
    tokens, values = dla_by_position(model, source)
    extras["dla_by_position"] = {"prompt": source.prompt, "tokens": tokens, "values": [round(v, 4) for v in values]}
    batch, correct = run.task_data["capitals"]
    idx = correct.nonzero().flatten()
    sub = batch.take(idx[:32]) if len(idx) else batch[0:32]
    heads = top_heads(model, sub, k=2, batch_size=cfg.batch_size)
    extras["top_heads"] = [{"layer": l, "head": h, "mean_dla": round(v, 4)} for l, h, v in heads]
    if cfg.patching_pairs:
        extras["patching"] = _patching(run)
    run.figures["extras"] = extras
    run.render(80, _render_extras)


def _patching(run: _Run) -> dict[str, Any]:
    from ..patching import activation_patch, pair_examples
    from ..viz.heatmap import heatmap

    model, cfg = run.model, run.config
    try:
        pairs = pair_examples(model, build_prompts("capitals", n=max(40, 4 * cfg.patching_pairs)),
                              n=cfg.patching_pairs, seed=cfg.seed)
        pat = activation_patch(model, pairs, site="resid_pre", metric="recovery", progress=run.progress)
    except LensarithError as exc:
        return {"skipped": str(exc)}
    pat.save(run.results / "patching")
    tokens = _position_tokens(model, pairs)
    labels = _position_labels(tokens)
    run.png(heatmap(pat, col_labels=labels, title=f"activation patching over {len(pairs)} pairs of capitals prompts "
                                                  "(resid_pre, clean into corrupted): recovery of the logit difference "
                                                  "(0 = corrupted run, 1 = clean run; blank: |value| < 0.005). Axis: "
                                                  "position and the token all pairs share there, or how many different "
                                                  "tokens the pairs have there (listed in the report)"), "patching")
    best = int(pat.values.abs().amax(-1).argmax())
    run.shared.update(pat=pat, pairs=pairs, best=best)
    return {"pairs": len(pairs), "site": "resid_pre", "metric": "recovery",
            "values": [[round(float(x), 4) for x in row] for row in pat.values],
            "layers": pat.labels["layer"], "positions": pat.labels.get("pos"), "position_labels": labels,
            "position_tokens": tokens, "clean_mean": float(pat.clean.mean()), "corrupted_mean": float(pat.corrupted.mean())}


def _render_extras(run: _Run, report) -> None:
    from ..viz import circuits

    model, extras = run.model, run.figures["extras"]
    source = run.sources["capitals"]
    report.add_section("Inside the capitals prompt: renderers",
                       "Per-position direct logit attribution through attention, the attention patterns of the heads "
                       "with the largest direct effect, and activation patching between capitals prompts.")
    d = extras["dla_by_position"]
    report.add_widget(circuits.colored_tokens(d["tokens"], d["values"], title=f"direct effect via attention of each "
                                              f"position on logit({source.answer!r}) - logit({source.argument!r})"))
    heads = [(h["layer"], h["head"]) for h in extras["top_heads"]]
    if heads:
        report.add_widget(circuits.attention_patterns(model, source, heads,
                                                      title="attention of the heads with the largest direct effect on "
                                                            "answer - argument: " + ", ".join(f"L{l}H{h}" for l, h in heads)))
    pat = extras.get("patching")
    if pat is None:
        return
    if "skipped" in pat:
        report.add_text(f"activation patching skipped: {pat['skipped']}", note=True)
        return
    pairs, best = run.shared["pairs"], run.shared["best"]
    varied = "; ".join(f"position {p}: {' / '.join(t)}" for p, t in enumerate(pat["position_tokens"]) if len(t) > 1)
    report.add_figure(run.figs / "patching.png", caption=f"{len(pairs)} pairs of capitals prompts (aligned token by token, "
                                                         "different answers); e.g. "
                                                         + pairs.clean.examples[0].prompt.splitlines()[-2]
                                                         + (f". Tokens where the pairs differ: {varied}." if varied else ""))
    report.add_widget(circuits.patch_tokens(run.shared["pat"], best,
                                            title=f"patching by position at layer {run.shared['pat'].labels['layer'][best]} "
                                                  "(first pair's tokens)"))


#: the steps of a run, in the order they compute (the report orders their sections itself)
_STEPS = (("fig3", _step_fig3), ("fig2", _step_fig2), ("layers", _step_layers), ("fig5", _step_fig5),
          ("word2vec", _step_word2vec), ("fig4", _step_fig4), ("fig6", _step_fig6), ("fig7", _step_fig7), ("extras", _step_extras))


# --------------------------------------------------------------------------- several models side by side


def reproduce_models(models: dict[str, Any], out: str | Path, config: ReproduceConfig = ReproduceConfig(), *,
                     progress: bool | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``reproduce`` on each model (into ``out/<name>/``), then one report comparing them side by side.

    Args:
        models: ``{name: model}`` (e.g. the two bundled organisms); each gets its own full run.
        out: the output folder: ``<name>/`` per model, ``report.html`` and ``summary.json``
            (``{"models": {name: summary}}``) for the comparison.
        config, progress, log: as for ``reproduce``.

    Returns:
        ``{"models": {name: summary}, "files": {...}}``.
    """
    if not isinstance(models, dict) or len(models) < 1:
        raise LensarithError(f"models must be a non-empty dict {{name: model}}, got {type(models).__name__}")
    bad = [n for n in models if not isinstance(n, str) or not n or "/" in n or n in (".", "..")]
    if bad:
        raise LensarithError(f"model names become folder names: {bad!r} cannot (use plain names such as 'organism')")
    final = Path(out)
    summaries = {}
    for name, model in models.items():
        summaries[name] = reproduce(model, final / name, config, model_name=name, progress=progress, log=log)
    combined = {"models": summaries, "files": {"report": str(final / "report.html"),
                                               "summary": str(final / "summary.json")}}
    write_comparison(summaries, final / "report.html")
    atomic_write_text(final / "summary.json", json.dumps(combined, indent=1, default=str))
    return combined


def comparison_rows(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per claim and case: each model's numbers and verdict side by side."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for name, s in summaries.items():
        for v in s.get("verdicts", []):
            for c in v["cases"]:
                row = rows.setdefault((v["claim"], c["case"]), {"claim": v["claim"], "paper": v["paper"], "case": c["case"]})
                row[f"{name}: ours"] = c["text"]
                row[f"{name}: reproduced?"] = c["verdict"]
            for c in v["cases"][:1]:
                rows[(v["claim"], c["case"])][f"{name}: claim"] = v["verdict"]
    return list(rows.values())


def write_comparison(summaries: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """The side-by-side report: the "reproduced?" column of every model, then each figure of the
    models next to each other (PNGs embedded), then each model's headline numbers."""
    from ..viz.report import Report

    names = list(summaries)
    report = Report("lensarith reproduction of Merullo, Eickhoff & Pavlick (2023): " + " vs ".join(names),
                    subtitle="; ".join(f"{n}: {s['n_layers']} layers, d_model {s['d_model']}, n={s['config']['n']}"
                                       f"{' (small run)' if s['config']['small'] else ''}" for n, s in summaries.items()))
    report.add_html(REPORT_CSS)
    report.add_section("Ours vs the paper, per model: reproduced?",
                       "Each claim judged on each model's own run by the same criteria (lensarith.paper.verdicts). "
                       "organism-planted was fine-tuned so that the paper's mechanism is there by construction (its "
                       "card says what was imposed); organism was trained on the same corpus without those objectives, "
                       "so what it shows emerged on its own.")
    rows = comparison_rows(summaries)
    cols = ["claim", "paper", "case"] + [f"{n}: {k}" for n in names for k in ("ours", "reproduced?")]
    report.add_html(scroll_table(rows, cols) if rows else "<p>(no verdicts)</p>")
    verdict_of = {n: {v["claim"]: v["verdict"] for v in s.get("verdicts", [])} for n, s in summaries.items()}
    claims = list(dict.fromkeys(v["claim"] for s in summaries.values() for v in s.get("verdicts", [])))
    report.add_table([{"claim": c, **{n: verdict_of[n].get(c, "–") for n in names}} for c in claims],
                     ["claim", *names], caption="Combined verdict per claim")
    report.add_section("Caveats per model", "What each model's card says a reader of these figures should know.")
    for n in names:
        report.add_html(f"<div class='lensarith-title'>{html.escape(n)}</div>" + caveats_html(n))
    report.add_section("Headline numbers", "Every figure's headline number per model next to the paper's, 95% CIs in "
                                           "brackets. Each model's own report: " +
                       ", ".join(f"{n}/report.html" for n in names) + ".")
    report.add_html(headline_table_html(summaries))
    figs = sorted(dict.fromkeys(k for s in summaries.values() for k, p in s.get("files", {}).items()
                                if str(p).endswith(".png")), key=_paper_order)
    if figs:
        same = len({(s["n_layers"], s["d_model"]) for s in summaries.values()}) == 1
        report.add_section("Figures", ("Side by side, left to right: " + ", ".join(names) + " (same depth and width, "
                                       "so the axes match)" if same else
                                       "One model at a time (their depths differ, so the axes do not match): pick a "
                                       "model above each figure") + ". In the paper's order; click a figure to open "
                                                                     "it at full size.")
        for fig in figs:
            got = {n: Path(summaries[n]["files"][fig]) for n in names
                   if summaries[n].get("files", {}).get(fig) and Path(summaries[n]["files"][fig]).is_file()}
            missing = [n for n in names if n not in got]
            report.add_html(f"<h3>{html.escape(_FIG_TITLES.get(fig, fig))}</h3>")
            report.add_figures(got, side_by_side=same, group="")
            if missing:
                report.add_text(f"no {fig} for {', '.join(missing)}", note=True)
    return report.save(path)


_FIG_TITLES = {"fig2": "Fig 2: the logit lens on two prompts", "fig3": "Fig 3: argument and answer per layer",
               "fig4": "Fig 4: random-token contexts, one by one", "fig5": "Fig 5: o-vectors against baselines",
               "fig6": "Fig 6: abstractive vs extractive", "fig7": "Fig 7: removing MLPs from the top down",
               "patching": "Activation patching"}


def _paper_order(fig: str) -> tuple[int, str]:
    """Figures in the paper's order (2, 3, 4, 5, 6, 7), then the extras (patching, ...)."""
    order = list(_FIG_TITLES)
    return (order.index(fig) if fig in order else len(order), fig)
