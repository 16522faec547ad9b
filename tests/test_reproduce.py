"""``lensarith reproduce``: a small run writes the summary, figures, results and one offline report."""

import json
import re
import types

import pytest

import lensarith as la
from lensarith import cli
from lensarith.paper.figures import PAPER, answer_from, argument_layers, upper_layers
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


def test_results_load_back(small_run):
    lens = la.Result.load(small_run / "results" / "fig3-capitals")
    assert lens.kind == "logit_lens"
    assert la.Result.load(small_run / "results" / "fig5-us_capitals").kind == "transplant"
    assert la.Result.load(small_run / "results" / "fig7-capitals").kind == "ffn_ablation"
    assert la.Result.load(small_run / "results" / "o-capitals").kind == "o_vector"


def test_report_is_one_offline_page(small_run):
    html = (small_run / "report.html").read_text()
    for marker in ("http://", "https://", "//cdn", "unpkg"):
        assert marker not in html.lower()
    assert html.count("var CircuitsVis=") == 1
    assert html.count("data:image/png;base64,") >= 7
    for text in ("Fig 2", "Fig 3", "Fig 4", "Fig 5", "Fig 6", "Fig 7", "Poland", "ColoredTokens", "AttentionHeads",
                 "Ours vs the paper"):
        assert text in html


def test_gpt2_medium_uses_the_papers_layers():
    fake = types.SimpleNamespace(cfg=types.SimpleNamespace(model_name="gpt2-medium", n_layers=24, d_model=1024))
    assert is_gpt2_medium(fake)
    src = la.build_prompts("past", n=1)[0]
    info, found = choose_layers(fake, "past", src, [], ReproduceConfig())
    assert found is None and info == {"method": "paper", "application": 18, "replace": list(range(18, 24))}
    assert choose_layers(fake, "capitals", src, [], ReproduceConfig())[0]["application"] == 19


def test_summary_puts_the_paper_beside_ours(small_run):
    text = format_summary(json.loads((small_run / "summary.json").read_text()))
    assert "rank 10 -> 4, no effect 37%" in text and "extractive -17%" in text
    assert re.search(r"Fig 5 us_capitals\s+rank", text)


def test_helpers():
    assert answer_from(["a", "Poland", "Warsaw", " Warsaw"], " Warsaw") == 2
    assert answer_from(["Warsaw", "x"], "Warsaw") is None
    assert argument_layers(["a", " Poland", "Poland", "b"], " Poland") == [1, 2]
    assert upper_layers(24) == list(range(14, 24)) and upper_layers(8) == [5, 6, 7]
    assert PAPER["fig2"]["poland_answer_from"] == 19


def test_config_is_validated():
    with pytest.raises(la.LensarithError, match="n must be None or an int >= 2"):
        ReproduceConfig(n=1)
