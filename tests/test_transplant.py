"""o-vectors: extraction, transplantation, layer search and explanation, on tiny random models."""

from __future__ import annotations

import importlib

import pytest
import torch

import lensarith as la
from lensarith.vectors import (
    OVector,
    SearchConfig,
    TransplantConfig,
    TransplantResult,
    decode_o_vector,
    extract_o_vector,
    find_layers,
    o_vector_analogy,
    o_vector_consistency,
    transplant,
    transplant_contexts,
    transplant_experiment,
    transplant_interventions,
)

# the readout every recipe ranks through
tp = importlib.import_module("lensarith.core.readout")


@pytest.fixture(scope="module")
def model():
    return la.tiny_model(n_layers=3, d_model=32, seed=0)


@pytest.fixture(scope="module")
def capitals(model):
    """Twelve capitals prompts whose argument and answer are single tokens."""
    return list(la.tokenize(model, la.build_prompts("capitals", n=20), drop_multi_token=True).examples[:12])


def _no_hooks(model) -> bool:
    return all(not hp._forward_hooks and not hp._backward_hooks for hp in model.hook_dict.values())


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model, before) -> bool:
    after = model.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _plain_logits(model, examples):
    batch = la.tokenize(model, examples)
    return la.run_with_interventions(model, batch, [])


# --------------------------------------------------------------------------- extraction


def test_extract_matches_the_cache_and_records_provenance(model, capitals):
    src = capitals[:3]
    o = extract_o_vector(model, src, layer=1)
    assert o.vector.shape == (3, 32)
    for i, ex in enumerate(src):
        _, cache = model.run_with_cache(ex.prompt)
        torch.testing.assert_close(o.vector[i], cache["blocks.1.hook_mlp_out"][0, -1])
    mean = extract_o_vector(model, src, layer=-2, position=-1, reduce="mean")
    torch.testing.assert_close(mean.vector, o.vector.mean(0))
    meta = o.meta
    assert meta["layer"] == 1 and meta["hook"] == "blocks.1.hook_mlp_out" and meta["task"] == "capitals"
    assert meta["config_hash"] == la.models.config_hash(model) and meta["sources"] == [e.prompt for e in src]
    assert meta["norm"] == pytest.approx(o.vector.norm(dim=-1).tolist())
    assert meta["dtype"] == "float32"


def test_save_load_roundtrip_and_model_checks(model, capitals, tmp_path):
    o = extract_o_vector(model, capitals[:2], layer=2)
    path = o.save(tmp_path / "o")
    back = OVector.load(path, model=model)
    assert torch.equal(back.vector, o.vector) and back.meta == o.meta and back.layer == 2
    assert isinstance(la.Result.load(path), OVector)
    o.mean().save(path)  # overwrite in place
    assert OVector.load(path).vector.shape == (32,)
    narrow = la.tiny_model(n_layers=3, d_model=16)
    with pytest.raises(la.LensarithError, match=r"d_model=32 but the model has d_model=16"):
        OVector.load(path, model=narrow)
    shallow = la.tiny_model(n_layers=2, d_model=32)
    with pytest.raises(la.LensarithError, match=r"extracted from a model with 3 layers .* this model has 2"):
        OVector.load(path, model=shallow)
    with pytest.raises(la.LensarithError, match=r"extracted from a model with 3 layers"):
        transplant(shallow, OVector.load(path), transplant_contexts("capitals", n=2))


# --------------------------------------------------------------------------- transplant behaviour


def test_unembedding_direction_promotes_the_intended_token(model, capitals):
    target = int(model.to_tokens(" Warsaw", prepend_bos=False)[0, 0])
    o = OVector.from_tensor(model.W_U[:, target].detach(), model=model, layer=2, label="warsaw")
    contexts = [la.Example(e.prompt, " Warsaw", e.argument) for e in capitals[:6]]
    out = transplant(model, o, contexts, mode="add", scale=100.0, positions="last", drop_multi_token=True)
    assert out.accuracy("answer", "control") < 1.0
    assert out.accuracy("answer", "transplant") == 1.0
    assert out.no_effect_rate() < 1.0
    assert out.meta["layers"] == [2] and out.meta["mode"] == "add"
    assert decode_o_vector(model, o, k=3).promoted[0][0] == "Warsaw"


