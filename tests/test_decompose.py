import pytest
import torch

import lensarith as la


@pytest.mark.parametrize("granularity", ["layer", "head", "neuron"])
@pytest.mark.parametrize("stream,layer", [("resid_pre", 0), ("resid_pre", 2), ("resid_mid", 1), ("resid_post", 2), (None, None)])
def test_components_sum_to_residual(model3, prompts, granularity, stream, layer):
    kwargs = {} if stream is None else {"stream": stream, "layer": layer}
    dec = la.decompose_resid(model3, prompts, granularity=granularity, **kwargs)
    assert dec.relative_error() < 1e-4
    assert dec.components.shape[0] == len(dec.component_labels)


def test_residual_is_the_real_one(model, prompts):
    dec = la.decompose_resid(model, prompts[:1], layer=1, stream="resid_mid")
    _, cache = model.run_with_cache(model.to_tokens(prompts[0].prompt))
    torch.testing.assert_close(dec.resid[0], cache["blocks.1.hook_resid_mid"][0, -1], atol=1e-5, rtol=1e-5)


def test_parity_with_transformer_lens_decompose_resid(model, prompts):
    for ex in prompts[:3]:
        _, cache = model.run_with_cache(model.to_tokens(ex.prompt))
        ref, labels = cache.decompose_resid(layer=-1, pos_slice=-1, apply_ln=False, return_labels=True)
        dec = la.decompose_resid(model, [ex])
        ours = dict(zip(dec.component_labels, dec.components[:, 0]))
        mapping = {"embed": "embed", "pos_embed": "pos_embed", "0_attn_out": "L0_attn", "0_mlp_out": "L0_mlp",
                   "1_attn_out": "L1_attn", "1_mlp_out": "L1_mlp"}
        for tl_label, vec in zip(labels, ref[:, 0]):
            torch.testing.assert_close(ours[mapping[tl_label]], vec.detach(), atol=1e-5, rtol=1e-5)


def test_parity_with_full_resid_decomposition_heads(model, prompts):
    ex = prompts[0]
    _, cache = model.run_with_cache(model.to_tokens(ex.prompt))
    ref, labels = cache.get_full_resid_decomposition(layer=-1, expand_neurons=False, pos_slice=-1, apply_ln=False, return_labels=True)
    dec = la.decompose_resid(model, [ex], granularity="head")
    ours = dict(zip(dec.component_labels, dec.components[:, 0]))
    for tl_label, vec in zip(labels, ref[:, 0]):
        if tl_label == "bias":  # TransformerLens lumps every layer's b_O together
            mine = sum(v for k, v in ours.items() if k.endswith("_attn_bias"))
        else:
            mine = ours[{"0_mlp_out": "L0_mlp", "1_mlp_out": "L1_mlp"}.get(tl_label, tl_label)]
        torch.testing.assert_close(mine, vec.detach(), atol=1e-5, rtol=1e-5)


def test_neurons_sum_to_mlp_out(model, prompts):
    by_layer = la.decompose_resid(model, prompts, granularity="layer")
    by_neuron = la.decompose_resid(model, prompts, granularity="neuron")
    lab = by_neuron.component_labels
    l1 = [i for i, name in enumerate(lab) if name.startswith("L1N") or name == "L1_mlp_bias"]
    assert len(l1) == model.cfg.d_mlp + 1
    mlp1 = by_layer.components[by_layer.component_labels.index("L1_mlp")]
    torch.testing.assert_close(by_neuron.components[l1].sum(0), mlp1, atol=1e-4, rtol=1e-4)


def test_batched_equals_one_by_one(model, prompts):
    dec = la.decompose_resid(model, prompts, granularity="head", batch_size=2)
    for i, ex in enumerate(prompts):
        single = la.decompose_resid(model, [ex], granularity="head")
        torch.testing.assert_close(dec.components[:, i], single.components[:, 0], atol=1e-5, rtol=1e-5)


def test_save_load(model, prompts, tmp_path):
    dec = la.decompose_resid(model, prompts, granularity="head")
    loaded = la.Result.load(dec.save(tmp_path / "dec"))
    assert isinstance(loaded, la.decompose.DecompositionResult)
    assert loaded.component_labels == dec.component_labels
    assert torch.equal(loaded.components, dec.components)


def test_bad_input(model, prompts):
    with pytest.raises(la.LensarithError, match="layer=5 is out of range .* 2 layers"):
        la.decompose_resid(model, prompts, layer=5)
    with pytest.raises(la.LensarithError, match="granularity must be"):
        la.decompose_resid(model, prompts, granularity="atom")
    with pytest.raises(la.LensarithError, match="stream must be"):
        la.decompose_resid(model, prompts, layer=0, stream="resid_final")
