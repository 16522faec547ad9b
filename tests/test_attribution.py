import pytest
import torch

import lensarith as la


@pytest.mark.parametrize("granularity", ["layer", "head", "neuron"])
def test_dla_sums_to_logit_difference(model, prompts, granularity):
    dla = la.direct_logit_attribution(model, prompts, baselines="argument", granularity=granularity)
    torch.testing.assert_close(dla.attributions.sum(0), dla.total, atol=1e-4, rtol=1e-4)
    assert dla.component_labels[-1] == "final_bias"


def test_total_is_the_models_logit_difference(model, prompts):
    dla = la.direct_logit_attribution(model, prompts, baselines="argument")
    for i, ex in enumerate(prompts):
        logits = model(model.to_tokens(ex.prompt))[0, -1]
        b = la.tokenize(model, [ex])
        expected = logits[b.answer_ids[0]] - logits[b.argument_ids[0]]
        torch.testing.assert_close(dla.total[i], expected.detach(), atol=1e-4, rtol=1e-4)


def test_plain_logit_sums(model, prompts):
    dla = la.direct_logit_attribution(model, prompts, answers=" Paris")
    torch.testing.assert_close(dla.attributions.sum(0), dla.total, atol=1e-4, rtol=1e-4)


def test_parity_with_transformer_lens_logit_attrs(folded, prompts):
    for ex in prompts[:3]:
        tokens = folded.to_tokens(ex.prompt)
        _, cache = folded.run_with_cache(tokens)
        stack, labels = cache.decompose_resid(layer=-1, pos_slice=-1, apply_ln=False, return_labels=True)
        b = la.tokenize(folded, [ex])
        ref = cache.logit_attrs(stack, tokens=b.answer_ids, incorrect_tokens=b.argument_ids, pos_slice=-1)
        dla = la.direct_logit_attribution(folded, [ex], baselines="argument")
        ours = dict(zip(dla.component_labels, dla.attributions[:, 0]))
        names = {"embed": "embed", "pos_embed": "pos_embed", "0_attn_out": "L0_attn", "0_mlp_out": "L0_mlp",
                 "1_attn_out": "L1_attn", "1_mlp_out": "L1_mlp"}
        for label, value in zip(labels, ref[:, 0]):
            torch.testing.assert_close(ours[names[label]], value.detach(), atol=1e-4, rtol=1e-4)


def test_unfolded_model_matches_its_folded_twin(prompts):
    """lensarith applies ln_final.w and b explicitly, so folding must not change the numbers."""
    raw = la.tiny_model(n_layers=2, d_model=32, seed=5)
    twin = la.tiny_model(n_layers=2, d_model=32, seed=5)
    twin.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    a = la.direct_logit_attribution(raw, prompts, baselines="argument")
    b = la.direct_logit_attribution(twin, prompts, baselines="argument")
    torch.testing.assert_close(a.total, b.total, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.attributions[:-1], b.attributions[:-1], atol=1e-4, rtol=1e-4)


def test_batched_equals_one_by_one(model, prompts):
    dla = la.direct_logit_attribution(model, prompts, baselines="argument", granularity="head", batch_size=4)
    for i, ex in enumerate(prompts):
        one = la.direct_logit_attribution(model, [ex], baselines="argument", granularity="head")
        torch.testing.assert_close(dla.attributions[:, i], one.attributions[:, 0], atol=1e-5, rtol=1e-5)


def test_top_and_mean(model, prompts):
    dla = la.direct_logit_attribution(model, prompts, baselines="argument")
    top = dla.top(3)
    assert len(top) == 3 and abs(top[0][1]) >= abs(top[-1][1])
    assert set(dla.mean()) == set(dla.component_labels)


def test_bad_input(model, prompts):
    with pytest.raises(la.LensarithError, match="answers: 'Qqqxyz' is not in the model's vocabulary"):
        la.direct_logit_attribution(model, prompts, answers="Qqqxyz")
    with pytest.raises(la.LensarithError, match=r"answers needs one token per prompt \(9\)"):
        la.direct_logit_attribution(model, prompts, answers=torch.tensor([1, 2]))
    with pytest.raises(la.LensarithError, match="carry no answers"):
        la.direct_logit_attribution(model, ["Q: What is the capital of France?"])