def test_replace_with_the_sources_own_output_reproduces_the_source_run(model, capitals):
    src = capitals[1:2]
    plain = _plain_logits(model, src)
    for layer in range(model.cfg.n_layers):
        o = extract_o_vector(model, src, layer=layer)
        ivs = transplant_interventions(model, o, layers=[layer], mode="replace", positions="last")
        got = la.run_with_interventions(model, la.tokenize(model, src), ivs)
        torch.testing.assert_close(got, plain, rtol=0, atol=1e-5)
        out = transplant(model, o, src, layers=[layer], positions="last")
        assert torch.equal(out.rank("answer", "control"), out.rank("answer", "transplant"))


def test_replace_range_changes_the_run(model, capitals):
    o = extract_o_vector(model, capitals[1:2], layer=1)
    out = transplant(model, o, capitals[2:6], layers=range(1, 3))
    assert out.meta["layers"] == [1, 2]
    assert not torch.equal(out.rank("answer", "control")[1:], out.rank("answer", "transplant")[1:])
    # layers below the first replaced one are untouched
    assert torch.equal(out.rank("answer", "control")[0], out.rank("answer", "transplant")[0])


def test_add_then_subtract_is_a_no_op(model, capitals):
    o = extract_o_vector(model, capitals[:1], layer=1)
    batch = la.tokenize(model, capitals[2:6])
    plain = la.run_with_interventions(model, batch, [])
    ivs = (transplant_interventions(model, o, mode="add", scale=3.0)
           + transplant_interventions(model, o, mode="subtract", scale=3.0))
    torch.testing.assert_close(la.run_with_interventions(model, batch, ivs), plain, rtol=0, atol=1e-4)
    added = la.run_with_interventions(model, batch, ivs[:1])
    assert not torch.allclose(added, plain, atol=1e-3)


def test_subtracting_o_on_its_source_removes_that_mlp_output(model, capitals):
    src = capitals[3:4]
    o = extract_o_vector(model, src, layer=2)
    batch = la.tokenize(model, src)
    sub = la.run_with_interventions(model, batch, transplant_interventions(model, o, mode="subtract", positions="last"))
    zero = la.run_with_interventions(model, batch, [la.Ablate(la.Site("mlp_out", 2, "last"))])
    torch.testing.assert_close(sub, zero, rtol=0, atol=1e-4)


def test_batched_equals_one_by_one_and_control_equals_logit_lens(model, capitals):
    o = extract_o_vector(model, capitals[:1], layer=1).mean()
    contexts = capitals[1:8] + transplant_contexts("capitals", n=3, seed=1)
    assert len({len(la.tokenize(model, [c]).tokens[0]) for c in contexts}) > 1  # different lengths
    batched = transplant(model, o, contexts, batch_size=4, mode="add", scale=2.0, drop_multi_token=True)
    single = transplant(model, o, contexts, batch_size=1, mode="add", scale=2.0, drop_multi_token=True)
    for key in batched.tensors:
        assert torch.equal(batched[key], single[key]), key
    lens = la.logit_lens(model, la.tokenize(model, contexts, drop_multi_token=True))
    assert torch.equal(batched.rank("answer", "control"), lens.rank("answer"))
    assert torch.equal(batched.rank("argument", "control"), lens.rank("argument"))
    torch.testing.assert_close(batched.mrr("answer", "control"), lens.reciprocal_rank("answer").mean(-1))


