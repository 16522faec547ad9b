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

The run is a list of steps (``_reproduce``), one per figure, in ``lensarith.paper.steps``: each is
one function that takes the model, the config, the ``Outputs`` and the results of the steps it
reads, and returns a frozen dataclass (its numbers for the summary, a log line, its report
section). The report shows the sections in the order ``_reproduce`` lists them. Adding a figure =
writing its step function and its ``render`` (one module in ``lensarith.paper.steps``), calling it
in ``_reproduce`` with the results it needs, and listing it there among the summary's figures and
the report's sections (and counting it in ``_N_STEPS``, the progress bar's length).

Outputs (every file written atomically) under ``out``:

- ``summary.json``: every figure's numbers with intervals, the chosen layers, the paper's
  numbers, the tokenization used, ``verdicts`` (claim, criterion, numbers, verdict);
- ``figures/fig2.png`` ... ``fig7.png`` (+ ``patching.png``);
- ``results/<name>/``: the underlying ``Result`` objects (safetensors + JSON);
- ``report.html``: one self-contained page (figures inlined, circuitsvis bundle inlined once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from .._errors import LensarithError
from .._io import atomic_directory, atomic_write_text, check_replaceable
from .._types import Model
from ..core.progress import progress_bar
from .compare import comparison_rows, write_comparison
from .config import TASKS, ReproduceConfig, is_gpt2_medium
from .figures import PAPER
from .steps import (FIG5_SETS, Outputs, ScoredItems, Step, choose_layers, extras, fig2, fig3, fig4, fig5, fig6, fig7,
                    layers, word2vec)
from .text import REPORT_CSS, caveats_html, format_summary, headline_table_html, verdict_table_html
from .tokenization import bos_convention, bos_plan
from .verdicts import verdicts

__all__ = ["ReproduceConfig", "reproduce", "reproduce_models", "write_comparison", "comparison_rows", "choose_layers",
           "format_summary", "TASKS", "FIG5_SETS", "is_gpt2_medium"]


def reproduce(
    model: Model,
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
    earlier = (final / "summary.json").is_file()  # a previous run's outputs: replaced as a whole
    check_replaceable(final, lambda name: earlier, "the reproduction", error=LensarithError)
    plan = bos_plan(model, config.prepend_bos)
    # every output of the run is written into a staging folder that replaces ``out`` as a whole:
    # a reader sees this run's results, figures, summary and report together, or the previous run's
    with atomic_directory(final) as stage, bos_convention(model, plan["prepend_bos"]):
        return _reproduce(model, final, stage, config, plan, model_name=model_name, progress=progress, log=log)


#: the steps ``_reproduce`` runs (the progress bar counts them, then the report)
_N_STEPS = 9


def _reproduce(model, final: Path, stage: Path, config: ReproduceConfig, plan: dict[str, Any], *, model_name: str | None,
               progress: bool | None, log: Callable[[str], None] | None) -> dict[str, Any]:
    """``reproduce`` writing into ``stage`` (the staging folder); paths are recorded under ``final``.

    The steps, in the order they compute; each gets the results it reads."""
    clock = _Clock(progress, log or (lambda s: None))
    out = Outputs(stage, final, progress)
    done = clock.done
    f3 = done(fig3(model, config, out))
    f2 = done(fig2(model, config, out, f3))
    lay = done(layers(model, config, out, f3, f2))
    f5 = done(fig5(model, config, out, lay))
    w2v = done(word2vec(config, out, lay, f5))
    f4 = done(fig4(model, config, out, lay, f5))
    f6 = done(fig6(model, out, f2))
    f7 = done(fig7(model, config, out))
    ext = done(extras(model, config, out, f3, lay))
    scored = ScoredItems({**f3.scoring, **f5.scoring, **f7.scoring})

    summary: dict[str, Any] = {
        "model": model_name or getattr(model.cfg, "model_name", "unknown"), "n_layers": model.cfg.n_layers,
        "d_model": model.cfg.d_model, "config": asdict(config), "tokenization": plan, "paper": PAPER,
        "layers": lay.numbers, "figures": {f.name: f.numbers for f in (f3, f2, f5, w2v, f4, f6, f7, ext)},
        "files": out.files, "scoring": scored.counts}
    if f5.skipped:
        summary["fig5_skipped"] = f5.skipped
    summary["verdicts"] = verdicts(summary)
    summary["timings_s"] = clock.timings()
    summary["files"]["summary"] = str(final / "summary.json")
    summary["files"]["report"] = str(final / "report.html")
    # the report: the verdicts and headline numbers, then these sections in this order
    _write_report(summary, config, (scored, f2, f3, lay, f4, f5, w2v, f6, f7, ext), stage / "report.html")
    atomic_write_text(stage / "summary.json", json.dumps(summary, indent=1, default=str))
    clock.close()
    return summary


_S = TypeVar("_S", bound=Step)


class _Clock:
    """Times each step, logs its line and moves the progress bar."""

    def __init__(self, progress: bool | None, log: Callable[[str], None]) -> None:
        self.log = log
        self.bar = progress_bar(total=_N_STEPS + 1, desc="reproduce", unit="step", show=progress)
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, result: _S) -> _S:
        """Record ``result``'s step as finished now: its time, its log line; returns ``result``."""
        now = time.perf_counter()
        self.seconds[result.name] = round(now - self.last, 2)
        line = result.line()
        if line:
            self.log(line)
        self.bar.update(1)
        self.last = time.perf_counter()
        return result

    def timings(self) -> dict[str, float]:
        return {**self.seconds, "total": round(time.perf_counter() - self.start, 2)}

    def close(self) -> None:
        self.bar.update(1)
        self.bar.close()


def _write_report(s: dict[str, Any], cfg: ReproduceConfig, sections: Sequence[Any], path: Path) -> None:
    """The report: title, verdicts, caveats, headline numbers, then each of ``sections`` (``render(report)``), then the files."""
    from ..viz.report import Report

    tok = s["tokenization"]
    report = Report(f"lensarith reproduction of Merullo, Eickhoff & Pavlick (2023) on {s['model']}",
                    subtitle=f"{s['n_layers']} layers, d_model {s['d_model']}; n={cfg.n} prompts per task"
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
    for section in sections:
        section.render(report)
    report.add_section("Files", "summary.json holds every number shown here; results/ the tensors (safetensors + JSON); "
                                "figures/ the PNGs.")
    report.save(path)


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

