"""Activation and attribution patching: TransformerLens parity, identities, metrics, errors, safety."""

from __future__ import annotations

import pytest
import torch
import transformer_lens.patching as tlp
from conftest import hooks_left

import lensarith as la
from lensarith.patching import AnswerProb, LogitDiff, Metric, Recovery, ReciprocalRank
from lensarith.patching import (
    AttributionPatchResult,
    PatchConfig,
    PatchResult,
    PromptPairs,
    activation_patch,
    attribution_patch,
    make_pairs,
    pair_examples,
)

ENGINES = ["fast", "hooks"]
ATOL = 1e-4


@pytest.fixture(scope="module")
def pairs(model) -> PromptPairs:
    return pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=40), n=4)


@pytest.fixture(scope="module")
def ragged(model) -> PromptPairs:
    """Pairs of different lengths in one right-padded batch."""
    clean = ["Q: What is the capital of Poland?\nA:", "Today I walk. Yesterday I",
             "Q: What is the capital of the state of Texas?\nA:"]
    corrupt = ["Q: What is the capital of China?\nA:", "Today I go. Yesterday I",
               "Q: What is the capital of the state of Ohio?\nA:"]
    return make_pairs(model, clean, corrupt, answers=[" Warsaw", " walked", " Austin"],
                      corrupted_answers=[" Beijing", " went", " Columbus"])


def _tl_logit_diff(pairs: PromptPairs):
    rows, last = torch.arange(len(pairs)), pairs.read
    ca, ka = pairs.clean.answer_ids, pairs.corrupted.answer_ids

    def metric(logits):
        read = logits[rows, last]
        return (read[rows, ca] - read[rows, ka]).mean()

    return metric


def _tl(model, pairs, fn, metric, direction="denoise"):
    clean, corrupt = pairs.clean.tokens, pairs.corrupted.tokens
    base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    with torch.no_grad():
        _, cache = model.run_with_cache(source)
        return fn(model, base, cache, metric)


def _generic(name: str, setter, axes: tuple[str, ...] = ("layer", "pos")):
    """A TransformerLens oracle for an activation without a ready-made ``get_act_patch_*``."""
    def run(model, tokens, cache, metric):
        return tlp.generic_activation_patch(model, tokens, cache, metric, setter, name, index_axis_names=axes)
    return run


POSITION_ORACLES = {
    "resid_pre": tlp.get_act_patch_resid_pre,
    "resid_mid": tlp.get_act_patch_resid_mid,
    "resid_post": _generic("resid_post", tlp.layer_pos_patch_setter),
    "attn_out": tlp.get_act_patch_attn_out,
    "mlp_out": tlp.get_act_patch_mlp_out,
}


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("site", list(POSITION_ORACLES))
def test_position_sites_match_transformer_lens(model, pairs, site, engine):
    ref = _tl(model, pairs, POSITION_ORACLES[site], _tl_logit_diff(pairs))
    res = activation_patch(model, pairs, site=site, config=PatchConfig(engine=engine))
    assert res.grid_axes == ("layer", "pos")
    assert res.meta["engine"] == engine
    torch.testing.assert_close(res.values, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("engine", ENGINES)
def test_heads_match_transformer_lens(model, pairs, engine):
    metric, config = _tl_logit_diff(pairs), PatchConfig(engine=engine)
    all_pos = activation_patch(model, pairs, site="z", config=config)
    torch.testing.assert_close(all_pos.values, _tl(model, pairs, tlp.get_act_patch_attn_head_out_all_pos, metric),
                               atol=ATOL, rtol=0)
    by_pos = activation_patch(model, pairs, site="z", by_position=True, config=config)
    ref = _tl(model, pairs, tlp.get_act_patch_attn_head_out_by_pos, metric)  # [layer, pos, head]
    assert by_pos.grid_axes == ("layer", "head", "pos")
    torch.testing.assert_close(by_pos.values, ref.permute(0, 2, 1), atol=ATOL, rtol=0)


@pytest.mark.parametrize("engine", ENGINES)
def test_result_heads_match_transformer_lens(engine):
    model = la.tiny_model(n_layers=2, d_model=32, seed=3)
    model.set_use_attn_result(True)
    pairs = pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=40), n=3)
    metric, config = _tl_logit_diff(pairs), PatchConfig(engine=engine)
    ref = _tl(model, pairs, _generic("result", tlp.layer_head_vector_patch_setter, ("layer", "head")), metric)
    torch.testing.assert_close(activation_patch(model, pairs, site="result", config=config).values, ref,
                               atol=ATOL, rtol=0)
    ref = _tl(model, pairs, _generic("result", tlp.layer_pos_head_vector_patch_setter, ("layer", "pos", "head")), metric)
    res = activation_patch(model, pairs, site="result", by_position=True, config=config)
    torch.testing.assert_close(res.values, ref.permute(0, 2, 1), atol=ATOL, rtol=0)