def test_shared_readout_of_unchanged_layers_equals_reading_every_group(model, capitals):
    """Groups whose interventions start at a later layer share the unmodified rows' readout
    below it; the ranks equal reading every group at every layer."""
    from lensarith.vectors._scoring import first_changed_layer, rank_readout

    o = extract_o_vector(model, capitals[:1], layer=1).mean()
    batch = la.tokenize(model, capitals[1:9], drop_multi_token=True)
    groups = [la.core.Group(()),
              la.core.Group(tuple(transplant_interventions(model, o, layers=[1, 2], mode="replace"))),
              la.core.Group(tuple(transplant_interventions(model, o, layers=[2], mode="add", scale=3.0))),
              la.core.Group((la.Ablate(la.Site("mlp_out", 2)),))]
    firsts = [first_changed_layer(model, g) for g in groups]
    assert firsts == [3, 1, 2, 2]
    layers = range(model.cfg.n_layers)
    sites, shared = rank_readout(model, layers, firsts)
    _, every = rank_readout(model, layers)
    counted = []
    real_logits = tp.logits
    def counting(m, x):
        counted.append(x.shape[0])
        return real_logits(m, x)
    out = la.core.run(model, batch, capture=sites, groups=groups)
    tp.logits = counting
    try:
        a = shared(out, batch)
    finally:
        tp.logits = real_logits
    b = every(out, batch)
    assert counted == [1, 2, 4]  # groups read per layer: one shared row below each group's first change
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # an intervention with no block (the embedding) changes every layer: nothing is shared
    assert first_changed_layer(model, [la.Add(la.Site("embed"), torch.ones(model.cfg.d_model))]) == 0


def test_result_summary_per_example_and_roundtrip(model, capitals, tmp_path):
    o = extract_o_vector(model, capitals[:1], layer=1)
    out = transplant(model, o, capitals[1:6])
    s = out.summary()
    assert s["n"] == 5
    ranks_c, ranks_t = out.rank("answer", "control")[-1], out.rank("answer", "transplant")[-1]
    assert s["no_effect_rate"] == pytest.approx(float((ranks_t >= ranks_c).float().mean()))
    assert s["answer_top1_transplant"] == pytest.approx(float((ranks_t == 0).float().mean()))
    rows = out.per_example()
    assert rows[0]["prompt"] == capitals[1].prompt and rows[0]["answer_rank_control"] == int(ranks_c[0])
    assert out.mrr("argument", "transplant").shape == (model.cfg.n_layers,)
    back = la.Result.load(out.save(tmp_path / "t"))
    assert isinstance(back, TransplantResult) and back.summary() == s


def test_model_is_unchanged_also_after_an_exception(model, capitals, monkeypatch):
    before = _state(model)
    o = extract_o_vector(model, capitals[:1], layer=1)
    transplant(model, o, capitals[1:4])
    find_layers(model, capitals, config=SearchConfig(n_contexts=4, n_prompts=6, screen=2))
    assert _same_state(model, before) and _no_hooks(model)
    assert all(p.grad is None for p in model.parameters())

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(tp, "rank", boom)
    with pytest.raises(RuntimeError, match="boom"):
        transplant(model, o, capitals[1:4])
    assert _same_state(model, before) and _no_hooks(model)


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors(model, capitals):
    o = extract_o_vector(model, capitals[:1], layer=1)
    ctx = capitals[1:3]
    with pytest.raises(la.LensarithError, match=r"d_model=16 but the model has d_model=32"):
        transplant(model, torch.randn(16), ctx, layers=[1])
    with pytest.raises(la.LensarithError, match=r"layers=\[1, 7\]: layer 7 is out of range for a model with 3 layers"):
        transplant(model, o, ctx, layers=[1, 7])
    with pytest.raises(la.LensarithError, match=r"layers is empty"):
        transplant(model, o, ctx, layers=[])
    with pytest.raises(la.LensarithError, match=r"contexts is empty"):
        transplant(model, o, [])
    with pytest.raises(la.LensarithError, match=r"got 1 plain strings"):
        transplant(model, o, ["table mug free China"])
    with pytest.raises(la.LensarithError, match=r"mode must be one of 'replace', 'add', 'subtract', got 'swap'"):
        transplant(model, o, ctx, mode="swap")
    with pytest.raises(la.LensarithError, match=r"positions must be one of"):
        transplant(model, o, ctx, positions="first")
    with pytest.raises(la.LensarithError, match=r"o holds 2 source vectors"):
        transplant(model, extract_o_vector(model, capitals[:2], layer=1), ctx)
    with pytest.raises(la.LensarithError, match=r"layers is needed: o has no source layer"):
        transplant(model, torch.randn(32), ctx)
    multi = [la.Example("table mug Akrotiri and Dhekelia table mug", " Episkopi Cantonment", " Akrotiri and Dhekelia"),
             la.Example("table mug Poland table mug", " Warsaw", " Poland"),
             la.Example("table mug Kuwait table mug", " Kuwait City", " Kuwait")]
    with pytest.raises(la.LensarithError,
                       match=r"1 of 3 examples have a multi-token argument or answer whose first token does not identify "
                             r"the answer \(argument_first_token\): ' Kuwait City' \(answer, 2 tokens\);"
                             r".*drop_multi_token=True"):
        transplant(model, o, multi)
    # the first-token rule scores Episkopi Cantonment by " Episkopi" (distinct first words) and drops Kuwait City
    out = transplant(model, o, multi, drop_multi_token=True)
    assert out.summary()["n"] == 2 and out.meta["report"]["first_token"] == [0] and out.meta["report"]["dropped"] == [2]
    strict = la.tokenize(model, multi, drop_multi_token=True, scoring="single_token")
    assert len(strict) == 1 and strict.report["dropped"] == [0, 2]
    with pytest.raises(la.LensarithError, match=r"reduce must be 'none'"):
        extract_o_vector(model, capitals[:1], layer=1, reduce="sum")
    with pytest.raises(la.LensarithError, match=r"layer=5 is out of range"):
        extract_o_vector(model, capitals[:1], layer=5)
    with pytest.raises(la.LensarithError, match=r"SearchConfig method must be one of 'sweep', 'dla'"):
        SearchConfig(method="guess")
    with pytest.raises(la.LensarithError, match=r"TransplantConfig n_contexts must be None or a positive int"):
        TransplantConfig(n_contexts=0)


