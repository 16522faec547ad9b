"""The report's "Which items are scored" section: the scoring counts of Figs 3, 5 and 7."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..text import scroll_table

__all__ = ["ScoredItems", "counts"]


def counts(report: Mapping[str, Any]) -> dict[str, Any]:
    """How many items of a figure's set were given, scored and dropped (by reason), from a batch's report."""
    from ...tasks import scoring_counts

    return scoring_counts(report)


@dataclass(frozen=True)
class ScoredItems:
    """Items given, scored and dropped per figure and set (``summary["scoring"]``), in the order the
    steps counted them."""

    counts: dict[str, dict[str, Any]]

    def render(self, report) -> None:
        from ...tasks import DROP_REASONS

        report.add_section("Which items are scored",
                           "Each figure scores an item on the first token of its answer (and tracks its argument's first "
                           "token). Single-token items are scored as they are; a multi-token item is scored on its first "
                           "tokens when the answer's first token differs from the argument's and no other answer of the "
                           "task starts with it (the first-token rule, lensarith.tasks); the rest are dropped, counted "
                           "here by reason (also in summary.json 'scoring').")
        reasons = list(dict.fromkeys(r for c in self.counts.values() for r in c["dropped"]))
        rows = [{"figure / set": k, "items": c["items"], "scored": c["scored"], "single-token": c["single_token"],
                 "by first token": c["first_token"],
                 **{f"dropped: {DROP_REASONS.get(r, r)}": c["dropped"].get(r, 0) for r in reasons}}
                for k, c in self.counts.items()]
        report.add_html(scroll_table(rows) if rows else "<p>(no counts)</p>")