@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out"])
def test_noising_matches_transformer_lens(model, pairs, site):
    ref = _tl(model, pairs, POSITION_ORACLES[site], _tl_logit_diff(pairs), direction="noise")
    res = activation_patch(model, pairs, site=site, direction="noise")
    torch.testing.assert_close(res.values, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("engine", ENGINES)
def test_ragged_batch_matches_transformer_lens_and_one_by_one(model, ragged, engine):
    config = PatchConfig(engine=engine)
    assert len(set(ragged.clean.lengths.tolist())) == 3
    for site in ("resid_pre", "mlp_out"):
        ref = _tl(model, ragged, POSITION_ORACLES[site], _tl_logit_diff(ragged))
        res = activation_patch(model, ragged, site=site, config=config)
        torch.testing.assert_close(res.values, ref, atol=ATOL, rtol=0)
        for i in range(len(ragged)):
            one = activation_patch(model, ragged[i : i + 1], site=site, config=config)
            width = one.values.shape[1]
            torch.testing.assert_close(res.per_example[:, :width, i], one.per_example[..., 0], atol=ATOL, rtol=0)
            # positions past a prompt's end cannot change its answer
            torch.testing.assert_close(res.per_example[:, width:, i],
                                       res.corrupted[i].expand_as(res.per_example[:, width:, i]), atol=ATOL, rtol=0)


def test_folded_layernorm_model(folded):
    pairs = pair_examples(folded, la.build_prompts("capitals", format="zero_shot", n=40), n=3)
    ref = _tl(folded, pairs, tlp.get_act_patch_resid_pre, _tl_logit_diff(pairs))
    torch.testing.assert_close(activation_patch(folded, pairs).values, ref, atol=ATOL, rtol=0)


def test_other_architectures():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    rms = la.tiny_model(n_layers=2, d_model=32, seed=4, normalization_type="RMS", act_fn="silu")
    pairs = pair_examples(rms, la.build_prompts("capitals", format="zero_shot", n=40), n=2)
    ref = _tl(rms, pairs, tlp.get_act_patch_attn_head_out_all_pos, _tl_logit_diff(pairs))
    res = activation_patch(rms, pairs, site="z")
    assert res.meta["engine"] == "fast"
    torch.testing.assert_close(res.values, ref, atol=ATOL, rtol=0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_vocab=50, n_ctx=16, act_fn="gelu",
                                  normalization_type="LN", positional_embedding_type="rotary", seed=5)
    rotary = HookedTransformer(cfg)
    clean = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    corrupt = clean.clone()
    corrupt[:, 2] = (corrupt[:, 2] + 1) % 50
    pairs = make_pairs(rotary, clean, corrupt, answers=[1, 2], corrupted_answers=[3, 4])
    ref = _tl(rotary, pairs, tlp.get_act_patch_resid_pre, _tl_logit_diff(pairs))
    res = activation_patch(rotary, pairs)
    assert res.meta["engine"] == "fast" and res.labels["pos"][0] == "0"  # rotary: the fast engine too
    torch.testing.assert_close(res.values, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["recovery", "answer_prob", "reciprocal_rank", "callable"])
def test_metrics_match_transformer_lens(model, pairs, name):
    rows, last = torch.arange(len(pairs)), pairs.read
    ca, ka = pairs.clean.answer_ids, pairs.corrupted.answer_ids

    def ld(read):
        return read[rows, ca] - read[rows, ka]

    with torch.no_grad():
        clean_ld = ld(model(pairs.clean.tokens)[rows, last]).mean()
        corrupt_ld = ld(model(pairs.corrupted.tokens)[rows, last]).mean()
    per_row = {
        "recovery": ld,
        "answer_prob": lambda r: r.softmax(-1)[rows, ca],
        "reciprocal_rank": lambda r: 1.0 / ((r > r[rows, ca][:, None]).sum(-1).float() + 1.0),
        "callable": lambda r: r[rows, ka] * 0.5 - r.logsumexp(-1),
    }[name]

    def tl_metric(logits):
        value = per_row(logits[rows, last]).mean()
        return (value - corrupt_ld) / (clean_ld - corrupt_ld) if name == "recovery" else value

    ref = _tl(model, pairs, tlp.get_act_patch_resid_pre, tl_metric)
    metric = per_row if name == "callable" else name
    res = activation_patch(model, pairs, metric=metric)
    torch.testing.assert_close(res.values, ref, atol=ATOL, rtol=0)
    if name == "recovery":  # per-example recovery normalises each pair by its own runs
        torch.testing.assert_close(res.clean.mean(), clean_ld, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("site", ["resid_pre", "resid_post", "attn_out", "z"])
def test_clean_into_clean_is_a_no_op(model, pairs, site):
    same = PromptPairs(pairs.clean, pairs.clean)
    metric = LogitDiff(answer="clean", baseline=pairs.corrupted.answer_ids)
    res = activation_patch(model, same, site=site, metric=metric)
    torch.testing.assert_close(res.per_example, res.clean.expand_as(res.per_example), atol=ATOL, rtol=0)
    torch.testing.assert_close(res.clean, res.corrupted)


def test_patching_the_differing_token_at_layer_0_restores_the_clean_run(model, pairs):
    (pos,) = {int(p) for p in (pairs.clean.tokens != pairs.corrupted.tokens).nonzero()[:, 1]}
    res = activation_patch(model, pairs, metric="recovery")
    assert res.values[0, pos] == pytest.approx(1.0, abs=ATOL)
    others = [p for p in range(res.values.shape[1]) if p != pos]
    assert res.values[0, others].abs().max() < ATOL  # identical tokens: nothing to patch


def test_batched_equals_one_by_one_and_chunking(model, pairs):
    full = activation_patch(model, pairs, site="z", by_position=True)
    tiny_chunks = activation_patch(model, pairs, site="z", by_position=True, config=PatchConfig(max_tokens=7))
    torch.testing.assert_close(full.per_example, tiny_chunks.per_example, atol=ATOL, rtol=0)
    for i in range(len(pairs)):
        one = activation_patch(model, pairs[i : i + 1], site="z", by_position=True)
        torch.testing.assert_close(full.per_example[..., i], one.per_example[..., 0], atol=ATOL, rtol=0)


def test_layer_and_position_subsets(model3):
    pairs = pair_examples(model3, la.build_prompts("capitals", format="zero_shot", n=40), n=3)
    full = activation_patch(model3, pairs, site="attn_out")
    part = activation_patch(model3, pairs, site="attn_out", layers=[2, 0], positions=[-1, 3])
    torch.testing.assert_close(part.values, full.values[[2, 0]][:, [full.values.shape[1] - 1, 3]], atol=ATOL, rtol=0)
    assert part.labels["layer"] == ["2", "0"]
    assert part.labels["pos"][1].startswith("3 ")


# --------------------------------------------------------------------------- attribution patching


def test_attribution_patch(model, pairs):
    exact = activation_patch(model, pairs, metric="recovery")
    approx = attribution_patch(model, pairs, metric="recovery")
    assert isinstance(approx, AttributionPatchResult) and approx.grid_axes == exact.grid_axes
    torch.testing.assert_close(approx.clean, exact.clean, atol=ATOL, rtol=0)
    corr = torch.corrcoef(torch.stack([exact.values.flatten(), approx.values.flatten()]))[0, 1]
    assert corr > 0.9
    same = (pairs.clean.tokens == pairs.corrupted.tokens).all(0)
    assert approx.values[0, same].abs().max() == 0  # nothing differs there at layer 0
    heads = attribution_patch(model, pairs, site="z", by_position=True, metric="answer_prob")
    assert heads.values.shape == (2, 4, pairs.clean.tokens.shape[1])
    torch.testing.assert_close(heads.values.sum(-1), attribution_patch(model, pairs, site="z", metric="answer_prob")
                               .values + heads.corrupted.mean() * (heads.values.shape[-1] - 1), atol=ATOL, rtol=0)
    with pytest.raises(la.LensarithError, match="piecewise constant"):
        attribution_patch(model, pairs, metric="reciprocal_rank")


# --------------------------------------------------------------------------- results and pictures


def test_result_save_load_and_plot(model, pairs, tmp_path):
    res = activation_patch(model, pairs, site="z")
    back = la.Result.load(res.save(tmp_path / "heads"))
    assert type(back) is PatchResult and back.labels == res.labels and back.meta["site"] == "z"
    torch.testing.assert_close(back.per_example, res.per_example)
    assert res.top(3)[0][0].keys() == {"layer", "head"}
    from lensarith.viz import heatmap

    png = tmp_path / "heads.png"
    heatmap(res, path=png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    by_pos = activation_patch(model, pairs, site="z", by_position=True, layers=[1])
    fig = heatmap(by_pos, path=tmp_path / "by_pos.png", title="heads by position")
    assert fig.axes and (tmp_path / "by_pos.png").stat().st_size > 1000
    att = la.Result.load(attribution_patch(model, pairs).save(tmp_path / "att"))
    assert type(att) is AttributionPatchResult


# --------------------------------------------------------------------------- pairs and bad input


def test_pair_examples_aligns_and_swaps_answers(model, pairs):
    assert torch.equal(pairs.clean.lengths, pairs.corrupted.lengths)
    assert (pairs.clean.answer_ids != pairs.corrupted.answer_ids).all()
    with pytest.raises(la.LensarithError, match="no pairs"):
        pair_examples(model, la.build_prompts("capitals", n=1))
    told = pair_examples(model, la.build_prompts("capitals", format="extractive", n=12),
                         la.build_prompts("capitals", format="counterfactual", n=12))
    assert torch.equal(told.clean.lengths, told.corrupted.lengths) and len(told) >= 3
    assert told.report["dropped_length_or_answer"] + told.report["dropped_tokens"] + len(told) == 12
    res = activation_patch(model, told[:2], site="mlp_out", metric="recovery")
    assert res.values.shape == (2, told.clean.tokens.shape[1])


def test_mismatched_lengths_say_both_lengths(model):
    with pytest.raises(la.LensarithError, match=r"same token length: pair 0 has 13 vs 16 tokens.*pair_examples"):
        make_pairs(model, ["Q: What is the capital of Poland?\nA:"],
                   ["Q: What is the capital of the state of Ohio?\nA:"])
    with pytest.raises(la.LensarithError, match="2 prompts but corrupted has 1"):
        make_pairs(model, ["Today I walk.", "Today I go."], ["Today I go."])


def test_bad_arguments(model, pairs):
    with pytest.raises(la.LensarithError, match="site='embed' is not patchable; valid sites: resid_pre"):
        activation_patch(model, pairs, site="embed")
    with pytest.raises(la.LensarithError, match="use_attn_result"):
        activation_patch(model, pairs, site="result")
    with pytest.raises(la.LensarithError, match="positions: 99 is out of range for prompts of 13 tokens"):
        activation_patch(model, pairs, positions=[99])
    with pytest.raises(la.LensarithError, match="layers=5 is out of range"):
        activation_patch(model, pairs, layers=[5])
    with pytest.raises(la.LensarithError, match="by_position=False applies to head sites"):
        activation_patch(model, pairs, site="mlp_out", by_position=False)
    with pytest.raises(la.LensarithError, match="direction must be 'denoise'"):
        activation_patch(model, pairs, direction="sideways")
    with pytest.raises(la.LensarithError, match="metric='bleu' is unknown"):
        activation_patch(model, pairs, metric="bleu")
    with pytest.raises(la.LensarithError, match="give corrupted prompts"):
        activation_patch(model, ["Today I walk."])
    with pytest.raises(la.LensarithError, match="carry no answers"):
        activation_patch(model, ["Today I walk."], ["Today I go."])
    with pytest.raises(la.LensarithError, match="recovery.*undefined"):
        activation_patch(model, PromptPairs(pairs.clean, pairs.clean), metric=Recovery(AnswerProb()))
    with pytest.raises(la.LensarithError, match="max_tokens must be a positive int"):
        PatchConfig(max_tokens=0)
    with pytest.raises(la.LensarithError, match="engine='fast' does not support this model.*hooks already"):
        with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda act, hook: None)]):
            activation_patch(model, pairs, config=PatchConfig(engine="fast"))
    assert isinstance(ReciprocalRank(), Metric)