# --------------------------------------------------------------------------- layer search


def test_layer_search_table_matches_direct_transplants(model, capitals):
    contexts = transplant_contexts(capitals[1:], seed=2)
    cfg = SearchConfig(n_prompts=12, scale=2.0, after_argument=False)
    found = find_layers(model, capitals, source=0, contexts=contexts, config=cfg, batch_size=3)
    n = model.cfg.n_layers
    assert found.layers == list(range(found.start_layer, n)) and found.start_layer <= found.application_layer
    table = found.table()
    assert [r["layer"] for r in table] == list(range(n))
    src = la.tokenize(model, capitals, drop_multi_token=True).examples[0]
    for layer in range(n):
        o = extract_o_vector(model, [src], layer=layer)
        out = transplant(model, o, contexts, layers=[layer], mode="add", scale=2.0, drop_multi_token=True)
        gain = out.mrr("answer", "transplant")[-1] - out.mrr("answer", "control")[-1]
        assert table[layer]["apply_gain"] == pytest.approx(float(gain), abs=1e-6)
    best = max(range(n), key=lambda l: table[l]["apply_gain"])
    assert found.application_layer == best
    o = extract_o_vector(model, [src], layer=found.application_layer)
    for start in range(found.application_layer + 1):
        out = transplant(model, o, contexts, layers=range(start, n), scale=2.0, drop_multi_token=True)
        gain = out.mrr("answer", "transplant")[-1] - out.mrr("answer", "control")[-1]
        assert table[start]["start_gain"] == pytest.approx(float(gain), abs=1e-6)


def test_layer_search_only_considers_layers_after_the_argument_peak(capitals):
    deep = la.tiny_model(n_layers=4, d_model=32, seed=2)  # its argument peaks at layer 2
    found = find_layers(deep, capitals, config=SearchConfig(n_prompts=12, n_contexts=4))
    lens = la.logit_lens(deep, la.tokenize(deep, capitals, drop_multi_token=True))
    correct = lens.rank("answer")[-1] == 0
    use = correct if bool(correct.any()) else torch.ones_like(correct)
    arg_mrr = lens.reciprocal_rank("argument")[:, use].mean(-1)
    torch.testing.assert_close(found["argument_mrr"], arg_mrr)
    peak = int(arg_mrr[:-1].argmax())
    assert found.meta["argument_peak"] == peak and found.meta["eligible"] == list(range(peak, 4))
    assert bool(found["apply_gain"][:peak].isnan().all()) and not bool(found["apply_gain"][peak:].isnan().any())
    assert peak == 2 and found.application_layer >= peak


