"""The "reproduced?" column follows from the numbers: fabricated results through ``lensarith.paper.verdicts``."""

import pytest
import torch

import lensarith as la
from lensarith.paper import verdicts as V
from lensarith.paper.figures import crossing, curve_stats
from lensarith.paper.text import format_verdicts, verdict_table_html


def lift(control, random, zeroed):
    """Fabricated Fig 5 lifts: (diff, lo, hi) per baseline."""
    return {name: {"diff": d, "ci": [lo, hi]} for name, (d, lo, hi) in
            (("control", control), ("random", random), ("zeroed", zeroed))}


# --------------------------------------------------------------------------- Fig 5: the transplant's lift

def test_no_lift_is_no():
    assert V.judge_lift(lift((0.0, -0.05, 0.05), (0.2, 0.1, 0.3), (0.1, 0.05, 0.15)))[0] == "no"
    # the first study's numbers: o 0.450 vs control 0.418, random 0.235, zeroed 0.34 -- but the transplant below control
    assert V.judge_lift(lift((-0.02, -0.06, 0.02), (0.2, 0.1, 0.3), (0.1, 0.0, 0.2)))[0] == "no"


def test_a_baseline_doing_as_well_is_no():
    verdict, why = V.judge_lift(lift((0.3, 0.2, 0.4), (-0.01, -0.1, 0.08), (0.25, 0.2, 0.3)))
    assert verdict == "no" and "random" in why


def test_clear_lift_is_yes():
    verdict, why = V.judge_lift(lift((0.3, 0.2, 0.4), (0.5, 0.4, 0.6), (0.2, 0.1, 0.3)))
    assert verdict == "yes" and "vs zeroed" in why


def test_edge_cases_are_partial():
    # above every baseline, but the interval against control includes 0 (the first study's +0.03 with n=30)
    verdict, why = V.judge_lift(lift((0.03, -0.02, 0.08), (0.2, 0.1, 0.3), (0.11, 0.05, 0.17)))
    assert verdict == "partial" and "control" in why
    # clear but smaller than MIN_LIFT
    verdict, why = V.judge_lift(lift((0.02, 0.01, 0.03), (0.3, 0.2, 0.4), (0.2, 0.1, 0.3)))
    assert verdict == "partial" and str(V.MIN_LIFT) in why


# --------------------------------------------------------------------------- Fig 7: the ablation contrast

def contrast(abstractive, extractive, lo, hi):
    return {"abstractive_drop": abstractive, "extractive_drop": extractive, "difference": abstractive - extractive,
            "difference_ci": [lo, hi], "removed": 7}


def test_contrast_verdicts():
    assert V.judge_contrast(contrast(0.66, 0.04, 0.53, 0.71))[0] == "yes"       # organism capitals
    assert V.judge_contrast(contrast(0.62, 0.69, -0.17, 0.03))[0] == "no"       # organism uppercase
    assert V.judge_contrast(contrast(0.73, 0.17, 0.45, 0.65))[0] == "yes"       # the paper's BLOOM numbers
    assert V.judge_contrast(contrast(0.30, 0.20, -0.05, 0.25))[0] == "partial"  # CI includes 0
    assert V.judge_contrast(contrast(0.30, 0.20, 0.02, 0.18))[0] == "partial"   # significant but small


# --------------------------------------------------------------------------- Fig 3: the X and the depth

def x_numbers(peak=3, rise=(0.5, 0.4, 0.6), fall=(0.2, 0.1, 0.3), answer_rise=(0.2, 0.1, 0.3), leads=(2,), peak_mrr=0.5):
    d = lambda t: {"value": t[0], "ci": [t[1], t[2]]}  # noqa: E731
    return {"n_layers": 8, "peak_layer": peak, "peak_mrr": peak_mrr, "floor": V.NOISE_FLOOR, "rise": d(rise),
            "fall": d(fall), "answer_rise": d(answer_rise), "argument_leads_layers": list(leads)}


def test_x_verdicts():
    assert V.judge_x(x_numbers())[0] == "yes"
    assert V.judge_x(x_numbers(leads=()))[0] == "partial"   # hump under a rising answer, arms never cross
    assert V.judge_x(x_numbers(fall=(0.01, -0.02, 0.04), leads=()))[0] == "no"  # no fall, no crossing
    assert V.judge_x(x_numbers(peak=7))[0] == "partial"     # peak at the last layer is no hump, but the arms cross
    assert V.judge_x(x_numbers(peak_mrr=0.01, leads=()))[0] == "no"  # a hump in the noise
    assert V.judge_x(x_numbers(answer_rise=(0.0, 0.0, 0.0)))[0] == "no"  # the answer saturated before the peak


def test_depth_verdicts():
    assert V.judge_depth({"layer": 19, "fraction": 20 / 24, "handover": True})[0] == "yes"   # GPT2-Medium, Warsaw at 19
    assert V.judge_depth({"layer": 15, "fraction": 16 / 24, "handover": True})[0] == "yes"
    assert V.judge_depth({"layer": 15, "fraction": 16 / 24, "handover": False})[0] == "partial"
    assert V.judge_depth({"layer": 3, "fraction": 0.5, "handover": True})[0] == "partial"    # the edge is outside "yes"
    assert V.judge_depth({"layer": 0, "fraction": 0.125, "handover": False})[0] == "no"     # the old L0 reading
    assert V.judge_depth({"layer": None, "fraction": None, "handover": False})[0] == "no"


