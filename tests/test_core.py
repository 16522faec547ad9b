"""The execution core: the one forward (groups, start layers, captures, gradients) and the one readout."""

from __future__ import annotations

import pytest
import torch
from conftest import hooks_left, state_of

import lensarith as la
from lensarith.core import Group, Site, readout, run, tokenize

NORMS = ["LN", "LNPre", "RMS", "RMSPre", None]


def _model(norm, seed=7):
    m = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=seed, normalization_type=norm)
    return m


@pytest.fixture(scope="module")
def batch(model):
    return tokenize(model, la.build_prompts("capitals", n=3) + la.build_prompts("past", n=2))


def _model_logits(model, batch):
    """The model's own logits at each row's last real token (TransformerLens's forward)."""
    with torch.no_grad():
        out = model(batch.tokens)
    return out[torch.arange(len(batch)), batch.last]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("cap", [None, 3.0])
def test_readout_equals_the_models_own_logits(norm, cap):
    model = _model(norm)
    if cap is not None:
        model.cfg.output_logits_soft_cap = cap
    batch = tokenize(model, la.build_prompts("capitals", n=3) + la.build_prompts("past", n=2))
    want = _model_logits(model, batch)
    torch.testing.assert_close(la.run_with_interventions(model, batch), want, atol=1e-5, rtol=0)
    lens = la.logit_lens(model, batch)
    torch.testing.assert_close(lens.logits()[-1], want, atol=1e-5, rtol=0)
    ranks = readout.rank(want, batch.answer_ids)
    assert torch.equal(lens.rank("answer")[-1], ranks)
    if cap is not None:
        assert float(want.abs().max()) <= cap


@pytest.mark.parametrize("shape", [(5, 32), (2, 5, 32), (3, 2, 5, 32)])
def test_unembed_equals_the_unembed_module_bit_for_bit_and_respects_its_hooks(model, shape):
    x = torch.randn(*shape)
    with torch.no_grad():
        want = model.unembed(x.reshape(-1, 1, shape[-1])).reshape(*shape[:-1], -1)
        assert torch.equal(readout.unembed(model, x), want)
        # a hook on the module is honoured (the module runs), and removed afterwards
        with model.hooks(fwd_hooks=[("unembed.hook_out", lambda t, hook: t * 0)]):
            assert float(readout.unembed(model, x).abs().max()) == 0.0
        assert torch.equal(readout.unembed(model, x), want)


def test_rank_refuses_non_finite_logits():
    logits = torch.randn(3, 10)
    assert readout.rank(logits, torch.tensor([0, 1, 2])).shape == (3,)
    logits[1, 4] = float("nan")
    with pytest.raises(la.LensarithError, match=r"non-finite values .* in the test logits for rows \[1\]"):
        readout.rank(logits, torch.tensor([0, 1, 2]), where="the test logits")
    logits[1, 4] = float("inf")
    with pytest.raises(la.LensarithError, match="non-finite"):
        readout.rank(logits, torch.tensor([0, 1, 2]))


def test_a_nan_vector_is_an_error_not_a_perfect_score(model, batch):
    caps = list(tokenize(model, la.build_prompts("capitals", n=12), drop_multi_token=True).examples)
    nan = torch.full((model.cfg.d_model,), float("nan"))
    with pytest.raises(la.LensarithError, match="vector holds non-finite values"):
        la.transplant(model, nan, la.transplant_contexts(caps[1:5]), layers=[1], mode="replace")
    for ivs, where in (([la.Replace(Site("mlp_out", 1, "last"), nan)], r"blocks\.1\.hook_mlp_out \(layer 1\)"),
                       ([la.Add(Site("resid_pre", 1), nan)], r"blocks\.1\.hook_resid_pre \(layer 1\)")):
        with pytest.raises(la.LensarithError, match=f"non-finite values .* first appear at {where} for examples"):
            la.run_with_interventions(model, batch, ivs)
        with pytest.raises(la.LensarithError, match=f"first appear at {where} in group 1"):
            run(model, batch, groups=[[], ivs], read="last", batch_size=2)
    broken = _model("LN", seed=5)
    with torch.no_grad():
        broken.blocks[0].mlp.W_in[0, 0] = float("nan")
    with pytest.raises(la.LensarithError, match=r"first appear at blocks\.0\.hook_mlp_out"):
        la.logit_lens(broken, la.build_prompts("capitals", n=2))
    assert hooks_left(model) == 0


@pytest.mark.parametrize("batch_size", [None, 2])
def test_groups_equal_separate_runs_and_start_layers_equal_full_runs(model, batch, batch_size):
    abl = [la.Ablate(Site("mlp_out", 1))]
    add = [la.Add(Site("resid_pre", 1, "last"), torch.ones(model.cfg.d_model), 0.3)]
    together = run(model, batch, groups=[[], abl, Group(add, start_layer=1), Group(abl, start_layer=1)], read="last",
                   batch_size=batch_size)
    assert together.final.shape == (4, len(batch), model.cfg.d_model)
    for g, ivs in enumerate(([], abl, add, abl)):
        alone = run(model, batch, interventions=ivs, read="last")
        torch.testing.assert_close(together.final[g], alone.final, atol=1e-5, rtol=0)
    assert hooks_left(model) == 0


