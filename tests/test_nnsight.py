"""The nnsight backend (``load_model(..., backend="nnsight")``, ``lensarith.models.wrap_nnsight``).

- The organism exported as a Hugging Face ``GPT2LMHeadModel`` (``to_hf_gpt2``) computes the
  HookedTransformer's logits.
- Parity: every forward-only recipe family of ``tests/golden/backends.py`` on the organism and on
  the tiny random GPT-2, GPT-NeoX, GPT-J, BLOOM and Llama folders, through nnsight, equals the goldens
  (TransformerLens 3.9 on the same weights) within 1e-4.
- Identities on the same models (decompositions sum to the residual, DLA to the logit difference).
- Few round trips: a patching sweep, an ablation curve and a layer search count their traces in
  ``meta["traces"]``; a sweep of L x P sites costs far fewer traces than sites.
- Clear errors: sites an architecture lacks, gradient recipes, bad arguments.
- The remote path (hooks run server-side, what they saw replayed here), with the trace run
  locally: no test needs the network.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import pytest
import torch

# nnsight is not imported here: imported before beartype (which jaxtyping's pytest hook loads with
# lensarith), it breaks beartype's import ("unhashable type: 'instancemethod'")
if importlib.util.find_spec("nnsight") is None:
    if os.environ.get("LENSARITH_REQUIRE_NNSIGHT"):  # `make test` installs the extra: its absence is a failure
        pytest.fail("nnsight is not installed but LENSARITH_REQUIRE_NNSIGHT is set", pytrace=False)
    pytest.skip("nnsight is not installed (pip install 'lensarith[nnsight]')", allow_module_level=True)

import lensarith as la  # noqa: E402
from lensarith import LensarithError  # noqa: E402
from lensarith.core.backends import backend_of  # noqa: E402
from lensarith.models import to_hf_gpt2, wrap_nnsight  # noqa: E402
from lensarith.models._tokenizer import load_tokenizer  # noqa: E402
from lensarith.models._version import tl_major  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "golden"))
sys.path.insert(0, str(Path(__file__).parent))
import backends as B  # noqa: E402

TOL = 1e-4
HF = ("gpt2", "neox", "gptj", "bloom", "llama")

pytestmark = pytest.mark.skipif(tl_major() >= 4, reason="the goldens' TransformerLens 3.9 path")


@pytest.fixture(scope="module")
def organism():
    torch.set_num_threads(1)
    return la.load_model("organism")


@pytest.fixture(scope="module")
def nn_organism(organism):
    return la.load_model("organism", backend="nnsight")


def _hf(name: str):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(B.DIR / name), attn_implementation="eager").eval()
    return wrap_nnsight(hf, tokenizer=load_tokenizer(B.DIR / name), name=name)


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    return load_file(str(B.FILE))


def _compare(fresh: dict, golden: dict, name: str) -> tuple[list[str], dict[str, float]]:
    problems, diffs = [], {}
    keys = [k for k in golden if k.startswith(name + "/") and not k.split("/")[1].startswith(("attribution", "patch_fast"))]
    assert keys
    for key in keys:
        want, got = golden[key], fresh.get(key)
        if got is None or want.shape != got.shape:
            problems.append(f"{key}: missing or shape {None if got is None else tuple(got.shape)}")
            continue
        recipe = key.split("/")[1]
        finite = torch.isfinite(want.float())
        assert torch.equal(finite, torch.isfinite(got.float())), key
        diff = float((want.float()[finite] - got.float()[finite]).abs().max()) if finite.any() else 0.0
        diffs[recipe] = max(diffs.get(recipe, 0.0), diff)
        if diff > (0 if not want.is_floating_point() else TOL):
            problems.append(f"{key}: max abs diff {diff:.3g}")
    return problems, diffs


# --------------------------------------------------------------------------- the exported organism


def test_the_organism_as_gpt2_computes_the_same_logits(organism):
    hf = to_hf_gpt2(organism)
    assert type(hf).__name__ == "GPT2LMHeadModel"
    assert torch.equal(hf.lm_head.bias, organism.b_U) and hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr()
    toks = torch.randint(0, organism.cfg.d_vocab, (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((organism(toks) - hf(toks).logits).abs().max())
    assert diff < 1e-4, diff


def test_to_hf_gpt2_refuses_other_shapes():
    rotary = la.tiny_model(n_layers=1, d_model=16, n_heads=2, seed=0, positional_embedding_type="rotary") \
        if "positional_embedding_type" in la.tiny_model.__code__.co_varnames else None
    if rotary is None:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        rotary = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8,
                                                           d_vocab=10, act_fn="gelu_new",
                                                           positional_embedding_type="rotary"))
    with pytest.raises(LensarithError, match="positional_embedding_type='rotary'"):
        to_hf_gpt2(rotary)


# --------------------------------------------------------------------------- parity with TransformerLens 3.9


@pytest.mark.parametrize("name", ("organism",) + HF)
def test_forward_recipes_match_transformer_lens(name, golden, nn_organism):
    model = nn_organism if name == "organism" else _hf(name)
    backend = backend_of(model)
    assert backend.name.startswith("nnsight-")
    fresh = B.one_model(model, name, patch_engines=["hooks"], gradients=False)
    problems, diffs = _compare(fresh, golden, name)
    print(f"\n{name} via nnsight: " + ", ".join(f"{k} {v:.1e}" for k, v in sorted(diffs.items())))
    assert not problems, problems
    assert not backend.has_user_hooks(), "a trace left hooks on the model"


@pytest.mark.parametrize("name", HF)
def test_decompositions_sum_to_the_residual(name):
    model = _hf(name)
    batch = la.tokenize(model, B.prompts())
    for gran in ("layer", "head", "neuron"):
        assert la.decompose_resid(model, batch, granularity=gran).relative_error() < 1e-4, (name, gran)
        dla = la.direct_logit_attribution(model, batch, baselines="argument", granularity=gran)
        assert float((dla.attributions.sum(0) - dla.total).abs().max()) < 1e-4, (name, gran)


def test_loading_a_hugging_face_folder_with_the_nnsight_backend():
    model = la.load_model(B.DIR / "bloom", backend="nnsight")
    assert type(model).__name__ == "NNsightModel" and model.architecture == "bloom"
    tl = la.load_model(B.DIR / "bloom")
    batch = la.tokenize(tl, B.prompts())
    assert torch.equal(batch.tokens, la.tokenize(model, B.prompts()).tokens)
    a, b = la.run_with_interventions(tl, batch), la.run_with_interventions(model, batch)
    assert float((a - b).abs().max()) < 1e-4


def test_a_device_map_passes_through_to_hugging_face(organism, monkeypatch):
    """``device_map`` reaches ``from_pretrained`` (a folder) or accelerate's dispatch (the organism);
    a CPU machine has one map to give, so this checks the pass-through, not a split."""
    from transformers import AutoModelForCausalLM

    seen, real = [], AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("device_map"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    llama = la.load_model(B.DIR / "llama", backend="nnsight", device_map={"": "cpu"})
    assert seen == [{"": "cpu"}]
    ref = _hf("llama")
    batch = la.tokenize(ref, B.prompts())
    assert torch.equal(la.run_with_interventions(llama, batch), la.run_with_interventions(ref, batch))
    split = la.load_model("organism", backend="nnsight", device_map={"": "cpu"})
    batch = la.tokenize(organism, B.prompts())
    assert float((la.run_with_interventions(split, batch) - la.run_with_interventions(organism, batch)).abs().max()) < 1e-4


@pytest.mark.parametrize("name", ("organism",) + HF)
def test_attention_sites_are_read_and_written_as_on_transformer_lens(name, nn_organism):
    """Patterns, q / k / v (fused projections in GPT-2 and BLOOM, grouped k / v heads in Llama)."""
    tl, model = B.load(name), (nn_organism if name == "organism" else _hf(name))
    batch = la.tokenize(tl, B.prompts())
    sites = [la.Site("pattern", 1), la.Site("pattern", 0, head=2)] + [la.Site(k, 1, "last") for k in "qkv"]
    a, b = la.collect(tl, batch, sites), la.collect(model, batch, sites)
    for s in sites:
        assert a[s].shape == b[s].shape and float((a[s] - b[s]).abs().max()) < 1e-4, s
    v = torch.randn(tl.cfg.d_head, generator=torch.Generator().manual_seed(0))
    ivs = [la.Replace(la.Site("v", 0, -1, head=1), v), la.Add(la.Site("q", 1, "last", head=0), v)]
    diff = la.run_with_interventions(tl, batch, ivs) - la.run_with_interventions(model, batch, ivs)
    assert float(diff.abs().max()) < 1e-4


def test_interventions_at_resid_mid_and_embeddings_match(organism, nn_organism):
    batch = la.tokenize(organism, B.prompts())
    v = torch.randn(organism.cfg.d_model, generator=torch.Generator().manual_seed(1))
    for ivs in ([la.Add(la.Site("resid_mid", 3, "last"), v, scale=2.0)], [la.Ablate(la.Site("pos_embed"))],
                [la.Replace(la.Site("mlp_out", 6, -1), v)], [la.Ablate(la.Site("z", 2, head=1))]):
        a, b = la.run_with_interventions(organism, batch, ivs), la.run_with_interventions(nn_organism, batch, ivs)
        assert float((a - b).abs().max()) < 1e-4, ivs


# --------------------------------------------------------------------------- few round trips


def test_a_patching_sweep_batches_its_sites_into_few_traces(organism, nn_organism):
    pairs = la.pair_examples(organism, la.build_prompts("capitals", format="zero_shot", n=40), n=4)
    res = la.activation_patch(nn_organism, pairs, site="resid_pre")
    ref = la.activation_patch(organism, pairs, site="resid_pre")
    assert float((res.values - ref.values).abs().max()) < 1e-4
    sites = res.values.numel()
    rows = sites * len(pairs) * pairs.clean.tokens.shape[1]
    # two unpatched runs, then one trace per chunk of the token budget, whatever the layer
    assert res.meta["traces"] == 2 + math.ceil(rows / la.PatchConfig().max_tokens)
    assert res.meta["traces"] < organism.cfg.n_layers < sites
    small = la.activation_patch(nn_organism, pairs, site="resid_pre", config=la.PatchConfig(max_tokens=rows // 8))
    assert small.meta["traces"] > res.meta["traces"] and torch.allclose(small.values, res.values, atol=1e-5)
    assert "traces" not in ref.meta


def test_ablation_and_layer_search_record_their_traces(organism, nn_organism):
    from lensarith.ablation import ffn_ablation
    from lensarith.vectors import SearchConfig, find_layers

    got = ffn_ablation(nn_organism, "capitals", mode="zero", n=12, steps=4)
    ref = ffn_ablation(organism, "capitals", mode="zero", n=12, steps=4)
    assert torch.equal(got.tensors["accuracy"], ref.tensors["accuracy"])
    assert 1 <= got.meta["traces"] <= 2  # the whole curve: the steps are groups on the batch axis
    s = find_layers(nn_organism, "capitals", config=SearchConfig(n_contexts=8))
    s0 = find_layers(organism, "capitals", config=SearchConfig(n_contexts=8))
    assert (s.meta["application_layer"], s.meta["start_layer"]) == (s0.meta["application_layer"], s0.meta["start_layer"])
    assert s.meta["traces"] > 0


# --------------------------------------------------------------------------- errors


def test_a_site_the_architecture_lacks_is_named_with_the_model():
    gptj = _hf("gptj")
    batch = la.tokenize(gptj, B.prompts())
    with pytest.raises(LensarithError, match=r"hook_resid_mid.*GPT-J.*parallel"):
        la.collect(gptj, batch, [la.Site("resid_mid", 0, "last")])
    with pytest.raises(LensarithError, match=r"hook_resid_mid.*GPTJForCausalLM"):
        la.run_with_interventions(gptj, batch, [la.Ablate(la.Site("resid_mid", 1))])
    with pytest.raises(LensarithError, match=r"ln_final.hook_scale.*not a site the nnsight backend maps"):
        la.collect(gptj, batch, [la.Site("ln_final_scale")])
    with pytest.raises(LensarithError, match=r"hook_pattern is read-only"):
        la.run_with_interventions(gptj, batch, [la.Ablate(la.Site("pattern", 0))])
    with pytest.raises(LensarithError, match=r"hook_pos_embed.*GPT-J has no learned position"):
        with backend_of(gptj).hooks([("hook_pos_embed", lambda act, hook: None)]):
            pass  # pragma: no cover


def test_gradient_recipes_say_they_run_locally(organism, nn_organism):
    from lensarith.vectors import SearchConfig, find_layers

    pairs = la.pair_examples(organism, la.build_prompts("capitals", format="zero_shot", n=40), n=2)
    with pytest.raises(LensarithError, match="gradients.*HookedTransformer or TransformerBridge"):
        la.attribution_patch(nn_organism, pairs, site="resid_pre")
    with pytest.raises(LensarithError, match="gradient screen"):
        find_layers(nn_organism, "capitals", config=SearchConfig(n_contexts=4, screen=2))


def test_load_model_checks_backend_placement_and_remote():
    with pytest.raises(LensarithError, match="backend must be"):
        la.load_model("organism", backend="vllm")
    with pytest.raises(LensarithError, match="pass backend='nnsight'"):
        la.load_model("organism", remote=True)
    with pytest.raises(LensarithError, match="not both"):
        la.load_model("organism", device="cpu", device_map="auto")
    with pytest.raises(LensarithError, match="TransformerLens 4"):
        la.load_model("organism", device_map="auto")
    with pytest.raises(LensarithError, match="NDIF hosts"):
        la.load_model("organism", backend="nnsight", remote=True)


# --------------------------------------------------------------------------- the remote path, offline


def test_remote_traces_replay_the_hooks_here(organism, monkeypatch):
    """``remote=True`` passes through to ``lm.trace``; hooks run in the trace ("server-side") and
    are replayed here on the values they saw. The trace runs locally (``remote`` is dropped) with
    stand-ins for the server's copies of the hooks, so only the replay can fill the captures here."""
    from lensarith.core.backends import _nnsight as N

    model = la.load_model("organism", backend="nnsight")
    batch = la.tokenize(organism, B.prompts())
    sites = [la.Site("mlp_out", 5, "last"), la.Site("z", 2, "last"), la.Site("resid_post", 7, "last")]
    want = la.collect(model, batch, sites)
    lm, calls, replays = model.lm, [], []
    real_trace, real_replay, real_interleave = lm.trace, N.replay, N._interleave

    def server(lm_, sm, plan, **kwargs):
        from cloudpickle.cloudpickle import _PICKLE_BY_VALUE_MODULES

        assert "lensarith" in _PICKLE_BY_VALUE_MODULES  # shipped by value with a remote request
        # the server's hooks are other objects than ours: here captures that record nothing (a
        # capture leaves the activation as it is), so only the replay can fill ours
        shadow = {name: [lambda act, hook: None for _ in fns] for name, fns in plan.items()}
        return real_interleave(lm_, sm, shadow, **kwargs)

    def trace(*args, **kwargs):
        calls.append(kwargs.pop("remote", None))
        return real_trace(*args, **kwargs)

    def replay(plan, seen):
        replays.append(len(seen))
        real_replay(plan, seen)

    monkeypatch.setattr(lm, "trace", trace)
    monkeypatch.setattr(N, "replay", replay)
    monkeypatch.setattr(N, "_interleave", server)
    model.remote = True
    got = la.collect(model, batch, sites)
    assert calls == [True] and replays == [len(sites)]
    for s in sites:
        assert torch.equal(got[s], want[s])
    from cloudpickle.cloudpickle import _PICKLE_BY_VALUE_MODULES

    assert "lensarith" not in _PICKLE_BY_VALUE_MODULES  # registered for the remote trace only
    monkeypatch.setattr(N, "replay", lambda plan, seen: None)
    with pytest.raises(Exception):  # without the replay nothing lands here
        la.collect(model, batch, sites)


def test_reproduce_small_through_nnsight_matches_the_3_9_golden(tmp_path):
    """The paper's figures on the organism (``reproduce --small``) through nnsight: every number of
    the 3.9 golden within 1e-4 (its steps are forward-only)."""
    import json

    import recipes
    from test_backends import _numbers

    from lensarith.paper.reproduce import ReproduceConfig, reproduce

    from lensarith.tasks import scoring_rule

    model = la.load_model("organism", backend="nnsight")
    with scoring_rule(recipes.FROZEN_RULE):  # the rule the golden was frozen with
        summary = reproduce(model, tmp_path, ReproduceConfig.small_run(), model_name="organism", progress=False)
    want = _numbers(json.loads((recipes.HERE / "reproduce_small.json").read_text()))
    got = _numbers(json.loads(json.dumps({"figures": summary["figures"], "layers": summary["layers"]}, default=str)))
    assert set(want) <= set(got), sorted(set(want) - set(got))[:10]
    bad = [k for k in want if (abs(want[k] - got[k]) > TOL if isinstance(want[k], float) else want[k] != got[k])]
    assert not bad, [(k, want[k], got[k]) for k in bad[:5]]
    assert backend_of(model).traces > 0
