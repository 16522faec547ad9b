"""Did a claim of the paper reproduce? Stated criteria, applied to the summary's numbers.

Every function here is pure: it reads numbers (the dicts ``reproduce`` writes into
``summary.json``) and returns a verdict, ``"yes"``, ``"partial"`` or ``"no"``, with the
reason. Nothing is typed by hand: the report's "reproduced?" column is ``verdicts(summary)``.

Claims (the paper's, GPT2-Medium unless said otherwise) and criteria:

1. **Argument formation** (Fig 3, the "X"): per task, the argument's MRR has a hump (its
   peak, at a layer strictly inside the stack and above the noise floor, is above both its
   first-layer and its last-layer value, the paired bootstrap 95% intervals of both
   differences above 0), the answer's MRR rises from the argument's peak to the output
   (interval above 0), and the arms cross (at some layer before the crossing the argument's
   MRR is above the floor and above the answer's, interval of the difference above 0).
   yes: all three; partial: the answer rises and there is a hump or a crossing; no: else.
2. **Function application at about 2/3 of the depth** (Fig 3): the crossing is the first
   layer from which the answer's MRR stays above the argument's and above the noise floor
   to the output; its depth is ``(layer + 1) / n_layers``. yes: depth in (0.5, 0.85]
   (2/3, and GPT2-Medium's 20/24) and the arms cross before it (a hand-over from the
   argument); partial: depth in (0.35, 0.95]; no: outside, or no crossing.
3. **o lifts the answer in random-token contexts** (Fig 5, in-domain sets) and
4. **out-of-domain transfer** (Fig 5, out-of-domain sets): per set, the output-layer MRR
   with o minus each baseline's (control, same-norm random vectors, zeroed MLPs), paired
   over contexts. yes: every 95% interval above 0 and the smallest lift at least
   ``MIN_LIFT``; no: some lift <= 0 (a baseline does as well); partial: else.
5. **Ablation contrast** (Fig 7): the relative accuracy drop after removing about 80% of
   the MLPs from the top (the paper: 24 of BLOOM's 30), abstractive minus extractive.
   yes: difference at least ``MIN_CONTRAST`` with its 95% interval above 0; no: difference
   <= 0; partial: else.

A claim with several tasks or sets is "yes" when every one is, "no" when none is better
than "no", "partial" otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import LensarithError

__all__ = ["NOISE_FLOOR", "MIN_LIFT", "MIN_CONTRAST", "DEPTH_YES", "DEPTH_PARTIAL", "VERDICTS", "CRITERIA",
           "judge_x", "judge_depth", "judge_lift", "judge_contrast", "combine", "verdicts", "format_ci"]

#: MRR below which a curve is read as noise (a token ranked ~20th on average; a uniform random
#: ranking gives H(V)/V, 0.0019 for the organism's 4,683 tokens, 0.0002 for GPT-2's 50,257)
NOISE_FLOOR = 0.05
#: the smallest output-layer MRR lift over the best baseline counted as a clear effect
MIN_LIFT = 0.05
#: the smallest abstractive-minus-extractive relative drop counted as the paper's contrast
MIN_CONTRAST = 0.2
#: depth (crossing layer + 1) / n_layers: (low, high] for "yes" and for "partial"
DEPTH_YES = (0.5, 0.85)
DEPTH_PARTIAL = (0.35, 0.95)
VERDICTS = ("yes", "partial", "no")

CRITERIA: dict[str, str] = {
    "argument_formation": (
        f"per task: the argument's MRR peaks at a middle layer above the noise floor ({NOISE_FLOOR}) and the peak is "
        "above its first- and last-layer values (paired bootstrap 95% CIs of both differences > 0); the answer's MRR "
        "rises from that layer to the output (CI > 0); the arms cross (the argument above the floor and above the "
        "answer at a layer before the crossing, CI of the difference > 0). yes: all three; partial: the answer rises "
        "and a hump or a crossing; no: otherwise"),
    "application_depth": (
        f"crossing = the first layer from which the answer's MRR stays above the argument's and above the noise floor "
        f"({NOISE_FLOOR}) to the output; depth = (crossing + 1) / n_layers. yes: depth in ({DEPTH_YES[0]}, "
        f"{DEPTH_YES[1]}] and the argument led before the crossing; partial: depth in ({DEPTH_PARTIAL[0]}, "
        f"{DEPTH_PARTIAL[1]}]; no: otherwise or no crossing"),
    "transplant_lift": (
        "in-domain sets: output-layer MRR with o minus each baseline (control; random vectors of o's norm; the same "
        f"MLPs zeroed), paired over contexts. yes: every 95% CI > 0 and the smallest lift >= {MIN_LIFT}; "
        "no: some lift <= 0; partial: otherwise"),
    "out_of_domain": (
        "out-of-domain sets (another dataset's arguments, the task's o): the same criterion as the in-domain lift"),
    "ablation_contrast": (
        "relative accuracy drop after removing ~80% of the MLPs top-down, abstractive minus extractive "
        f"(bootstrap over examples). yes: difference >= {MIN_CONTRAST} with 95% CI > 0; no: difference <= 0; "
        "partial: otherwise"),
}

_CLAIMS = {
    "argument_formation": ("Argument formation: the argument rises then falls while the answer rises (the 'X')",
                           "Fig 3: argument rises then falls, answer rises; Fig 2: ' Poland' top-1 at layers 15-18"),
    "application_depth": ("Function application about 2/3 through the network",
                          "Fig 3: ~2/3 of depth; Fig 2: ' Warsaw' from layer 19 of 24"),
    "transplant_lift": ("o transplanted into random-token contexts lifts the answer (in-domain)",
                        "Fig 5: capitals rank ~10 -> 4, past ~7 -> 3, uppercasing promoted almost always"),
    "out_of_domain": ("o transfers to out-of-domain arguments",
                      "Fig 5: US state capitals rank 20 -> 3, irregular past ~6 -> 3, words uppercased"),
    "ablation_contrast": ("Removing upper MLPs hurts abstractive far more than extractive prompts",
                          "Fig 7 (BLOOM, 24 of 30 FFNs): abstractive -73%, extractive -17%"),
}


def format_ci(value: float | None, ci: Sequence[float] | None, digits: int = 2, *, pct: bool = False) -> str:
    """``0.52 [0.47, 0.56]`` (or ``52% [47, 56]``); ``–`` for a missing value."""
    if value is None:
        return "–"
    if pct:
        body = f"{value:.0%}"
        return body if ci is None else f"{body} [{ci[0] * 100:.0f}, {ci[1] * 100:.0f}]"
    body = f"{value:.{digits}f}"
    return body if ci is None else f"{body} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _lo(ci: Sequence[float] | None) -> float:
    if ci is None or len(ci) != 2:
        raise LensarithError(f"a confidence interval must be [lo, hi], got {ci!r}")
    return float(ci[0])


def judge_x(x: Mapping[str, Any]) -> tuple[str, str]:
    """Claim 1 for one task.

    Args:
        x: ``{"n_layers", "peak_layer", "peak_mrr", "floor", "rise": {"value", "ci"},
            "fall": {...}, "answer_rise": {...}, "argument_leads_layers": [int]}``.

    Returns:
        ``(verdict, reason)``.
    """
    inside = 0 < int(x["peak_layer"]) < int(x["n_layers"]) - 1
    hump = inside and x["peak_mrr"] >= x["floor"] and _lo(x["rise"]["ci"]) > 0 and _lo(x["fall"]["ci"]) > 0
    rises = _lo(x["answer_rise"]["ci"]) > 0
    cross = bool(x["argument_leads_layers"])
    parts = [("argument hump at L%d" % x["peak_layer"]) if hump else "no argument hump",
             "answer rises" if rises else "answer does not rise",
             (f"arms cross (argument leads at L{', L'.join(map(str, x['argument_leads_layers']))})" if cross
              else "arms never cross (the answer leads at every readable layer)")]
    why = "; ".join(parts)
    if hump and rises and cross:
        return "yes", why
    if rises and (hump or cross):
        return "partial", why
    return "no", why


def _in(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] < value <= bounds[1]


def judge_depth(crossing: Mapping[str, Any]) -> tuple[str, str]:
    """Claim 2 for one task.

    Args:
        crossing: ``{"layer": int | None, "fraction": float | None, "handover": bool}``.
    """
    if crossing.get("layer") is None or crossing.get("fraction") is None:
        return "no", "the answer never stays above the argument and the noise floor"
    f = float(crossing["fraction"])
    where = f"crossing at L{crossing['layer']} = {f:.2f} of depth"
    if _in(f, DEPTH_YES) and crossing.get("handover"):
        return "yes", where + ", after the argument led"
    if _in(f, DEPTH_PARTIAL):
        extra = "" if crossing.get("handover") else " (no hand-over: the answer leads from the first readable layer)"
        return "partial", where + (" (outside the 'yes' range)" if not _in(f, DEPTH_YES) else "") + extra
    return "no", where + " (far from 2/3)"


def judge_lift(lift: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """Claims 3 and 4 for one set.

    Args:
        lift: ``{baseline: {"diff": float, "ci": [lo, hi]}}`` for ``control``, ``random``,
            ``zeroed`` (output-layer MRR with o minus the baseline's, paired over contexts).
    """
    if not lift:
        raise LensarithError("lift is empty: give {baseline: {'diff', 'ci'}} for control, random and zeroed")
    worst = min(lift, key=lambda b: lift[b]["diff"])
    below = [b for b, v in lift.items() if v["diff"] <= 0]
    if below:
        return "no", f"o does no better than the {', '.join(below)} baseline{'s' if len(below) > 1 else ''}"
    unsure = [b for b, v in lift.items() if _lo(v["ci"]) <= 0]
    small = lift[worst]["diff"] < MIN_LIFT
    if not unsure and not small:
        return "yes", f"above every baseline (smallest lift {lift[worst]['diff']:.2f}, vs {worst})"
    why = []
    if unsure:
        why.append(f"the CI includes 0 against {', '.join(unsure)}")
    if small:
        why.append(f"smallest lift {lift[worst]['diff']:.3f} < {MIN_LIFT} (vs {worst})")
    return "partial", "; ".join(why)


def judge_contrast(contrast: Mapping[str, Any]) -> tuple[str, str]:
    """Claim 5 for one task.

    Args:
        contrast: ``{"abstractive_drop", "extractive_drop", "difference", "difference_ci"}``
            (relative drops, 0.73 = 73% of the accuracy lost).
    """
    d = float(contrast["difference"])
    if d <= 0:
        return "no", (f"extractive drops as much or more ({contrast['extractive_drop']:.0%} vs abstractive "
                      f"{contrast['abstractive_drop']:.0%})")
    if _lo(contrast["difference_ci"]) > 0 and d >= MIN_CONTRAST:
        return "yes", f"abstractive drops {d:.0%} more (CI > 0)"
    return "partial", f"abstractive drops {d:.0%} more" + (" (CI includes 0)" if _lo(contrast["difference_ci"]) <= 0
                                                          else f" (< {MIN_CONTRAST:.0%})")


def combine(verdicts: Sequence[str]) -> str:
    """yes when every case is yes, no when every case is no, partial otherwise."""
    bad = [v for v in verdicts if v not in VERDICTS]
    if bad or not verdicts:
        raise LensarithError(f"verdicts must be a non-empty list of {VERDICTS}, got {list(verdicts)!r}")
    if all(v == "yes" for v in verdicts):
        return "yes"
    if all(v == "no" for v in verdicts):
        return "no"
    return "partial"


def _case(name: str, text: str, numbers: Mapping[str, Any], judged: tuple[str, str]) -> dict[str, Any]:
    return {"case": name, "text": text, "numbers": dict(numbers), "verdict": judged[0], "why": judged[1]}


def _x_cases(fig3: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for task, s in fig3.items():
        x = s["x"]
        text = (f"argument peak L{x['peak_layer']} MRR {format_ci(x['peak_mrr'], x.get('peak_ci'))}; rise "
                f"{format_ci(x['rise']['value'], x['rise']['ci'])}, fall {format_ci(x['fall']['value'], x['fall']['ci'])}; "
                f"answer rise {format_ci(x['answer_rise']['value'], x['answer_rise']['ci'])} (n={s['n_correct'] or s['n']})")
        out.append(_case(task, text, x, judge_x(x)))
    return out


def _depth_cases(fig3: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for task, s in fig3.items():
        c = s["crossing"]
        text = ("no crossing" if c["layer"] is None else
                f"crossing L{c['layer']} of {s['x']['n_layers']} = {c['fraction']:.2f} of depth"
                + ("" if c["handover"] else "; the answer leads from the first readable layer"))
        out.append(_case(task, text, c, judge_depth(c)))
    return out


def _lift_cases(fig5: Mapping[str, Any], domain: str) -> list[dict[str, Any]]:
    out = []
    for name, s in fig5.items():
        if s.get("domain") != domain:
            continue
        f = s["final"]
        text = (f"MRR o {format_ci(f['transplant']['mrr'], f['transplant']['mrr_ci'])} vs control "
                f"{format_ci(f['control']['mrr'], f['control']['mrr_ci'])}, random {format_ci(f['random']['mrr'], f['random']['mrr_ci'])}, "
                f"zeroed {format_ci(f['zeroed']['mrr'], f['zeroed']['mrr_ci'])}; lift vs best baseline "
                + format_ci(*_best_lift(s["lift"])) + f" (n={s['n']})")
        out.append(_case(name, text, s["lift"], judge_lift(s["lift"])))
    return out


def _best_lift(lift: Mapping[str, Mapping[str, Any]]) -> tuple[float, Sequence[float]]:
    worst = min(lift, key=lambda b: lift[b]["diff"])
    return lift[worst]["diff"], lift[worst]["ci"]


def _contrast_cases(fig7: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for task, s in fig7.items():
        c = s["contrast"]
        text = (f"after {c['removed']} MLPs: abstractive -{format_ci(c['abstractive_drop'], c['abstractive_drop_ci'], pct=True)}, "
                f"extractive -{format_ci(c['extractive_drop'], c['extractive_drop_ci'], pct=True)}; difference "
                f"{format_ci(c['difference'], c['difference_ci'])}")
        out.append(_case(task, text, c, judge_contrast(c)))
    return out


def verdicts(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The "reproduced?" column: one entry per claim whose figure the summary holds.

    Args:
        summary: ``reproduce``'s summary (only ``summary["figures"]`` is read: ``fig3[task]``
            ``x`` and ``crossing``, ``fig5[set]`` ``domain``, ``final`` and ``lift``,
            ``fig7[task]["contrast"]``).

    Returns:
        ``[{"claim", "key", "paper", "criterion", "numbers", "cases", "verdict"}]``:
        ``numbers`` maps each task or set to the numbers judged, ``cases`` holds the
        per-case text, verdict and reason, ``verdict`` combines them.
    """
    f = summary.get("figures", {})
    found: list[tuple[str, list[dict[str, Any]]]] = []
    if "fig3" in f:
        found += [("argument_formation", _x_cases(f["fig3"])), ("application_depth", _depth_cases(f["fig3"]))]
    if "fig5" in f:
        found += [("transplant_lift", _lift_cases(f["fig5"], "in")), ("out_of_domain", _lift_cases(f["fig5"], "out"))]
    if "fig7" in f:
        found.append(("ablation_contrast", _contrast_cases(f["fig7"])))
    out = []
    for key, cases in found:
        if not cases:
            continue
        claim, paper = _CLAIMS[key]
        out.append({"claim": claim, "key": key, "paper": paper, "criterion": CRITERIA[key],
                    "numbers": {c["case"]: c["numbers"] for c in cases}, "cases": cases,
                    "verdict": combine([c["verdict"] for c in cases])})
    return out
