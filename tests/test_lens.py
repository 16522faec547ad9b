import pytest
import torch

import lensarith as la
from conftest import hooks_left


def tl_lens(model, prompt):
    """The paper-style oracle: run_with_cache, accumulated_resid, final LN, unembed."""
    _, cache = model.run_with_cache(model.to_tokens(prompt))
    acc = cache.accumulated_resid(layer=None, incl_mid=False, apply_ln=False, pos_slice=-1)  # [n+1, 1, d]
    return model.unembed(model.ln_final(acc[1:]))[:, 0]  # resid_post of each layer


def test_matches_run_with_cache_oracle(model, prompts):
    lens = la.logit_lens(model, prompts)
    full = lens.logits()  # [layer, batch, vocab]
    for i, ex in enumerate(prompts):
        expected = tl_lens(model, ex.prompt)
        torch.testing.assert_close(full[:, i], expected.detach(), atol=1e-4, rtol=1e-4)


def test_all_stream_order_and_labels(model, prompts):
    lens = la.logit_lens(model, prompts, stream="all")
    assert lens.layers == ["0_pre", "0_mid", "1_pre", "1_mid", "1_post"]
    post = la.logit_lens(model, prompts, stream="resid_post")
    torch.testing.assert_close(lens.normed[2], post.normed[0])  # resid_pre 1 == resid_post 0
    torch.testing.assert_close(lens.normed[-1], post.normed[-1])


def test_batched_equals_one_by_one(model, prompts):
    lens = la.logit_lens(model, prompts, stream="all", batch_size=3)
    assert len({len(model.to_tokens(e.prompt)[0]) for e in prompts}) > 1  # really padded
    for i, ex in enumerate(prompts):
        single = la.logit_lens(model, [ex], stream="all")
        torch.testing.assert_close(lens.normed[:, i], single.normed[:, 0], atol=1e-5, rtol=1e-5)
        assert torch.equal(lens.rank("answer")[:, i], single.rank("answer")[:, 0])


def test_rank_and_reciprocal_rank_definitions(model, prompts):
    lens = la.logit_lens(model, prompts)
    logits = lens.logits()
    ids = lens.tensors["answer_ids"]
    rank = lens.rank("answer")
    for layer in range(logits.shape[0]):
        for b in range(logits.shape[1]):
            target = logits[layer, b, ids[b]]
            assert rank[layer, b] == int((logits[layer, b] > target).sum())
    torch.testing.assert_close(lens.reciprocal_rank("answer"), 1 / (rank.float() + 1))
    top_ids, top_str = lens.top_tokens(3)
    assert torch.equal(top_ids[:, :, 0], logits.argmax(-1))
    assert top_str[0][0][0] == model.to_single_str_token(int(top_ids[0, 0, 0]))
    acc = lens.accuracy("answer")
    torch.testing.assert_close(acc, (rank == 0).float().mean(-1))


def test_position_choices(model, prompts):
    batch = la.tokenize(model, prompts)
    last = la.logit_lens(model, batch, position="last")
    minus1 = la.logit_lens(model, batch, position=-1)
    torch.testing.assert_close(last.normed, minus1.normed)
    second = la.logit_lens(model, batch, position=1)
    _, cache = model.run_with_cache(batch.tokens[:1, :2])
    ref = model.ln_final(cache["blocks.0.hook_resid_post"][:, 1])
    torch.testing.assert_close(second.normed[0, 0], ref[0].detach(), atol=1e-5, rtol=1e-5)
    with pytest.raises(la.LensarithError, match="position=500 is past the end"):
        la.logit_lens(model, batch, position=500)
    with pytest.raises(la.LensarithError, match="reaches before the start"):
        la.logit_lens(model, batch, position=-500)


def test_save_load_attach(model, prompts, tmp_path):
    lens = la.logit_lens(model, prompts)
    lens.save(tmp_path / "lens")
    loaded = la.Result.load(tmp_path / "lens")
    assert isinstance(loaded, la.lens.LensResult)
    with pytest.raises(la.LensarithError, match="attach"):
        loaded.rank("answer")
    loaded.attach(model)
    assert torch.equal(loaded.rank("answer"), lens.rank("answer"))
    other = la.tiny_model(n_layers=3, d_model=32)
    with pytest.raises(la.LensarithError, match="different model"):
        loaded.attach(other)


def test_bad_input(model):
    with pytest.raises(la.LensarithError, match="prompts is empty"):
        la.logit_lens(model, [])
    with pytest.raises(la.LensarithError, match="stream must be"):
        la.logit_lens(model, ["Q: hello"], stream="resid_everything")
    with pytest.raises(la.LensarithError, match="token ids must lie in"):
        la.logit_lens(model, torch.tensor([[1, 2, 10**7]]))
    lens = la.logit_lens(model, ["Q: What is the capital of France?"])
    with pytest.raises(la.LensarithError, match="carried no answers"):
        lens.rank("answer")
    with pytest.raises(la.LensarithError, match="not in the model's vocabulary"):
        lens.rank(["Zzyzzxq"])
    assert hooks_left(model) == 0
