"""o-vectors, function vectors and task vectors on one bench, on tiny random models.

Identities: a zero-scale vector is a no-op; each kind put back with ``replace`` at the site it
was taken from, in its source prompt, reproduces the source run; head effects equal patching
one head at a time; save/load round trips; another architecture is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import lensarith as la
from lensarith import cli
from lensarith.core import readout
from lensarith.tasks import TASKS, WORD_PATTERN, default_vocab, load_pairs
from lensarith.tasks._datasets import BENCH_TASKS, EXTRA_TASKS, PAPER_TASKS
from lensarith.vectors import (Application, BenchConfig, BenchResult, FunctionVector, HeadEffects, TaskVector,
                               apply_vector, apply_vectors, bench_figure, bench_table, bootstrap_ci, compare_vectors,
                               extract_function_vector, extract_o_vector, extract_task_vector, few_shot_prompts,
                               function_vector, head_effects, same_norm_random, single_token_counts, sweep_figure,
                               sweep_layers, transplant_contexts, vector_bench, vector_interventions)

ROOT = Path(__file__).resolve().parent.parent


def bench_vocab() -> list[str]:
    words = dict.fromkeys(default_vocab())
    for task in BENCH_TASKS:
        for row in load_pairs(task):
            for text in (row["argument"], row["answer"]):
                for tok in re.findall(WORD_PATTERN, text):
                    words.setdefault(tok, None)
    return list(words)


@pytest.fixture(scope="module")
def model():
    return la.tiny_model(n_layers=3, d_model=32, n_heads=4, vocab=bench_vocab(), seed=0)


@pytest.fixture(scope="module")
def other():
    return la.tiny_model(n_layers=2, d_model=32, n_heads=4, vocab=bench_vocab(), seed=1)


@pytest.fixture(scope="module")
def prompts(model):
    """Few-shot capitals prompts whose argument and answer are single tokens."""
    rows = [r for r in load_pairs("capitals") if " " not in r["argument"] and " " not in r["answer"]][:12]
    return few_shot_prompts("capitals", n_shots=2, queries=rows[:6], demos=rows, seed=0)


def logits(model, examples, ivs=()):
    return la.run_with_interventions(model, la.tokenize(model, examples), list(ivs))


# --------------------------------------------------------------------------- task data


def test_bench_tasks_are_registered_with_cards_and_leave_the_paper_tasks_alone():
    assert set(PAPER_TASKS) == {"capitals", "us_capitals", "uppercase", "uppercase_words", "past", "past_regular",
                                "past_irregular"}
    assert set(TASKS) == set(PAPER_TASKS) | set(BENCH_TASKS) | set(EXTRA_TASKS) and len(BENCH_TASKS) >= 10
    for task, spec in BENCH_TASKS.items():
        rows = load_pairs(task)
        assert len(rows) >= 50, task
        assert all(r["argument"] != r["answer"] and r["argument"] and r["answer"] for r in rows), task
        for f in spec.files:
            assert (ROOT / "data" / "tasks" / f.replace(".jsonl", ".md")).is_file(), f
    assert len({f for s in BENCH_TASKS.values() for f in s.files} - {f for t in PAPER_TASKS for f in TASKS[t].files}) >= 10
    # the paper's prompts and the default vocabulary (tiny models, the organism) are unchanged
    assert la.build_prompts("capitals")[0].prompt.startswith("Q: What is the capital of France?\nA: Paris\nQ:")
    assert "chien" not in default_vocab() and "Poland" in default_vocab()
    assert "Ontario" not in default_vocab() and set(EXTRA_TASKS) == {"region_capitals"}
    zero = la.build_prompts("antonyms", format="zero_shot", n=1)[0]
    assert zero.prompt.endswith(" :") and zero.answer.startswith(" ")


def test_few_shot_prompts_and_shuffled_labels():
    rows = load_pairs("singular_plural")[:20]
    clean = few_shot_prompts("singular_plural", n_shots=4, queries=rows[:5], demos=rows, seed=3)
    shuf = few_shot_prompts("singular_plural", n_shots=4, queries=rows[:5], demos=rows, seed=3, shuffle_labels=True)
    truth = {r["argument"]: r["answer"] for r in rows}
    for c, s, row in zip(clean, shuf, rows[:5]):
        assert c.answer == " " + row["answer"] and c.prompt.endswith(f"\n{row['argument']} :")
        assert row["argument"] not in c.meta["demos"] and c.meta["demos"] == s.meta["demos"]
        pairs = [line.split(" : ") for line in s.prompt.splitlines()[:-1]]
        assert sorted(b for _, b in pairs) == sorted(truth[a] for a, _ in pairs)  # a permutation of the labels
        assert any(truth[a] != b for a, b in pairs)
        assert all(truth[a] == b for a, b in (line.split(" : ") for line in c.prompt.splitlines()[:-1]))
    past = few_shot_prompts("past", n_shots=2, n=1, seed=0)[0]
    assert past.prompt.count("Yesterday I") == 3 and past.prompt.endswith("Yesterday I")
    with pytest.raises(la.LensarithError, match="n_shots=30 needs at least 30"):
        few_shot_prompts("singular_plural", n_shots=30, queries=rows[:1], demos=rows)
    with pytest.raises(la.LensarithError, match="task='planets' is unknown"):
        few_shot_prompts("planets")


def test_single_token_counts(model):
    counts = single_token_counts(model, ["capitals", "antonyms"])
    assert counts["antonyms"]["rows"] == len(load_pairs("antonyms")) == counts["antonyms"]["single_token"]
    assert 0 < counts["capitals"]["single_token"] < counts["capitals"]["rows"]


# --------------------------------------------------------------------------- extraction


def test_head_effects_equal_patching_one_head_at_a_time(model, prompts):
    clean, shuffled = prompts[:4], few_shot_prompts("capitals", n_shots=2, queries=[
        {"argument": e.argument.strip(), "answer": e.answer.strip()} for e in prompts[2:6]],
        demos=[{"argument": e.argument.strip(), "answer": e.answer.strip()} for e in prompts], shuffle_labels=True)
    eff = head_effects(model, clean, shuffled, batch_size=3, heads_per_forward=5)
    assert isinstance(eff, HeadEffects) and eff.indirect_effect.shape == (3, 4)
    batch = la.tokenize(model, clean)
    z = la.collect(model, batch, [la.Site("z", layer, "last") for layer in range(3)])
    base = logits(model, shuffled).softmax(-1)
    sb = la.tokenize(model, shuffled)
    ids = sb.answer_ids
    for layer, head in [(0, 1), (2, 3)]:
        mean = z[la.Site("z", layer, "last")][:, head].mean(0)
        patched = logits(model, shuffled, [la.Replace(la.Site("z", layer, "last", head=head), mean)]).softmax(-1)
        want = patched[torch.arange(len(ids)), ids] - base[torch.arange(len(ids)), ids]
        torch.testing.assert_close(eff.tensors["effect"][layer, head], want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(eff.tensors["mean_z"][layer, head], mean)
    (top_head, value), *_ = eff.top(1)
    assert value == pytest.approx(float(eff.indirect_effect.max()))
    assert eff.table(2)[0]["head"] == f"L{top_head[0]}H{top_head[1]}"


def test_function_vector_is_the_sum_of_head_means_through_W_O(model, prompts):
    fv = extract_function_vector(model, prompts[:4], prompts[2:6], n_heads=3)
    assert isinstance(fv, FunctionVector) and fv.vector.shape == (32,) and len(fv.heads) == 3
    want = sum(fv.head_means[i] @ model.blocks[layer].attn.W_O[h].detach() for i, (layer, h) in enumerate(fv.heads))
    torch.testing.assert_close(fv.vector, want)
    assert fv.meta["config_hash"] == la.models.config_hash(model) and fv.meta["sources"] == [e.prompt for e in prompts[:4]]
    eff = head_effects(model, "capitals", n_prompts=3, n_shots=2)
    assert len(eff.meta["sources"]) == 3 and eff.meta["task"] == "capitals"
    with pytest.raises(la.LensarithError, match="n_heads=99 is more than the model's 12 heads"):
        function_vector(model, eff, n_heads=99)


def test_task_vector_is_the_last_residual(model, prompts):
    tv = extract_task_vector(model, prompts[:3], 1, reduce="none")
    assert isinstance(tv, TaskVector) and tv.vector.shape == (3, 32) and tv.site == "resid_pre"
    got = la.collect(model, la.tokenize(model, prompts[:3]), [la.Site("resid_pre", 1, "last")])
    torch.testing.assert_close(tv.vector, got[la.Site("resid_pre", 1, "last")])
    mean = tv.mean()
    assert isinstance(mean, TaskVector) and mean.vector.shape == (32,) and isinstance(tv.select(1), TaskVector)
    by_task = extract_task_vector(model, "capitals", -1, site="resid_post", n_prompts=2, n_shots=2)
    assert by_task.layer == 2 and by_task.meta["hook"] == "blocks.2.hook_resid_post" and by_task.meta["n_sources"] == 2


# --------------------------------------------------------------------------- identities


def test_each_kind_put_back_where_it_was_taken_reproduces_the_source_run(model, prompts):
    src = prompts[:1]
    plain = logits(model, src)
    o = extract_o_vector(model, src, layer=1)
    tv = extract_task_vector(model, src, 2, site="resid_mid")
    fv = extract_function_vector(model, src, src, n_heads=5)
    for vec, site in ((o, "mlp_out"), (tv, "resid_mid"), (fv, "z")):
        ivs = vector_interventions(model, vec, site=site, mode="replace")
        assert ivs, site
        torch.testing.assert_close(logits(model, src, ivs), plain, atol=1e-5, rtol=1e-5)
    assert vector_interventions(model, o, mode="replace")[0].site == la.Site("mlp_out", 1, "last")  # its own site
    # and elsewhere it changes the run
    assert not torch.allclose(logits(model, src, vector_interventions(model, o, site="resid_pre", layers=0,
                                                                     mode="replace")), plain)


@pytest.mark.parametrize("site", ["resid_pre", "resid_post", "mlp_out", "attn_out", "z"])
def test_a_zero_scale_vector_is_a_no_op(model, prompts, site):
    fv = extract_function_vector(model, prompts[:3], prompts[3:6], n_heads=4)
    ctx = transplant_contexts("capitals", n=6, model=model)
    layers = None if site == "z" else [0, 2]
    res = apply_vector(model, fv, ctx, site=site, layers=layers, scale=0.0)
    assert torch.equal(res.tensors["rank_answer"][res.runs.index("vector")], res.tensors["rank_answer"][0])
    assert torch.equal(res.tensors["rank_answer"][res.runs.index("vector:random")], res.tensors["rank_answer"][0])
    ivs = vector_interventions(model, fv, site=site, layers=layers, scale=0.0)
    torch.testing.assert_close(logits(model, ctx, ivs), logits(model, ctx), atol=0, rtol=0)
    moved = apply_vector(model, fv, ctx, site=site, layers=layers, scale=3.0)
    assert not torch.equal(moved.tensors["rank_answer"][1], moved.tensors["rank_answer"][0])


def test_apply_vectors_equals_one_run_per_application(model, prompts):
    o = extract_o_vector(model, prompts[:3], layer=1, reduce="mean")
    tv = extract_task_vector(model, prompts[:3], 1)
    ctx = transplant_contexts("capitals", n=7, model=model)
    apps = {"o": Application(o, scale=2.0), "tv": Application(tv, mode="replace"),
            "o_all": Application(o, site="resid_post", layers=range(0, 2), positions="all", scale=-1.0)}
    res = apply_vectors(model, apps, ctx, batch_size=3, readout_layers="all")
    assert res.runs == ["control", "o", "tv", "o_all", "o:random", "tv:random", "o_all:random"]
    assert res.tensors["rank_answer"].shape == (7, 3, 7)
    batch = la.tokenize(model, ctx)
    for name, app in apps.items():
        ivs = vector_interventions(model, app.vector, site=app.site, layers=app.layers, mode=app.mode, scale=app.scale,
                                   positions=app.positions)
        want = readout.rank(logits(model, ctx, ivs), batch.answer_ids)
        assert torch.equal(res.rank(name), want), name
    assert torch.equal(res.rank("control"), readout.rank(logits(model, ctx), batch.answer_ids))
    s = res.summary()
    assert s["o"]["mrr"] == pytest.approx(float((1 / (res.rank("o").float() + 1)).mean()))
    assert 0 <= s["tv"]["top1"] <= s["tv"]["top5"] <= 1
    row = res.table()[1]
    assert row["run"] == "o" and row["mrr_lo"] <= row["mrr"] <= row["mrr_hi"]


def test_same_norm_random_and_bootstrap():
    o = la.OVector.from_tensor(torch.arange(1.0, 9.0))
    r1, r2 = same_norm_random(o, seed=1), same_norm_random(o, seed=1)
    assert torch.equal(r1.vector, r2.vector) and not torch.equal(r1.vector, same_norm_random(o, seed=2).vector)
    assert float(r1.vector.norm()) == pytest.approx(float(o.vector.norm()), rel=1e-5)
    assert abs(float(torch.nn.functional.cosine_similarity(r1.vector, o.vector, dim=0))) < 0.99
    m, lo, hi = bootstrap_ci(torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 1.0]), n_boot=500)
    assert lo <= m <= hi and m == pytest.approx(4 / 6) and hi - lo > 0.1
    assert bootstrap_ci(torch.ones(10)) == (1.0, 1.0, 1.0)


def test_sweep_layers(model, prompts):
    ctx = transplant_contexts("capitals", n=5, model=model)
    per_layer = {layer: extract_o_vector(model, prompts[:2], layer=layer, reduce="mean") for layer in range(3)}
    sw = sweep_layers(model, per_layer, ctx, scales=(1.0, 4.0))
    assert sw.tensors["mrr"].shape == (2, 2, 3) and sw.tensors["rank"].shape == (2, 2, 3, 5)
    layer, scale = sw.best()
    assert layer in range(3) and scale in (1.0, 4.0)
    li = sw.layers.index(layer)
    assert float(sw.tensors["mrr"][0, sw.scales.index(scale), li]) == pytest.approx(float(sw.tensors["mrr"][0].max()))
    # the sweep's run at (layer, scale) equals applying that vector there
    one = apply_vector(model, per_layer[layer], ctx, layers=[layer], scale=scale, site="mlp_out")
    assert torch.equal(sw.tensors["rank"][0, sw.scales.index(scale), li], one.rank("vector"))
    assert len(sw.table()) == 6 and len(sw.curve()) == 3


# --------------------------------------------------------------------------- save / load / architecture


def test_save_load_round_trip_and_other_architectures_are_refused(model, other, prompts, tmp_path):
    fv = extract_function_vector(model, prompts[:3], prompts[3:6], n_heads=3)
    tv = extract_task_vector(model, prompts[:3], 1)
    eff = head_effects(model, prompts[:3], prompts[3:6])
    for name, obj in (("fv", fv), ("tv", tv), ("eff", eff)):
        obj.save(tmp_path / name)
    fv2 = FunctionVector.load(tmp_path / "fv", model=model)
    assert isinstance(fv2, FunctionVector) and fv2.heads == fv.heads and fv2.meta == json.loads(json.dumps(fv.meta))
    for key in fv.tensors:
        assert torch.equal(fv2.tensors[key], fv.tensors[key])
    tv2 = TaskVector.load(tmp_path / "tv", model=model)
    assert torch.equal(tv2.vector, tv.vector) and tv2.layer == 1 and tv2.site == "resid_pre"
    assert isinstance(la.OVector.load(tmp_path / "fv"), FunctionVector)  # an o-vector loader reads every kind
    assert isinstance(la.Result.load(tmp_path / "eff"), HeadEffects)
    with pytest.raises(la.LensarithError, match="holds a 'task_vector' result, not a 'function_vector'"):
        FunctionVector.load(tmp_path / "tv")
    for loader, path in ((FunctionVector.load, "fv"), (TaskVector.load, "tv")):
        with pytest.raises(la.LensarithError, match="layers"):
            loader(tmp_path / path, model=other)
    same_shape = la.tiny_model(n_layers=3, d_model=32, n_heads=8, vocab=bench_vocab(), seed=0)
    with pytest.raises(la.LensarithError, match="another architecture"):
        FunctionVector.load(tmp_path / "fv", model=same_shape)
    with pytest.raises(la.LensarithError, match="another architecture"):
        apply_vector(same_shape, tv, transplant_contexts("capitals", n=2, model=model), mode="replace")
    with pytest.raises(la.LensarithError, match="another architecture"):
        function_vector(same_shape, eff)


# --------------------------------------------------------------------------- errors


def test_operator_errors_name_the_argument(model, prompts):
    o = extract_o_vector(model, prompts[:1], layer=1)
    fv = extract_function_vector(model, prompts[:2], prompts[2:4], n_heads=2)
    ctx = transplant_contexts("capitals", n=2, model=model)
    cases = [
        (lambda: vector_interventions(model, o, site="z"), r"site='z' puts a function vector's head means"),
        (lambda: vector_interventions(model, fv, site="z", layers=[1]), r"layers=\[1\]: with site='z'"),
        (lambda: vector_interventions(model, fv), r"layers is needed: this FunctionVector has no source layer"),
        (lambda: vector_interventions(model, o, mode="subtract"), r"mode must be one of 'add', 'replace'"),
        (lambda: vector_interventions(model, o, site="resid"), r"site must be one of"),
        (lambda: vector_interventions(model, o, scale=float("nan")), r"scale must be a finite number"),
        (lambda: vector_interventions(model, o, layers=[5]), r"layer 5 is out of range"),
        (lambda: apply_vectors(model, {"control": Application(o)}, ctx), r"names must be non-empty strings other than"),
        (lambda: apply_vectors(model, {}, ctx), r"applications must be a non-empty mapping"),
        (lambda: sweep_layers(model, fv, ctx, site="z"), r"site='z' has no layer to sweep"),
        (lambda: sweep_layers(model, fv, ctx, scales=2.0), r"scales must be a non-empty list"),
        (lambda: apply_vector(model, "o", ctx), r"must be an OVector .* or a tensor"),
        (lambda: BenchConfig(kinds=("o", "sae")), r"BenchConfig kinds must be one of"),
        (lambda: BenchConfig(n_shots=8, n_sources=8), r"needs n_sources > n_shots"),
        (lambda: BenchConfig(o_scales=()), r"o_scales must be a non-empty tuple"),
        (lambda: vector_bench(model, "planets"), r"task='planets' is unknown"),
        (lambda: vector_bench(model, "capitals", {"n": 3}), r"config must be a lensarith.vectors.BenchConfig"),
        (lambda: vector_bench(model, "us_capitals", BenchConfig(n_sources=40, n_dev=20)),
         r"rows have a single-token argument and answer for this model, fewer than n_sources \+ n_dev \+ 1 = 61"),
        (lambda: head_effects(model, prompts[:2]), r"shuffled is needed"),
    ]
    for fn, pattern in cases:
        with pytest.raises(la.LensarithError, match=pattern):
            fn()


# --------------------------------------------------------------------------- the bench


def test_the_bench_runs_end_to_end(model, tmp_path):
    cfg = BenchConfig.small_run(n=5, n_dev=4, n_sources=5, n_shots=2, n_heads=3, n_boot=100)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    results = compare_vectors(model, ["capitals", "antonyms"], cfg)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is left as it was
    assert not any(hp._forward_hooks for hp in model.hook_dict.values())
    res = results["antonyms"]
    assert isinstance(res, BenchResult) and res.kinds == ["o", "fv", "tv"] and res.contexts == ["random", "zero_shot"]
    rows = bench_table(results)
    assert len(rows) == 2 * 2 * 3
    for row in rows:
        assert row["layer"] in range(3) and row["n"] == 5
        for name in ("mrr", "top1"):
            for part in ("vector", "random", "control"):
                assert row[f"{name}_{part}_lo"] <= row[f"{name}_{part}"] <= row[f"{name}_{part}_hi"]
    # the scores are the applications at the chosen points, on the test contexts
    layer, scale = res.best("zero_shot", "fv")
    assert res.tensors["rank_zero_shot"].shape == (7, 5) and res.meta["runs"][1:4] == ["o", "fv", "tv"]
    splits = res.meta["splits"]
    assert not set(splits["source"]) & set(splits["test"]) and not set(splits["dev"]) & set(splits["test"])
    cos = res.tensors["cosine"]
    torch.testing.assert_close(cos.diagonal(dim1=1, dim2=2), torch.ones(2, 3, dtype=cos.dtype))
    assert len(res.cosines()) == 6 and res.tensors["cosine_by_layer"].shape == (3, 3)
    assert res.tensors["indirect_effect"].shape == (3, 4) and res.meta["fv_heads"]
    res.save(tmp_path / "bench")
    back = la.Result.load(tmp_path / "bench")
    assert isinstance(back, BenchResult) and back.table() == res.table()
    fig = bench_figure(results, metric="top1")
    assert len(fig.axes) == 2
    assert len(sweep_figure(res).axes) == 2
    from lensarith.viz import heatmap

    assert heatmap(res, tensor="indirect_effect") is not None
    again = la.run_recipe("vector_bench", model, "antonyms", config=cfg)
    assert again.table() == res.table()  # seeded


def test_cli_vectors(tmp_path, capsys):
    def run(argv):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:
            rc = exc.code
        return (rc, *capsys.readouterr())

    rc, out, err = run(["vectors", "--model", "tiny", "--task", "capitals", "--small", "--n", "4", "--n-dev", "3",
                        "--n-sources", "4", "--shots", "2", "--kinds", "o,fv", "--contexts", "zero_shot", "--quiet",
                        "--out", str(tmp_path)])
    assert rc == 0, err
    run_dir = tmp_path / "vectors-capitals"
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["heads-capitals.png", "results", "vectors-capitals.html", "vectors-capitals.json",
                     "vectors-capitals.png"]
    doc = json.loads((run_dir / "vectors-capitals.json").read_text())
    assert {r["kind"] for r in doc["table"]} == {"o", "fv"} and doc["single_token"]["capitals"]["rows"] == 248
    assert isinstance(la.Result.load(run_dir / "results" / "capitals"), BenchResult)
    assert "capitals" in out and "MRR vector" in out
    for argv, needle in ((["vectors", "--task", "capitals,nope"], "unknown task 'nope'"),
                         (["vectors", "--kinds", "o,x"], "--kinds"),
                         (["vectors", "--model", "tiny", "--task", "country_currency", "--small", "--out", str(tmp_path)],
                          "single-token argument and answer")):
        rc, _, err = run(argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    rc, out, err = run(["vectors", "--model", "tiny", "--task", "country_currency,capitals", "--small", "--n", "3", "--n-dev",
                        "3", "--n-sources", "3", "--shots", "2", "--kinds", "o", "--contexts", "random",
                        "--skip-unusable", "--quiet", "--out", str(tmp_path)])
    assert rc == 0, err
    assert "country_currency: skipped" in out
    assert json.loads((tmp_path / "vectors-bench" / "vectors-bench.json").read_text())["skipped"] == ["country_currency"]