def test_layer_search_by_dla_picks_the_dla_peak(model, capitals):
    found = find_layers(model, capitals, config=SearchConfig(method="dla", n_prompts=12, n_contexts=4))
    eligible = found.meta["eligible"]
    assert found.application_layer == eligible[int(found["dla"][eligible].argmax())]
    assert "apply_gain" not in found.tensors
    dla = la.direct_logit_attribution(model, la.tokenize(model, capitals, drop_multi_token=True), "answer", "argument")
    if found.meta["task_accuracy"] == 0:  # no correct prompt: the DLA is over every prompt
        labels = dla.component_labels
        expected = torch.stack([dla.attributions[labels.index(f"L{l}_mlp")].mean() for l in range(3)])
        torch.testing.assert_close(found["dla"], expected)


def test_gradient_screen_is_a_first_order_estimate(model, capitals):
    scale = 1e-3
    contexts = transplant_contexts(capitals[1:], n=6, seed=3)
    cfg = SearchConfig(n_prompts=12, scale=scale, screen=2, after_argument=False)
    found = find_layers(model, capitals, source=0, contexts=contexts, config=cfg)
    assert int((~found["apply_gain"].isnan()).sum()) == 2
    batch = la.tokenize(model, contexts, drop_multi_token=True)
    src = la.tokenize(model, capitals, drop_multi_token=True).examples[0]
    rows = torch.arange(len(batch))
    base = la.run_with_interventions(model, batch, []).log_softmax(-1)[rows, batch.answer_ids]
    for layer in range(model.cfg.n_layers):
        o = extract_o_vector(model, [src], layer=layer)
        ivs = transplant_interventions(model, o, layers=[layer], mode="add", scale=scale)
        moved = la.run_with_interventions(model, batch, ivs).log_softmax(-1)[rows, batch.answer_ids]
        delta = float((moved - base).mean())
        assert float(found["screen"][layer]) == pytest.approx(delta, rel=0.05, abs=1e-6)


# --------------------------------------------------------------------------- explain


def test_consistency_within_and_across_tasks(model, capitals):
    o = extract_o_vector(model, capitals[:4], layer=1)
    same = OVector.from_tensor(o.vector[0].repeat(3, 1), label="same")
    flipped = OVector.from_tensor(-o.vector[0].repeat(2, 1), label="flipped")
    res = o_vector_consistency({"same": same, "flipped": flipped, "capitals": o})
    assert res.within("same") == pytest.approx(1.0, abs=1e-5)
    assert res.between("same", "flipped") == pytest.approx(-1.0, abs=1e-5)
    assert res["cosine"].shape == (9, 9)
    torch.testing.assert_close(res["cosine"].diagonal(), torch.ones(9))
    assert res["mean_share"][0] == pytest.approx(1.0, abs=1e-5)
    unit = o.vector / o.vector.norm(dim=-1, keepdim=True)
    cos = unit @ unit.T
    expected = (cos.sum() - cos.diagonal().sum()) / 12
    assert res.within("capitals") == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(la.LensarithError, match=r"group='past' is unknown"):
        res.within("past")


