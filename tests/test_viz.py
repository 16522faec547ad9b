"""Renderers: the HTML they produce holds the tokens, is self-contained, and needs no network."""

import json
import shutil
import socket
import subprocess
import sys
import urllib.request

import pytest
import torch

import lensarith as la
from lensarith.viz import _bundle, circuits, plots
from lensarith.viz.report import Report, html_table

EXTERNAL = ("http://", "https://", "//cdn", "unpkg")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def assert_self_contained(html: str) -> None:
    for marker in EXTERNAL:
        assert marker not in html.lower(), f"{marker!r} in: {circuits.find_urls(html)[:3]}"
    assert "src='http" not in html and 'src="http' not in html


def test_bundle_is_inlinable_and_url_free():
    js = circuits.bundle_js()
    assert len(js) > 500_000 and "var CircuitsVis=" in js
    assert "</script" not in js and "sourceMappingURL" not in js
    assert_self_contained(js)
    # the namespace strings React needs keep their runtime value: "http:\/\/x" is "http://x" in JS
    assert '"http:\\/\\/www.w3.org/2000/svg"' in js
    original = _bundle._bundle_path().read_text(encoding="utf-8")
    assert original.count("://") + original.count(":\\/\\/") == js.count(":\\/\\/")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_bundle_still_parses_as_javascript(tmp_path):
    path = tmp_path / "bundle.js"
    path.write_text(circuits.bundle_js())
    subprocess.run(["node", "--check", str(path)], check=True, capture_output=True)


def test_colored_tokens_html(no_network):
    w = circuits.colored_tokens(["The", " capital", " Warsaw"], torch.tensor([0.5, -1.0, 2.0]), title="dla")
    html = w._repr_html_()
    for tok in ("The", "capital", "Warsaw"):
        assert tok in html
    assert '"values": [0.5, -1.0, 2.0]' in html and "ColoredTokens" in html
    assert html.count("var CircuitsVis=") == 1
    assert_self_contained(html)
    with pytest.raises(la.LensarithError, match="2 tokens but 3 values"):
        circuits.colored_tokens(["a", "b"], [1, 2, 3])


def test_logit_lens_table_has_the_layers_and_tokens(model, no_network):
    ex = la.build_prompts("capitals", n=2)
    lens = la.logit_lens(model, ex)
    w = circuits.logit_lens_table(lens, 1, k=3)
    html = w.html()
    ids = [lens.normed.shape[0]]
    assert ids and all(label in html for label in lens.layers)
    top = model.unembed(lens.normed[-1, 1][None, None].to(model.cfg.device))[0, 0].topk(3).indices
    for t in top.tolist():
        assert model.tokenizer.decode([t]).replace("&", "&amp;") in html
    assert not w.needs_bundle and "<script" not in html  # a static table: works where scripts do not run
    with pytest.raises(la.LensarithError, match="out of range"):
        circuits.logit_lens_table(lens, 5)


def test_attention_patterns(model, no_network):
    prompt = la.build_prompts("capitals", n=1)[0]
    w = circuits.attention_patterns(model, prompt, [(0, 1), (1, 3)])
    html = w.html(include_bundle=True)
    assert "AttentionHeads" in html and "L0H1" in html and "L1H3" in html and "capital" in html
    props = w.props
    n = len(props["tokens"])
    assert tuple(props["attention"].shape) == (2, n, n)
    assert torch.allclose(props["attention"].sum(-1), torch.ones(2, n), atol=1e-5)
    assert_self_contained(html)
    with pytest.raises(la.LensarithError, match="head 9 is out of range"):
        circuits.attention_patterns(model, prompt, [(0, 9)])
    with pytest.raises(la.LensarithError, match="out of range"):
        circuits.attention_patterns(model, prompt, [(7, 0)])


def test_patch_tokens_picks_the_strongest_layer():
    from lensarith.patching import PatchResult

    values = torch.tensor([[0.0, 0.1, 0.0], [0.2, 0.9, -0.3]])
    res = PatchResult({"values": values, "per_example": values[..., None], "clean": torch.ones(1), "corrupted": torch.zeros(1)},
                      {"values": ("layer", "pos"), "per_example": ("layer", "pos", "batch"), "clean": ("batch",),
                       "corrupted": ("batch",)},
                      {"layer": ["0", "1"], "pos": ["0 Q", "1 Poland", "2 ?"]})
    w = circuits.patch_tokens(res)
    assert w.props["tokens"] == ["Q", "Poland", "?"] and w.props["values"] == pytest.approx([0.2, 0.9, -0.3])
    assert "layer 1" in w.title


