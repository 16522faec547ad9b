import pytest
import torch

import lensarith as la
from conftest import hooks_left, state_of


def last_logits(model, batch, interventions=()):
    return la.run_with_interventions(model, batch, interventions)


def test_hooks_removed_after_exception_and_user_hooks_kept(model, prompts):
    batch = la.tokenize(model, prompts)
    seen = []
    model.add_hook("blocks.0.hook_resid_pre", lambda act, hook: seen.append(1))
    before = state_of(model)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with la.intervene(model, [la.Ablate(la.Site("mlp_out", 0))], batch):
                raise RuntimeError("boom")
        assert hooks_left(model) == 1  # only the user's own hook
        model(batch.tokens[:1])
        assert seen
    finally:
        model.reset_hooks()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_zero_ablation_equals_manual(model, prompts):
    batch = la.tokenize(model, prompts[:1])
    out = last_logits(model, batch, [la.Ablate(la.Site("mlp_out", 1))])
    ref = model.run_with_hooks(batch.tokens, fwd_hooks=[("blocks.1.hook_mlp_out", lambda a, hook: a * 0)])[0, -1]
    torch.testing.assert_close(out[0], ref.detach(), atol=1e-5, rtol=1e-5)


def test_add_then_subtract_is_noop(model, prompts):
    batch = la.tokenize(model, prompts)
    v = torch.randn(model.cfg.d_model)
    site = la.Site("resid_pre", 1, position="last")
    both = last_logits(model, batch, [la.Add(site, v, 2.0), la.Add(site, v, -2.0)])
    torch.testing.assert_close(both, last_logits(model, batch), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(last_logits(model, batch, [la.Add(site, v, 2.0)]), both)


def test_last_position_respects_padding(model, prompts):
    """An edit at 'last' hits each row's last real token: same as editing rows one by one."""
    batch = la.tokenize(model, prompts)
    v = torch.randn(model.cfg.d_model)
    site = la.Site("mlp_out", 0, position="last")
    batched = last_logits(model, batch, [la.Replace(site, v)])
    for i, ex in enumerate(prompts):
        one = last_logits(model, la.tokenize(model, [ex]), [la.Replace(site, v)])
        torch.testing.assert_close(batched[i], one[0], atol=1e-5, rtol=1e-5)


def test_patch_clean_into_clean_is_noop(model, prompts):
    batch = la.tokenize(model, prompts[:1])
    _, cache = model.run_with_cache(batch.tokens)
    out = last_logits(model, batch, [la.Patch(la.Site("z", 1, head=2), cache["blocks.1.attn.hook_z"])])
    torch.testing.assert_close(out, last_logits(model, batch), atol=1e-6, rtol=1e-6)


def test_site_errors(model, prompts):
    batch = la.tokenize(model, prompts)
    with pytest.raises(la.LensarithError, match="kind='mlp_outt' is unknown"):
        la.Site("mlp_outt", 0)
    with pytest.raises(la.LensarithError, match="layer=7 is out of range for a model with 2 layers"):
        last_logits(model, batch, [la.Ablate(la.Site("mlp_out", 7))])
    with pytest.raises(la.LensarithError, match="head=9 is out of range"):
        last_logits(model, batch, [la.Ablate(la.Site("z", 0, head=9))])
    with pytest.raises(la.LensarithError, match="has no heads"):
        la.Site("mlp_out", 0, head=1)
    with pytest.raises(la.LensarithError, match="cannot apply the intervention at blocks.0.hook_mlp_out"):
        last_logits(model, batch, [la.Replace(la.Site("mlp_out", 0), torch.zeros(5))])
    with pytest.raises(la.LensarithError, match="mean=<tensor>"):
        la.Ablate(la.Site("mlp_out", 0), mode="mean")
    assert hooks_left(model) == 0
