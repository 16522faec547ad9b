"""Text and HTML of the reproduction: the "reproduced?" table, wide tables that scroll, the
side-by-side summary the CLI prints.

Everything here formats numbers already in the summary; nothing is computed or judged here
(the verdicts come from ``lensarith.paper.verdicts``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..viz.report import html_table
from .figures import PAPER
from .verdicts import format_ci

__all__ = ["REPORT_CSS", "scroll_table", "verdict_table_html", "format_verdicts", "format_summary", "summary_rows",
           "headline_table_html", "card_caveats", "caveats_html"]

#: added once to the report: wide tables scroll inside their box, long cells wrap, text blocks wrap
REPORT_CSS = """<style>
.lensarith-headline table.lensarith-data td{text-align:left}
.lensarith-scroll{overflow-x:auto;max-width:100%;margin:8px 0}
.lensarith-scroll table.lensarith-data{margin:0}
.lensarith-scroll table.lensarith-data td,.lensarith-scroll table.lensarith-data th{max-width:30em;white-space:normal;
overflow-wrap:anywhere;vertical-align:top}
table.lensarith-verdicts td{text-align:left}
.lensarith-v-yes{background:#d4edda;font-weight:600}.lensarith-v-partial{background:#fff3cd;font-weight:600}
.lensarith-v-no{background:#f8d7da;font-weight:600}
pre.lensarith-pre{font-size:12px;background:#f8f8f8;padding:8px;white-space:pre-wrap;overflow-x:auto;max-width:100%}
</style>"""


def scroll_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """``html_table`` inside a box that scrolls sideways instead of overflowing the page."""
    return f"<div class='lensarith-scroll'>{html_table(rows, columns)}</div>"


def _cell(text: str, cls: str = "", rowspan: int = 1) -> str:
    span = f" rowspan='{rowspan}'" if rowspan > 1 else ""
    klass = f" class='{cls}'" if cls else ""
    return f"<td{klass}{span}>{html.escape(text)}</td>"


def verdict_table_html(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """The "reproduced?" table: one row per task or set, the claim's combined verdict beside it."""
    head = "".join(f"<th>{h}</th>" for h in ("claim", "paper", "case", "ours (95% bootstrap CIs)", "why",
                                                 "case verdict", "reproduced?"))
    body = []
    for v in verdicts:
        cases = v["cases"]
        for i, c in enumerate(cases):
            cells = ""
            if i == 0:
                cells += _cell(v["claim"], rowspan=len(cases)) + _cell(v["paper"], rowspan=len(cases))
            cells += _cell(c["case"]) + _cell(c["text"]) + _cell(c["why"]) + _cell(c["verdict"], f"lensarith-v-{c['verdict']}")
            if i == 0:
                cells += _cell(v["verdict"], f"lensarith-v-{v['verdict']}", rowspan=len(cases))
            body.append(f"<tr>{cells}</tr>")
    table = f"<table class='lensarith-data lensarith-verdicts'><tr>{head}</tr>{''.join(body)}</table>"
    crit = "".join(f"<li><b>{html.escape(v['claim'])}</b>: {html.escape(v['criterion'])}</li>" for v in verdicts)
    return f"<div class='lensarith-scroll'>{table}</div><p class='lensarith-note'>Criteria:</p><ul class='lensarith-note'>{crit}</ul>"


def format_verdicts(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """The "reproduced?" table as text (one line per case)."""
    lines = []
    for v in verdicts:
        lines.append(f"{v['verdict'].upper():<8} {v['claim']}")
        for c in v["cases"]:
            lines.append(f"  {c['verdict']:<8} {c['case']}: {c['text']} -- {c['why']}")
    return "\n".join(lines)


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.2f}"
    return str(x)


def _fig2_rows(f: Mapping[str, Any], L: int) -> list[tuple[str, str, str]]:
    p, c = f["fig2"]["capitals"], f["fig2"]["colours"]
    arg, ans = p["argument"].strip(), p["answer"].strip()
    extra = ("" if p["paper_prompt"] else
             f" (Poland prompt answered {p.get('paper_prompt_prediction', '?').strip()!r}; shown: {arg})")
    rows = [(f"Fig 2 {arg}", f"{arg!r} top-1 at layers {p['argument_layers'] or 'none'}, {ans!r} from "
                             f"{_fmt(p['answer_from'])} (of {L}); predicts {p['top1'][-1].strip()!r}{extra}",
             PAPER["fig2"]["poland"])]
    extra = "" if c["paper_prompt"] else f" (brown-paper prompt answered {c.get('paper_prompt_prediction', '?').strip()!r})"
    rows.append(("Fig 2 colours", f"({c['argument'].strip()}) {c['answer'].strip()!r} from {_fmt(c['answer_from'])} "
                                  f"(of {L}); predicts {c['top1'][-1].strip()!r}{extra}", PAPER["fig2"]["colours"]))
    return rows


def _fig3_row(task: str, s: Mapping[str, Any]) -> tuple[str, str, str]:
    c = s.get("crossing", {})
    where = ("no crossing" if c.get("layer") is None else
             f"crossing L{c['layer']} = {c['fraction']:.2f} of depth (answer above argument and noise floor "
             f"{c['floor']})")
    return (f"Fig 3 {task}", f"acc {format_ci(s['accuracy'], s.get('accuracy_ci'))} (n={s['n']}); argument peak "
                             f"L{s['argument_peak_layer']} (MRR {format_ci(s['argument_peak_mrr'], s.get('x', {}).get('peak_ci'))}); "
                             f"{where}", "~2/3 of depth")


def _fig4_row(d: Mapping[str, Any]) -> tuple[str, str, str]:
    text = (f"{d['argument'].strip()} context: {d['top1_original']!r} -> {d['top1_transplant']!r}; rank of "
            f"{d['answer']!r} {d['answer_rank_original']} -> {d['answer_rank_transplant']}")
    med = next((c for c in d.get("contexts", []) if c.get("pick") == "median"), None)
    if med:
        text += (f"; median context ({med['argument'].strip()}): rank of {med['answer']!r} {med['answer_rank_original']} "
                 f"-> {med['answer_rank_transplant']}")
    return ("Fig 4", text, "' Beijing' promoted to the top")


def _fig5_row(k: str, v: Mapping[str, Any]) -> tuple[str, str, str]:
    p = PAPER["fig5"].get(k, {})
    paper = (f"rank {p['control_rank']} -> {p['transplant_rank']}" if "control_rank" in p else p.get("text", ""))
    if "no_effect" in p:
        paper += f", no effect {p['no_effect']:.0%}"
    fin = v.get("final")
    ours = (f"rank {_fmt(v['control_rank'])} -> {_fmt(v['transplant_rank'])}, top-1 {v['control_top1']:.2f} -> "
            f"{v['transplant_top1']:.2f}")
    if fin:
        ours = (f"rank {_fmt(v['control_rank'])} -> {_fmt(v['transplant_rank'])}, top-1 "
                f"{format_ci(fin['control']['top1'], fin['control']['top1_ci'])} -> "
                f"{format_ci(fin['transplant']['top1'], fin['transplant']['top1_ci'])}; MRR control "
                f"{format_ci(fin['control']['mrr'], fin['control']['mrr_ci'])}, o "
                f"{format_ci(fin['transplant']['mrr'], fin['transplant']['mrr_ci'])}, random "
                f"{format_ci(fin['random']['mrr'], fin['random']['mrr_ci'])}, zeroed "
                f"{format_ci(fin['zeroed']['mrr'], fin['zeroed']['mrr_ci'])}")
    ours += f", no effect {format_ci(v['no_effect_rate'], v.get('no_effect_ci'), pct=True)} (n={v['n']})"
    return (f"Fig 5 {k}", ours, paper)


def _fig7_row(task: str, d: Mapping[str, Any], L: int) -> tuple[str, str, str]:
    rel, j = d["relative_drop_at_80pct"], d["removed"].index(d["at_80pct"])
    ci, c = d.get("accuracy_ci", {}), d.get("contrast", {})
    parts = []
    for s, acc in d["accuracy"].items():
        lo_hi = ci.get(s)
        drop = (f" (-{format_ci(c[f'{s}_drop'], c[f'{s}_drop_ci'], pct=True)})" if f"{s}_drop" in c else
                f" (-{rel[s]:.0%})" if rel[s] is not None else "")
        parts.append(f"{s} {format_ci(acc[0], lo_hi[0] if lo_hi else None)}->"
                     f"{format_ci(acc[j], lo_hi[j] if lo_hi else None)}{drop}")
    return (f"Fig 7 {task}", f"after {d['at_80pct']}/{L} MLPs: " + ", ".join(parts),
            "BLOOM, 24/30 FFNs: extractive -17%, abstractive -73%")


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Every figure's headline number as ``(figure, ours, paper)`` rows, in the paper's order."""
    f = summary["figures"]
    L = summary["n_layers"]
    rows: list[tuple[str, str, str]] = []
    if "fig2" in f:
        rows += _fig2_rows(f, L)
    rows += [_fig3_row(task, s) for task, s in f.get("fig3", {}).items()]
    if "fig4" in f:
        rows.append(_fig4_row(f["fig4"]))
    rows += [_fig5_row(k, v) for k, v in f.get("fig5", {}).items()]
    if "fig6" in f:
        a, e = f["fig6"]["abstractive"], f["fig6"]["extractive"]
        rows.append(("Fig 6", f"answer top-1 from L{_fmt(a['answer_from'])} (abstractive) vs L{_fmt(e['answer_from'])} "
                              "(extractive)", "extractive saturates at once"))
    rows += [_fig7_row(task, d, L) for task, d in f.get("fig7", {}).items()]
    return rows


def headline_table_html(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """The headline numbers as an HTML table: one row per figure and case, one column per model,
    the paper's number last."""
    table: dict[str, dict[str, str]] = {}
    for name, s in summaries.items():
        for fig, ours, paper in summary_rows(s):
            row = table.setdefault(fig, {"figure": fig})
            row[f"{name}" if len(summaries) > 1 else "ours"] = ours
            row.setdefault("paper (GPT2-Medium; Fig 7: BLOOM)", paper)
    cols = ["figure", *([*summaries] if len(summaries) > 1 else ["ours"]), "paper (GPT2-Medium; Fig 7: BLOOM)"]
    return f"<div class='lensarith-headline'>{scroll_table(list(table.values()), cols)}</div>"


_CAVEATS = re.compile(r"^\*\*Caveats[^\n]*\n(?:[^\n]+\n)*\s*\n((?:(?:- |  ).*(?:\n|$))+)", re.M)


def card_caveats(model_name: str) -> list[str] | None:
    """The caveats a bundled model's card lists (its ``**Caveats ...**`` block, one string per bullet,
    Markdown emphasis removed); ``[]`` for a bundled model whose card lists none, None for any other model."""
    from .._paths import BUNDLED_MODELS, data_dir

    if model_name not in BUNDLED_MODELS:
        return None
    card = data_dir() / model_name / "card.md"
    if not card.is_file():
        return None
    m = _CAVEATS.search(card.read_text(encoding="utf-8"))
    if not m:
        return []
    items = re.split(r"(?m)^- ", m.group(1))
    return [re.sub(r"\*{1,2}([^*]+)\*{1,2}", r"\1", " ".join(i.split())) for i in items if i.strip()]


def caveats_html(model_name: str) -> str:
    """The card's caveats as an HTML list (or a sentence saying the card lists none / there is no card)."""
    got = card_caveats(model_name)
    if got is None:
        return "<p class='lensarith-note'>No bundled card for this model: no caveats recorded.</p>"
    if not got:
        return f"<p class='lensarith-note'>The {html.escape(model_name)} card lists no caveats.</p>"
    return ("<ul class='lensarith-caveats'>" + "".join(f"<li>{html.escape(c)}</li>" for c in got) + "</ul>"
            f"<p class='lensarith-note'>From data/{html.escape(model_name)}/card.md.</p>")


def format_summary(summary: Mapping[str, Any]) -> str:
    """Every figure's headline numbers (95% bootstrap CIs in brackets) next to the paper's, as
    text, then the "reproduced?" verdicts when the summary has them."""
    rows = summary_rows(summary)
    w1 = max(len(r[0]) for r in rows) if rows else 6
    head = f"{'figure':<{w1}}  ours ({summary['model']}); below it the paper's (GPT2-Medium unless said)"
    text = "\n".join([head, "-" * len(head)] + [f"{a:<{w1}}  {b}\n{'':<{w1}}  paper: {c}" for a, b, c in rows])
    if summary.get("verdicts"):
        text += "\n\nreproduced? (criteria in summary.json 'verdicts' and the report)\n" + format_verdicts(summary["verdicts"])
    return text