def test_report_inlines_the_bundle_once_and_is_offline(model, tmp_path, no_network):
    r = Report("demo report")
    r.add_section("tokens", "some text")
    for i in range(3):
        r.add_widget(circuits.colored_tokens([f"tok{i}", "Warsaw"], [i, 1.0]))
    r.add_table([{"layer": 0, "mrr": 0.5}], caption="a table")
    fig = plots.rr_curves.__module__ and plots.example_curve(["L0", "L1"], [0.1, 0.2], [0.2, 0.9])
    r.add_figure(plots.png_bytes(fig), caption="fig")
    path = r.save(tmp_path / "report.html")
    html = path.read_text()
    assert html.count("var CircuitsVis=") == 1  # once per report, not once per widget
    assert html.count("CircuitsVis.render(") == 3
    assert "tok0" in html and "tok2" in html and "Warsaw" in html and "data:image/png;base64," in html
    assert_self_contained(html)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary files left


def test_report_refuses_external_urls():
    r = Report("x")
    r.add_html("<img src='https://example.com/a.png'>")
    with pytest.raises(la.LensarithError, match="external resources"):
        r.html()


def test_static_report_without_widgets_has_no_bundle():
    r = Report("x").add_table([{"a": 1.23456, "b": None}])
    html = r.html()
    assert "CircuitsVis" not in html and "1.235" in html
    assert "(no rows)" in html_table([])


def test_plots_write_pngs_atomically(tmp_path):
    layers = ["L0", "L1", "L2"]
    figs = {
        "x": plots.x_pattern({"capitals": {"layers": layers, "argument": [0.1, 0.8, 0.2], "answer": [0, 0.1, 0.9], "n": 3}}),
        "t": plots.transplant_curves({"a": {"layers": layers, "control": [0, 0, 0.1], "transplant": [0, 0.2, 0.6]},
                                      "b": {"layers": layers, "control": [0, 0, 0.1], "transplant": [0, 0.2, 0.6]},
                                      "c": {"layers": layers, "control": [0, 0, 0.1], "transplant": [0, 0.2, 0.6]}}),
        "a": plots.ablation_curves({"capitals": {"removed": [0, 1, 3], "abstractive": [0.9, 0.5, 0.1],
                                                 "extractive": [0.9, 0.8, 0.7]}}),
        "g": plots.token_grid(layers, {"abstractive": ["Q", " Poland", " Warsaw"], "extractive": [" Warsaw"] * 3},
                              highlight={" Warsaw": "#ffe0b2"}),
    }
    for name, fig in figs.items():
        path = plots.save_png(fig, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "g.png", "t.png", "x.png"]
    with pytest.raises(la.LensarithError, match="has 2 points but there are 3 layers"):
        plots.x_pattern({"t": {"layers": layers, "argument": [0, 1], "answer": [0, 1, 2]}})


def test_viz_imports_stay_lazy():
    code = ("import sys, json, lensarith, lensarith.viz, lensarith.viz.circuits, lensarith.viz.plots, "
            "lensarith.viz.report, lensarith.paper, lensarith.cli; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'circuitsvis', 'plotly'})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert json.loads(out.splitlines()[-1]) == []


def test_display_tokens_put_spaces_back_for_word_tokenizers(model):
    toks = circuits.display_tokens(model, model.to_tokens("Q: What is")[0])
    assert toks[1:] == [" Q", " :", " What", " is"]


def test_init_notebook_sends_the_bundle_once(monkeypatch, no_network):
    monkeypatch.setattr(circuits, "_NOTEBOOK_BUNDLE_SENT", False)  # restored after the test
    first = circuits.init_notebook()
    assert len(repr(first)) < 200 and "var CircuitsVis=" in first._repr_html_()
    later = circuits.colored_tokens(["a", "b"], [1.0, 2.0])._repr_html_()
    assert "var CircuitsVis=" not in later and "setTimeout" in later  # waits for the notebook's bundle


def test_an_inlined_png_that_spells_a_cdn_name_is_not_an_external_url():
    import base64

    page = Report("x")
    payload = base64.b64decode("AAAAunpkgAAA//cdnAAA")  # base64 text that spells both markers
    page.add_figure(payload, caption="fig")
    assert "unpkg" in page.html() and "<img" in page.html()
    page.add_html("<script src='https://unpkg.com/x.js'></script>")
    with pytest.raises(la.LensarithError, match="external resources"):
        page.html()