def test_analogy_finds_the_task_direction(model):
    batch = la.tokenize(model, la.build_prompts("capitals"), drop_multi_token=True)
    diff = (model.W_U[:, batch.answer_ids].T - model.W_U[:, batch.argument_ids].T).detach()
    o = OVector.from_tensor(diff.mean(0).detach(), model=model)
    res = o_vector_analogy(model, o, "capitals", n_shuffles=5)
    s = res.summary()
    assert s["mean_difference_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert s["cosine_mean"] > 0.05 and res["shuffled"].shape == (5, len(batch))
    # one pair's own difference: its pairing beats the shuffled pairings
    pair = OVector.from_tensor(diff[0].detach(), model=model)
    res = o_vector_analogy(model, pair, batch, n_shuffles=5)
    assert float(res["cosine"][0]) == pytest.approx(1.0, abs=1e-5)
    assert float(res["shuffled"][:, 0].mean()) < 0.9
    assert float(res["logit_diff"][0]) == pytest.approx(float(diff[0] @ diff[0]), rel=1e-4)
    embed = o_vector_analogy(model, o, "capitals", space="embed", n_shuffles=2)
    assert "logit_diff" not in embed.tensors
    with pytest.raises(la.LensarithError, match=r"space must be one of 'unembed', 'embed', got 'both'"):
        o_vector_analogy(model, o, "capitals", space="both")


def test_decode_lists_promoted_and_demoted_tokens(model):
    target = int(model.to_tokens(" Paris", prepend_bos=False)[0, 0])
    u = model.W_U[:, target].detach()
    up = decode_o_vector(model, u, k=5, through_ln=False)
    assert up.promoted[0][0] == "Paris" and up.rank_of(target) == 0
    down = decode_o_vector(model, -u, k=5, through_ln=False)
    assert down.demoted[0][0] == "Paris"
    assert len(down.promoted) == 5 and down.promoted[0][1] >= down.promoted[-1][1]


# --------------------------------------------------------------------------- recipe


def test_transplant_recipe_runs_end_to_end(model):
    assert "transplant" in la.list_recipes()
    out = la.run_recipe("transplant", model, "capitals",
                       config=TransplantConfig(layer=1, n_contexts=6, mode="add", scale=2.0))
    assert isinstance(out, TransplantResult) and out.summary()["n"] == 6
    assert out.meta["application_layer"] == 1 and out.meta["layers"] == [1] and out.meta["source"]
    searched = transplant_experiment(model, "capitals", TransplantConfig(n_contexts=4),
                                     search=SearchConfig(n_prompts=8, n_contexts=4))
    assert searched.meta["search"]["application_layer"] == searched.meta["application_layer"]
    assert searched.meta["layers"] == list(range(searched.meta["search"]["start_layer"], model.cfg.n_layers))


# --------------------------------------------------------------------------- the planted organism (known mechanism)


@pytest.fixture(scope="module")
def planted():
    """The bundled model whose mechanism is known: MLP P adds the relation's o at the last position."""
    import json

    from lensarith._paths import data_dir

    directory = data_dir() / "organism-planted"
    assert (directory / "model.safetensors").is_file(), "data/organism-planted ships with the repository"
    torch.set_num_threads(1)
    meta = json.loads((directory / "lensarith.json").read_text())
    return la.load_model("organism-planted", device="cpu"), meta["organism"]["config"]["planted"]["layer"]


@pytest.mark.parametrize("task", ["capitals", "uppercase", "past"])
def test_layer_search_recovers_the_planted_layer_without_being_told(planted, task):
    model, layer = planted
    res = find_layers(model, task, config=SearchConfig(n_prompts=24, n_contexts=24), batch_size=32)
    assert res.meta["task_accuracy"] > 0.8
    assert res.application_layer == layer, res.table()
    assert res.meta["argument_peak"] < layer  # the argument forms before the planted MLP


def test_planted_o_transplants_at_scale_one_and_a_random_vector_does_not(planted):
    model, layer = planted
    src = la.tokenize(model, la.build_prompts("capitals", n=1), drop_multi_token=True)
    o = extract_o_vector(model, src, layer)
    ctx = transplant_contexts("capitals", n=40, seed=3, exclude=src.examples[0].argument, model=model)
    got = transplant(model, o, ctx)  # the paper's protocol: replace MLPs layer..last, every position, scale 1
    assert got.meta["layers"] == list(range(layer, model.cfg.n_layers))
    rnd = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    control = transplant(model, rnd / rnd.norm() * o.norm, ctx, layers=range(layer, model.cfg.n_layers))
    # capitals contexts are the one set where a random vector of o's norm sometimes lands on a capital
    # (about a quarter of them; the card pools the sets for its 5x target)
    assert got.accuracy() >= 0.5 and got.accuracy() - control.accuracy() >= 0.4
    assert got.accuracy("answer", "control") < 0.2  # without o the contexts are answered by the argument
    back = transplant(model, o, src, mode="subtract")  # Warsaw turns back into Poland
    assert back.accuracy("argument") == 1.0
