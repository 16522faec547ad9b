"""The fast patching engine on every architecture family: TransformerLens parity at every site.

Tiny random ``HookedTransformer`` s of each family (GPT-2, GPT-J, NeoX, BLOOM, Llama and
variants: norms, soft caps, no biases, attention-only), every site, against
``transformer_lens.patching`` within 1e-4; the engine must run (``engine="fast"`` raises rather
than fall back), and it refuses clearly what it cannot compute.
"""

from __future__ import annotations

import pytest
import torch
import transformer_lens.patching as tlp
from transformer_lens import HookedTransformer, HookedTransformerConfig

import lensarith as la
from lensarith.patching import PatchConfig, activation_patch, make_pairs
from lensarith.patching._fast import FastEngine, fast_unsupported

ATOL = 1e-4
FAST = PatchConfig(engine="fast")

#: family -> HookedTransformerConfig overrides (d_head 8; rotary_dim < d_head where partial)
FAMILIES = {
    "gpt2": dict(act_fn="gelu_new", normalization_type="LN"),
    "gptj": dict(act_fn="gelu_new", normalization_type="LN", positional_embedding_type="rotary", rotary_dim=4,
                 rotary_adjacent_pairs=True, parallel_attn_mlp=True),
    "neox": dict(act_fn="gelu", normalization_type="LN", positional_embedding_type="rotary", rotary_dim=4,
                 parallel_attn_mlp=True),
    "bloom": dict(act_fn="gelu_fast", normalization_type="LN", positional_embedding_type="alibi"),
    "llama": dict(act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8,
                  gated_mlp=True, n_key_value_heads=2, final_rms=True),
    "gemma-like": dict(act_fn="gelu_pytorch_tanh", normalization_type="RMSPre", positional_embedding_type="rotary",
                       rotary_dim=8, gated_mlp=True, n_key_value_heads=1, attn_scores_soft_cap=4.0,
                       output_logits_soft_cap=6.0),
    # Gemma 3's structure as TransformerLens 3.9 builds google/gemma-3-270m (see ``gemma3_config``), shrunk:
    # one KV head, head dim larger than d_model / n_heads, norms after attention and MLP, per-head QK
    # norms, sliding-window layers (window 3, so it bites on 8 tokens) with their own rotary base
    "gemma3": dict(act_fn="gelu_pytorch_tanh", normalization_type="RMS", positional_embedding_type="rotary",
                   rotary_dim=16, d_head=16, gated_mlp=True, n_key_value_heads=1, final_rms=True,
                   use_normalization_before_and_after=True, use_qk_norm=True, use_local_attn=True, window_size=3,
                   attn_types=["local", "global", "local"], rotary_base=1000000, rotary_base_local=10000,
                   use_attn_scale=True, attn_scale=4.0),
    # SmolLM2-135M (Llama): 9 heads over 3 key/value heads, full rotary, tied-free random weights
    "smollm2": dict(act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8,
                    n_heads=9, d_model=36, gated_mlp=True, n_key_value_heads=3, final_rms=True, rotary_base=100000),
    "lnpre-relu": dict(act_fn="relu", normalization_type="LNPre", scale_attn_by_inverse_layer_idx=True),
    "attn-only": dict(normalization_type="LN", attn_only=True, positional_embedding_type="rotary", rotary_dim=6),
}
#: families whose biases stay TransformerLens's zeros (models without biases)
NO_BIAS = ("llama", "gemma-like", "gemma3", "smollm2")


def build(family: str) -> HookedTransformer:
    spec = dict(n_layers=3, d_model=32, n_heads=4, d_head=8, d_mlp=48, d_vocab=40, n_ctx=16, seed=11)
    cfg = HookedTransformerConfig(**{**spec, **FAMILIES[family]})
    model = HookedTransformer(cfg)
    model.eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            last = name.split(".")[-1]
            if family not in NO_BIAS and last.lstrip("_").startswith("b_"):
                p.normal_(0, 0.3, generator=gen)  # biases TransformerLens initialises to zero
            if last in ("W_Q", "W_K", "_W_K"):
                p.mul_(3.0)  # sharper attention than the initialisation's near-uniform patterns
            if last == "w" and family == "gemma3":
                p.normal_(1.0, 0.3, generator=gen)  # norm weights TransformerLens initialises to one
    return model


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    torch.set_num_threads(1)
    model = build(request.param)
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 40, (3, 8), generator=gen)
    corrupt = clean.clone()
    corrupt[:, 2] = (corrupt[:, 2] + 1) % 40
    corrupt[:, 5] = (corrupt[:, 5] + 7) % 40
    answers, wrong = [1, 2, 3], [4, 5, 6]
    pairs = make_pairs(model, clean, corrupt, answers=answers, corrupted_answers=wrong)
    rows = torch.arange(3)

    def metric(logits):  # TransformerLens's side: mean logit difference at the last position
        read = logits[:, -1]
        return (read[rows, torch.tensor(answers)] - read[rows, torch.tensor(wrong)]).mean()

    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    return request.param, model, pairs, corrupt, cache, metric


def _generic(name, setter, axes=("layer", "pos")):
    def run(model, tokens, cache, metric):
        return tlp.generic_activation_patch(model, tokens, cache, metric, setter, name, index_axis_names=axes)
    return run