def test_crossing_ignores_noise_and_requires_staying_above():
    # capitals on the organism: at L0 both are noise (answer 0.0054 vs argument 0.0008)
    ans = [0.0054, 0.0143, 0.01, 0.7633, 0.8966, 0.9755, 1.0, 1.0]
    arg = [0.0008, 0.0037, 0.0026, 0.5079, 0.3916, 0.4381, 0.2429, 0.2937]
    assert crossing(ans, arg, 0.0) == 0 and crossing(ans, arg, V.NOISE_FLOOR) == 3
    assert crossing([0.1, 0.6, 0.3, 0.9], [0.2, 0.2, 0.5, 0.1]) == 3  # dips below the argument at L2
    assert crossing([0.1, 0.2], [0.3, 0.4]) is None


def test_curve_stats_on_a_fabricated_x():
    # 40 examples, 6 layers: the argument rises to layer 2, falls; the answer overtakes at layer 3
    arg = torch.tensor([0.0, 0.3, 0.8, 0.4, 0.2, 0.1])[:, None].repeat(1, 40)
    ans = torch.tensor([0.0, 0.05, 0.2, 0.6, 0.9, 1.0])[:, None].repeat(1, 40)
    noise = torch.linspace(-0.02, 0.02, 40)
    stats = curve_stats(ans + noise.clamp_min(0), arg + noise.clamp_min(0))
    c, x = stats["crossing"], stats["x"]
    assert c["layer"] == 3 and c["handover"] and c["argument_leads_layers"] == [1, 2]
    assert x["peak_layer"] == 2 and V.judge_x(x)[0] == "yes" and V.judge_depth(c)[0] == "yes"
    assert len(stats["answer_ci"]) == 6


# --------------------------------------------------------------------------- combining, and the whole column

def test_combine():
    assert V.combine(["yes", "yes"]) == "yes" and V.combine(["no", "no"]) == "no"
    assert V.combine(["yes", "no"]) == "partial" and V.combine(["partial"]) == "partial"
    with pytest.raises(la.LensarithError, match="verdicts must be a non-empty list"):
        V.combine([])
    with pytest.raises(la.LensarithError, match="verdicts must be a non-empty list"):
        V.combine(["maybe"])


def fig5_set(domain, lifts):
    final = {r: {"mrr": 0.4, "mrr_ci": [0.3, 0.5], "top1": 0.1, "top1_ci": [0.0, 0.2]}
             for r in ("control", "transplant", "random", "zeroed")}
    return {"domain": domain, "n": 30, "final": final, "lift": lifts}


def fabricated_summary(in_lift, out_lift):
    fig3 = {"capitals": {"n": 100, "n_correct": 90, "x": x_numbers(), "crossing": {"layer": 5, "fraction": 0.75,
                                                                                   "handover": True}}}
    return {"figures": {"fig3": fig3,
                        "fig5": {"capitals": fig5_set("in", in_lift), "us_capitals": fig5_set("out", out_lift)},
                        "fig7": {"capitals": {"contrast": {**contrast(0.7, 0.1, 0.4, 0.8), "abstractive_drop_ci": [0.6, 0.8],
                                                           "extractive_drop_ci": [0.0, 0.2]}}}}}


def test_the_column_follows_from_fabricated_numbers():
    clear = lift((0.3, 0.2, 0.4), (0.5, 0.4, 0.6), (0.2, 0.1, 0.3))
    none = lift((0.0, -0.1, 0.1), (0.2, 0.1, 0.3), (0.1, 0.0, 0.2))
    edge = lift((0.03, -0.02, 0.08), (0.2, 0.1, 0.3), (0.1, 0.05, 0.15))
    for in_lift, out_lift, want_in, want_out in ((clear, none, "yes", "no"), (none, clear, "no", "yes"),
                                                 (edge, edge, "partial", "partial")):
        got = {v["key"]: v for v in V.verdicts(fabricated_summary(in_lift, out_lift))}
        assert got["transplant_lift"]["verdict"] == want_in and got["out_of_domain"]["verdict"] == want_out
        assert got["transplant_lift"]["numbers"] == {"capitals": in_lift}
        assert got["argument_formation"]["verdict"] == got["application_depth"]["verdict"] == "yes"
        assert got["ablation_contrast"]["verdict"] == "yes"
        for v in got.values():
            assert v["criterion"] == V.CRITERIA[v["key"]] and v["verdict"] in V.VERDICTS


def test_missing_figures_are_left_out_and_rendered():
    summary = fabricated_summary(lift((0.3, 0.2, 0.4), (0.5, 0.4, 0.6), (0.2, 0.1, 0.3)),
                                 lift((0.0, -0.1, 0.1), (0.2, 0.1, 0.3), (0.1, 0.0, 0.2)))
    del summary["figures"]["fig7"]
    got = V.verdicts(summary)
    assert [v["key"] for v in got] == ["argument_formation", "application_depth", "transplant_lift", "out_of_domain"]
    page = verdict_table_html(got)
    assert page.count("lensarith-v-yes") >= 3 and "lensarith-v-no" in page and "Criteria:" in page
    text = format_verdicts(got)
    assert "YES      o transplanted" in text and "NO       o transfers" in text
    assert V.format_ci(0.5, [0.4, 0.6]) == "0.50 [0.40, 0.60]" and V.format_ci(0.37, [0.3, 0.45], pct=True) == "37% [30, 45]"