def test_groups_that_all_start_late_get_their_residuals(model, batch):
    abl = [la.Ablate(Site("mlp_out", 1))]
    late = run(model, batch, groups=[Group(abl, start_layer=1), Group(abl, start_layer=0)], read="last", batch_size=2)
    alone = run(model, batch, interventions=abl, read="last")
    for g in range(2):
        torch.testing.assert_close(late.final[g], alone.final, atol=1e-5, rtol=0)


def test_whole_activation_captures_pad_ragged_prompts(model, batch):
    sites = [Site("pattern", 0), Site("resid_post", 1), Site("z", 1)]
    got = run(model, batch, capture=sites, batch_size=2).captured
    width = batch.tokens.shape[1]
    assert got[sites[0]].shape == (len(batch), model.cfg.n_heads, width, width)
    assert got[sites[1]].shape == (len(batch), width, model.cfg.d_model)
    for i in range(len(batch)):
        one = run(model, batch.take(torch.tensor([i])), capture=sites).captured
        n = int(batch.lengths[i])
        torch.testing.assert_close(got[sites[0]][i, :, :n, :n], one[sites[0]][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(got[sites[1]][i, :n], one[sites[1]][0], atol=1e-5, rtol=0)
        assert float(got[sites[1]][i, n:].abs().sum()) == 0.0  # padding is zeros


def test_keep_sees_each_chunk_and_rows_come_back_in_order(model, batch):
    seen = []

    def keep(out, chunk):
        seen.append(len(chunk))
        return {"last": chunk.last.clone(), "norm": out.final.norm(dim=-1)}

    got = run(model, batch, read="last", keep=keep, batch_size=2).kept
    assert seen == [2, 2, 1] and torch.equal(got["last"], batch.last)
    torch.testing.assert_close(got["norm"], run(model, batch, read="last").final.norm(dim=-1), atol=1e-5, rtol=0)


def test_grad_runs_keep_the_graph_and_leave_the_model_alone(model, batch):
    before = state_of(model)
    site = Site("mlp_out", 0)
    out = run(model, batch, capture=[site], read="last", grad=True)
    (g,) = torch.autograd.grad(readout.logits(model, out.final)[:, 0].sum(), [out.captured[site]])
    assert g.shape == out.captured[site].shape and bool(g.abs().sum() > 0)
    assert all(p.grad is None for p in model.parameters()) and hooks_left(model) == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_hooks_are_removed_when_a_group_raises(model, batch):
    def boom(act, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(model, batch, groups=[[], [la.core.Hook(Site("mlp_out", 1), boom)]], read="last")
    assert hooks_left(model) == 0


# --------------------------------------------------------------------------- a model without a final norm


@pytest.fixture(scope="module")
def bare():
    return _model(None, seed=11)


def test_no_final_norm_lens_dla_and_decomposition(bare):
    batch = tokenize(bare, la.build_prompts("capitals", n=4), drop_multi_token=True)
    want = _model_logits(bare, batch)
    dla = la.direct_logit_attribution(bare, batch, baselines="argument", granularity="head")
    rows = torch.arange(len(batch))
    diff = want[rows, batch.answer_ids] - want[rows, batch.argument_ids]
    torch.testing.assert_close(dla.total, diff, atol=1e-4, rtol=0)
    torch.testing.assert_close(dla.attributions.sum(0), dla.total, atol=1e-4, rtol=0)
    dec = la.decompose_resid(bare, batch, granularity="neuron")
    assert dec.relative_error() < 1e-4
    lens = la.logit_lens(bare, batch)
    torch.testing.assert_close(lens.logits()[-1], want, atol=1e-5, rtol=0)


def test_no_final_norm_patching_transplant_search_and_ablation(bare):
    pairs = la.pair_examples(bare, la.build_prompts("capitals", format="zero_shot", n=40), n=3)
    fast = la.activation_patch(bare, pairs, config=la.PatchConfig(engine="fast"))
    hooks = la.activation_patch(bare, pairs, config=la.PatchConfig(engine="hooks"))
    torch.testing.assert_close(fast.values, hooks.values, atol=1e-4, rtol=0)
    same = la.activation_patch(bare, la.make_pairs(bare, pairs.clean, pairs.clean), site="mlp_out", metric=la.patching.LogitDiff(
        "clean", None))
    torch.testing.assert_close(same.per_example, same.clean.expand_as(same.per_example), atol=1e-5, rtol=0)
    att = la.attribution_patch(bare, pairs, site="mlp_out")
    assert torch.isfinite(att.values).all()
    found = la.find_layers(bare, "capitals", config=la.SearchConfig(n_prompts=10, n_contexts=8, screen=1))
    assert 0 <= found.application_layer < bare.cfg.n_layers
    res = la.transplant_experiment(bare, "capitals", la.TransplantConfig(n_contexts=6),
                                   search=la.SearchConfig(n_prompts=10, n_contexts=8))
    assert res.tensors["rank_answer"].shape[:2] == (2, bare.cfg.n_layers)
    o = la.extract_o_vector(bare, la.build_prompts("capitals", n=2), layer=1).select(0)
    assert la.vectors.decode_o_vector(bare, o, k=3).promoted
    assert la.vectors.o_vector_analogy(bare, o, "capitals", n_shuffles=2).summary()
    abl = la.ffn_ablation(bare, "capitals", n=8, steps=2, mode="mean")
    assert abl.tensors["accuracy"].shape == (2, 3)
    assert hooks_left(bare) == 0