ORACLES = {
    ("resid_pre", False): tlp.get_act_patch_resid_pre,
    ("resid_mid", False): tlp.get_act_patch_resid_mid,
    ("resid_post", False): _generic("resid_post", tlp.layer_pos_patch_setter),
    ("attn_out", False): tlp.get_act_patch_attn_out,
    ("mlp_out", False): tlp.get_act_patch_mlp_out,
    ("z", False): tlp.get_act_patch_attn_head_out_all_pos,
    ("z", True): lambda *a: tlp.get_act_patch_attn_head_out_by_pos(*a).permute(0, 2, 1),
}


@pytest.mark.parametrize("site,by_pos", list(ORACLES), ids=[f"{s}{'_by_pos' if b else ''}" for s, b in ORACLES])
def test_every_family_and_site_matches_transformer_lens(family, site, by_pos):
    name, model, pairs, corrupt, cache, metric = family
    if site == "resid_mid" and model.cfg.parallel_attn_mlp:
        with pytest.raises(la.LensarithError, match="resid_mid. does not exist on this model: its attention and MLP run in parallel"):
            activation_patch(model, pairs, site=site, config=FAST)
        return
    if site in ("mlp_out", "resid_mid") and model.cfg.attn_only:
        with pytest.raises(la.LensarithError, match="attention-only models have no MLP sites"):
            activation_patch(model, pairs, site=site, config=FAST)
        return
    assert fast_unsupported(model) is None
    with torch.no_grad():
        ref = ORACLES[site, by_pos](model, corrupt, cache, metric)
    res = activation_patch(model, pairs, site=site, by_position=True if by_pos else None, config=FAST)
    assert res.meta["engine"] == "fast"  # engine="fast" never falls back silently
    assert float(ref.std()) > 1e-3, "the oracle's grid is flat: the test would not see a wrong engine"
    torch.testing.assert_close(res.values, ref, atol=ATOL, rtol=0)
    auto = activation_patch(model, pairs, site=site, by_position=True if by_pos else None)
    assert auto.meta["engine"] == "fast"


@pytest.mark.parametrize("name", ["gptj", "llama"])
def test_tiny_chunks_and_the_result_site(name):
    model = build(name)
    model.set_use_attn_result(True)
    clean = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(1))
    corrupt = clean.flip(1)
    pairs = make_pairs(model, clean, corrupt, answers=[1, 2], corrupted_answers=[3, 4])
    for site in ("resid_pre", "result"):
        big = activation_patch(model, pairs, site=site, by_position=True if site == "result" else None, config=FAST)
        small = activation_patch(model, pairs, site=site, by_position=True if site == "result" else None,
                                 config=PatchConfig(engine="fast", max_tokens=5))
        hooks = activation_patch(model, pairs, site=site, by_position=True if site == "result" else None,
                                 config=PatchConfig(engine="hooks"))
        torch.testing.assert_close(big.per_example, small.per_example, atol=ATOL, rtol=0)
        torch.testing.assert_close(big.per_example, hooks.per_example, atol=ATOL, rtol=0)


def test_weights_are_flattened_for_one_layer_at_a_time():
    model = build("llama")
    clean = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(1))
    pairs = make_pairs(model, clean, clean.flip(1), answers=[1, 2], corrupted_answers=[3, 4])
    seen = []
    real = FastEngine.weights

    def spy(self, layer):
        out = real(self, layer)
        seen.append(self._w[0])
        assert out["W_kv"].shape[1] == 2 * 2 * 8  # two key/value heads, not expanded to four
        return out

    FastEngine.weights = spy
    try:
        activation_patch(model, pairs, config=FAST)
    finally:
        FastEngine.weights = real
    assert sorted(set(seen)) == [0, 1, 2]


def test_fast_refuses_what_it_cannot_compute_and_says_why():
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=48, d_vocab=40, n_ctx=16,
                                  act_fn="gelu", normalization_type="LN", positional_embedding_type="shortformer",
                                  seed=2)
    model = HookedTransformer(cfg)
    clean = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(1))
    pairs = make_pairs(model, clean, clean.flip(1), answers=[1, 2], corrupted_answers=[3, 4])
    assert fast_unsupported(model) == "shortformer positional embeddings"
    with pytest.raises(la.LensarithError, match=r"engine='fast' does not support this model \(shortformer positional"):
        activation_patch(model, pairs, config=FAST)
    assert activation_patch(model, pairs).meta["engine"] == "hooks"  # 'auto' says which engine ran


def test_the_gemma3_family_has_the_structure_transformer_lens_builds_for_gemma_3_270m():
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    real = get_pretrained_model_config("google/gemma-3-270m", hf_cfg={}, device="cpu")
    tiny = build("gemma3").cfg
    for key in ("act_fn", "normalization_type", "positional_embedding_type", "gated_mlp", "n_key_value_heads",
                "final_rms", "use_normalization_before_and_after", "use_qk_norm", "use_local_attn", "rotary_base",
                "rotary_base_local", "rotary_adjacent_pairs", "use_attn_scale"):
        assert getattr(tiny, key) == getattr(real, key), key
    assert real.rotary_dim == real.d_head and tiny.rotary_dim == tiny.d_head
    assert real.n_heads * real.d_head != real.d_model and tiny.n_heads * tiny.d_head != tiny.d_model
    assert set(real.attn_types) == set(tiny.attn_types) == {"local", "global"}


def test_attribution_methods_refuse_gemma3_blocks_the_patching_engine_runs():
    from lensarith.patching._atp import method_unsupported

    model = build("gemma3")
    assert fast_unsupported(model) is None
    why = method_unsupported(model)
    assert why is not None and "norms after attention and MLP" in why and "sliding-window layers" in why
