"""Several models' reproductions side by side: the comparison report and its rows."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .text import REPORT_CSS, caveats_html, headline_table_html, scroll_table

__all__ = ["comparison_rows", "write_comparison"]


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
