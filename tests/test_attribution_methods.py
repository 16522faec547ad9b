"""Attribution patching methods: ``atp`` (plain gradient), ``atp*`` (QK fix, GradDrop), ``relp``."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import lensarith as la
from lensarith.patching import activation_patch, attribution_patch, make_pairs, pair_examples
from lensarith.patching._atp import BUDGET, Trace, _one_position_terms
from lensarith.patching._runs import unpatched

METHODS = ["atp", "atp+qk", "atp*", "relp", "relp+qk"]
SITES = [("resid_pre", None), ("attn_out", None), ("mlp_out", None), ("z", None), ("z", True), ("resid_mid", None),
         ("resid_post", None)]


def _moved(res):
    return (res.per_example - res.corrupted).flatten()


def _corr(a, b) -> float:
    return float(torch.corrcoef(torch.stack([_moved(a), _moved(b)]))[0, 1])


@pytest.fixture(scope="module")
def pairs(model):
    return pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=40), n=4)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("site,by_pos", SITES)
def test_methods_run_within_budget_and_track_exact_patching(model, pairs, method, site, by_pos):
    exact = activation_patch(model, pairs, site=site, by_position=by_pos)
    res = attribution_patch(model, pairs, site=site, by_position=by_pos, method=method)
    assert res.meta["method"] == method and res.values.shape == exact.values.shape
    assert res.meta["forward_equivalents"] <= BUDGET
    torch.testing.assert_close(res.clean, exact.clean, atol=1e-4, rtol=0)
    torch.testing.assert_close(res.corrupted, exact.corrupted, atol=1e-4, rtol=0)
    assert torch.isfinite(res.per_example).all()
    assert _corr(res, exact) > (0.5 if method in ("atp*", "relp", "relp+qk") else 0.8), (method, site, _corr(res, exact))
    if method == "atp*":
        assert res.meta["graddrop_groups"], "GradDrop found no budget"


def _one_layer_linear_readout():
    """Attention only, no norms: everything after a head's output is linear."""
    cfg = HookedTransformerConfig(n_layers=1, d_model=32, n_heads=4, d_head=8, d_vocab=40, n_ctx=16,
                                  attn_only=True, normalization_type=None, act_fn="gelu", seed=4)
    model = HookedTransformer(cfg)
    model.eval()
    clean = torch.randint(0, 40, (3, 7), generator=torch.Generator().manual_seed(2))
    corrupt = clean.clone()
    corrupt[:, 3] = (corrupt[:, 3] + 5) % 40
    return model, make_pairs(model, clean, corrupt, answers=[1, 2, 3], corrupted_answers=[4, 5, 6])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("site", ["z", "attn_out"])
def test_exact_where_the_model_is_linear_after_the_patch(method, site):
    model, pairs = _one_layer_linear_readout()
    for by_pos in ((None, True) if site == "z" else (None,)):
        exact = activation_patch(model, pairs, site=site, by_position=by_pos)
        res = attribution_patch(model, pairs, site=site, by_position=by_pos, method=method)
        torch.testing.assert_close(res.per_example, exact.per_example, atol=1e-4, rtol=0)


def test_the_qk_fix_closed_form_equals_recomputing_the_attention(model, pairs):
    """One position's query, key and value changed: the closed-form row/column update of the
    attention output equals recomputing the whole block's attention."""
    batch = pairs.corrupted
    x0 = unpatched(model, batch, [la.Site("resid_pre", 0)], pairs.read).acts["blocks.0.hook_resid_pre"]
    trace = Trace(model, x0, 0, relp=False, qk=True)
    blk = trace.blocks[1]
    B, W = x0.shape[:2]
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0, 3, W - 1, 5])
    xp = blk.x[:, p].transpose(0, 1) + torch.randn(4, B, model.cfg.d_model, generator=gen)
    h = trace.norm(1, "ln1", xp)
    qp, kp = trace.project_qk(1, h, p[:, None].expand(4, B))
    vp = trace.project_v(1, h)
    gz = torch.randn(B, W, model.cfg.n_heads, model.cfg.d_head, generator=gen)
    (closed,) = _one_position_terms(trace, 1, blk, qp, kp, vp, p, [gz])
    q, k, v = (t[None].repeat(4, 1, 1, 1, 1) for t in (blk.q, blk.k, blk.v))
    jj = torch.arange(4)
    q[jj, :, p], k[jj, :, p], v[jj, :, p] = qp, kp, vp
    full = ((trace.attend(trace.pattern(1, q, k), v) - blk.z[None]) * gz[None]).sum((2, 3, 4))
    torch.testing.assert_close(closed, full, atol=1e-4, rtol=1e-4)


def test_the_recomputed_base_run_equals_the_models(model, pairs):
    out = unpatched(model, pairs.corrupted, [la.Site("resid_pre", 0)], pairs.read)
    for relp in (False, True):
        trace = Trace(model, out.acts["blocks.0.hook_resid_pre"], 0, relp=relp, qk=not relp)
        torch.testing.assert_close(trace.final(pairs.read).detach(), out.final, atol=1e-5, rtol=0)


def test_the_new_methods_beat_plain_atp_where_attention_saturates():
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=40, n_ctx=16,
                                  act_fn="gelu_new", normalization_type="LN", seed=1)
    model = HookedTransformer(cfg)
    model.eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.mul_(4.0)
            block.attn.W_K.mul_(4.0)
    clean = torch.randint(0, 40, (6, 8), generator=torch.Generator().manual_seed(0))
    corrupt = clean.clone()
    corrupt[:, 2] = (corrupt[:, 2] + 11) % 40
    corrupt[:, 5] = (corrupt[:, 5] + 3) % 40
    pairs = make_pairs(model, clean, corrupt, answers=list(range(6)), corrupted_answers=list(range(10, 16)))
    exact = activation_patch(model, pairs, site="resid_pre")
    r = {m: _corr(attribution_patch(model, pairs, site="resid_pre", method=m), exact) for m in METHODS}
    assert r["atp+qk"] > r["atp"] + 0.1 and r["relp+qk"] > r["atp"] + 0.1, r


def test_bad_method_and_unsupported_models(model, pairs):
    with pytest.raises(la.LensarithError, match=r"method must be one of 'atp', 'atp\+qk', 'atp\*', 'relp', 'relp\+qk'.*got 'atp\+'"):
        attribution_patch(model, pairs, method="atp+")
    cfg = HookedTransformerConfig(n_layers=1, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=40, n_ctx=16,
                                  act_fn="solu_ln", normalization_type="LN", seed=1)
    solu = HookedTransformer(cfg)
    clean = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(0))
    p = make_pairs(solu, clean, clean.flip(1), answers=[1, 2], corrupted_answers=[3, 4])
    with pytest.raises(la.LensarithError, match=r"method='relp' recomputes the model's blocks.*solu_ln.*method='atp'"):
        attribution_patch(solu, p, method="relp")
    assert attribution_patch(solu, p).meta["method"] == "atp"


def test_a_tight_budget_fixes_the_largest_sites_first(model, pairs, monkeypatch):
    import lensarith.patching._sweep as sweep

    full = attribution_patch(model, pairs, site="z", method="atp+qk")
    monkeypatch.setattr(sweep, "BUDGET", full.meta["forward_equivalents"] - 0.02)
    tight = attribution_patch(model, pairs, site="z", method="atp+qk")
    fixed, total = (int(x) for x in tight.meta["qk_fixed_sites"].split(" of "))
    assert 0 < fixed < total and tight.meta["forward_equivalents"] <= sweep.BUDGET
    assert full.meta["qk_fixed_sites"] == f"{total} of {total}"