def test_metric_with_wrong_shape(model, pairs):
    with pytest.raises(la.LensarithError, match=r"one number per example, shape \(4,\).*got shape \(\)"):
        activation_patch(model, pairs, metric=lambda logits: logits[:, 0].mean())
    with pytest.raises(la.LensarithError, match=r"got shape \(4, 2\)"):
        activation_patch(model, pairs, metric=lambda logits: logits[:, :2])
    assert hooks_left(model) == 0


# --------------------------------------------------------------------------- hooks are always removed


@pytest.mark.parametrize("engine", ENGINES)
def test_metric_raising_inside_a_sweep_leaves_no_hooks(model, pairs, engine):
    calls = []

    def flaky(logits):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return logits[:, 0]

    with pytest.raises(la.LensarithError, match="raised RuntimeError.*boom"):
        activation_patch(model, pairs, metric=flaky, config=PatchConfig(engine=engine))
    assert hooks_left(model) == 0


def test_exception_in_a_patched_forward_keeps_only_the_users_hook(model, pairs):
    seen = []

    def user_hook(act, hook):
        seen.append(act.shape[0])
        if act.shape[0] > len(pairs):  # a batch of patched sites
            raise RuntimeError("user hook failed")

    model.blocks[1].hook_resid_post.add_hook(user_hook)
    try:
        assert hooks_left(model) == 1
        with pytest.raises(RuntimeError, match="user hook failed"):
            activation_patch(model, pairs, site="mlp_out")
        assert hooks_left(model) == 1 and len(model.blocks[1].hook_resid_post.fwd_hooks) == 1
        # with a harmless user hook the sweep runs on the hooks engine and still matches
        model.reset_hooks()
        model.blocks[1].hook_resid_post.add_hook(lambda act, hook: None)
        res = activation_patch(model, pairs, site="mlp_out")
        assert res.meta["engine"] == "hooks" and hooks_left(model) == 1
    finally:
        model.reset_hooks()
    torch.testing.assert_close(res.values, activation_patch(model, pairs, site="mlp_out").values, atol=ATOL, rtol=0)


def test_recipe_registry(model, pairs):
    res = la.run_recipe("activation_patch", model, pairs, site="resid_mid", layers=[0])
    assert isinstance(res, PatchResult) and res.values.shape[0] == 1
    assert "attribution_patch" in la.list_recipes()
