"""Backend parity: every recipe family on TransformerLens 3.9 (``HookedTransformer``) and 4.x
(``TransformerBridge``), for the organism, a tiny model and tiny Hugging Face models of five
families (GPT-2; GPT-NeoX and GPT-J: rotary + parallel; BLOOM: ALiBi; Llama: RMSNorm + gated
MLP + grouped-query attention).

The goldens (``tests/golden/backends/``, written by ``tests/golden/backends.py`` on 3.9) must be
recomputed exactly on 3.9 and within ``TOL`` on 4.x. Identity tests (decomposition sums to the
residual, DLA sums to the logit difference, clean->clean patching changes nothing, batched
equals one by one) and the backend's own contract run on whichever version is installed:
``make test`` runs this file on 3.9, ``make test-tl4`` on 4.3.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lensarith as la
from lensarith import ModelNotAvailableError
from lensarith._paths import data_dir
from lensarith.core.backends import backend_of
from lensarith.core.run import can_resume, has_hooks
from lensarith.models import config_hash
from lensarith.models._version import tl_major

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import backends as B  # noqa: E402

#: largest absolute difference allowed on TransformerLens 4.x (3.9 must reproduce the goldens exactly)
TOL = 1e-4
ON_4 = tl_major() >= 4
#: integer results (ranks, token ids) that may move on 4.x only where two logits tie within TOL
INTEGER_KEYS = ("rank_answer", "rank_argument", "tokens")


def golden_file() -> Path:
    """The goldens for this CPU's kernels: torch's AVX2 and AVX-512 kernels round differently, so the
    3.9 goldens were recomputed once per capability from the code that froze them (commit 56a0f55,
    ``python tests/golden/backends.py --goldens``): ``goldens-AVX2.safetensors`` beside the original."""
    own = B.DIR / f"goldens-{torch.backends.cpu.get_cpu_capability()}.safetensors"
    return own if own.is_file() else B.FILE


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(golden_file()))


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads(B.META.read_text())


@pytest.fixture(scope="module", params=B.MODELS)
def loaded(request):
    torch.set_num_threads(1)
    return request.param, B.load(request.param)


def compare(fresh: dict[str, torch.Tensor], golden: dict[str, torch.Tensor], name: str) -> tuple[list[str], dict]:
    """(problems, {recipe: max abs diff}) of ``fresh`` against the goldens of model ``name``."""
    problems, diffs = [], {}
    for key in sorted(k for k in golden if k.startswith(name + "/")):
        if key not in fresh:
            problems.append(f"{key}: not recomputed")
            continue
        want, got = golden[key], fresh[key]
        recipe = key.split("/")[1]
        if want.shape != got.shape:
            problems.append(f"{key}: shape {tuple(got.shape)} vs golden {tuple(want.shape)}")
            continue
        if not want.is_floating_point():
            diff = float((want.long() - got.long()).abs().max()) if want.numel() else 0.0
            diffs[recipe] = max(diffs.get(recipe, 0.0), diff)
            if diff:
                problems.append(f"{key}: integers differ by up to {diff:g}")
            continue
        finite = torch.isfinite(want)
        if not torch.equal(finite, torch.isfinite(got)):
            problems.append(f"{key}: non-finite values differ")
            continue
        diff = float((want[finite] - got[finite]).abs().max()) if finite.any() else 0.0
        diffs[recipe] = max(diffs.get(recipe, 0.0), diff)
        if (diff > TOL) if ON_4 else not torch.equal(want.nan_to_num(), got.nan_to_num()):
            problems.append(f"{key}: max abs diff {diff:.3g}")
    return problems, diffs


def test_the_goldens_cover_every_model_and_recipe_family(golden, meta):
    assert set(meta) == set(B.MODELS)
    families = {k.split("/")[1].split("_")[0] for k in golden}
    assert {"lens", "decompose", "dla", "patch", "attribution", "o", "transplant", "ablation"} <= families
    for name in B.MODELS:
        for site in B.PATCH_SITES:
            assert f"{name}/patch_hooks_{site}/values" in golden
    assert meta["organism"]["engines"] == meta["gpt2"]["engines"] == ["hooks", "fast"]


def test_recipes_match_the_goldens(loaded, golden, meta):
    name, model = loaded
    backend = backend_of(model)
    assert backend.name.split("-")[0] == ("bridge" if ON_4 else "hooked")
    assert config_hash(model) == meta[name]["config_hash"], "provenance differs between the backends"
    engines, recorded = B.engines(model), meta[name]["engines"]
    assert set(recorded) <= set(engines), f"patching engines {engines} vs {recorded} on 3.9"
    fresh = B.one_model(model, name, patch_engines=engines)
    problems, diffs = compare(fresh, golden, name)
    for engine in sorted(set(engines) - set(recorded)):  # an engine added since: it equals the recorded hooks sweeps
        for site in B.PATCH_SITES:
            for part in ("values", "per_example"):
                want, got = golden[f"{name}/patch_hooks_{site}/{part}"], fresh[f"{name}/patch_{engine}_{site}/{part}"]
                diff = float((want - got).abs().nan_to_num(float("inf")).max())
                diffs[f"patch_{engine}"] = max(diffs.get(f"patch_{engine}", 0.0), diff)
                if diff > TOL:
                    problems.append(f"patch_{engine}_{site}/{part} vs the hooks golden: max abs diff {diff:.3g}")
    print(f"\n{name} on {backend.name}: " + ", ".join(f"{k} {v:.1e}" for k, v in sorted(diffs.items())))
    assert not problems, problems


# --------------------------------------------------------------------------- identities on this backend


def test_decomposition_sums_to_the_residual_and_dla_to_the_logit_difference(loaded):
    name, model = loaded
    batch = la.tokenize(model, B.prompts())
    for gran in ("layer", "head", "neuron"):
        dec = la.decompose_resid(model, batch, granularity=gran)
        assert dec.relative_error() < 1e-4, (name, gran)
        dla = la.direct_logit_attribution(model, batch, baselines="argument", granularity=gran)
        assert float((dla.attributions.sum(0) - dla.total).abs().max()) < 1e-4, (name, gran)
    logits = la.run_with_interventions(model, batch)
    answer, argument = batch.answer_ids, batch.argument_ids
    rows = torch.arange(len(batch))
    want = logits[rows, answer] - logits[rows, argument]
    assert float((dla.total - want).abs().max()) < 1e-4, name


def test_clean_into_clean_patching_changes_nothing(loaded):
    name, model = loaded
    from lensarith.patching import PatchConfig, activation_patch, make_pairs

    batch = la.tokenize(model, B.prompts()[:3])
    answers = batch.answer_ids.tolist()
    others = batch.argument_ids.tolist()
    pairs = make_pairs(model, batch, batch, answers=answers, corrupted_answers=others)
    for engine in B.engines(model):
        for site in B.PATCH_SITES:
            res = activation_patch(model, pairs, site=site, metric="logit_diff", config=PatchConfig(engine=engine))
            assert float((res.per_example - res.clean.view(*([1] * (res.per_example.ndim - 1)), -1)).abs().max()) \
                < 1e-4, (name, engine, site)


def test_batched_equals_one_by_one(loaded):
    name, model = loaded
    batch = la.tokenize(model, B.prompts())
    assert len(set(batch.lengths.tolist())) > 1, "the prompts should differ in length"
    last = la.Site("resid_post", model.cfg.n_layers - 1, "last")
    together = la.collect(model, batch, [last, la.Site("z", 0, "last")], batch_size=32)
    alone = la.collect(model, batch, [last, la.Site("z", 0, "last")], batch_size=1)
    for site in together:
        assert float((together[site] - alone[site]).abs().max()) < 1e-5, (name, site)
    lens = la.logit_lens(model, batch, batch_size=32).normed
    assert float((lens - la.logit_lens(model, batch, batch_size=1).normed).abs().max()) < 1e-5, name


# --------------------------------------------------------------------------- the backend's contract


def test_fresh_models_have_no_user_hooks_and_hooks_are_always_removed(loaded):
    name, model = loaded
    batch = la.tokenize(model, B.prompts()[:2])
    la.run_with_interventions(model, batch, [la.Ablate(la.Site("mlp_out", 0))])  # a bridge wires its own hooks here
    assert not has_hooks(model), name
    assert can_resume(model) == (not ON_4), "start-layer resumption saves compute on HookedTransformer only"
    handle = model.hook_dict["blocks.0.hook_resid_pre"].register_forward_hook(lambda m, i, o: None)
    try:
        assert has_hooks(model) and not can_resume(model)
    finally:
        handle.remove()
    with pytest.raises(la.LensarithError):
        la.run_with_interventions(model, batch, [la.Replace(la.Site("mlp_out", 0, "last"), torch.ones(3))])
    assert not has_hooks(model)


def test_forwards_stop_and_start_where_asked(loaded):
    name, model = loaded
    backend = backend_of(model)
    n = model.cfg.n_layers
    batch = la.tokenize(model, B.prompts()[:2])
    sites = [la.Site("resid_pre", layer) for layer in range(n)] + [la.Site("resid_post", n - 1)]
    got = la.collect(model, batch, sites)
    tokens = batch.tokens.to(model.cfg.device)
    with torch.no_grad():
        for stop in range(1, n + 1):
            want = got[sites[stop]]
            assert float((backend.forward(tokens, stop=stop) - want).abs().max()) < 1e-5, (name, stop)
            start = stop - 1
            out = backend.forward_from(got[sites[start]], start=start, stop=n)
            assert float((out - got[sites[-1]]).abs().max()) < 1e-4, (name, start)
        logits = la.core.readout.logits(model, got[sites[-1]])
        assert logits.shape == (*tokens.shape, model.cfg.d_vocab)


def test_block_weights_are_in_transformer_lens_layout(loaded):
    name, model = loaded
    cfg, backend = model.cfg, backend_of(model)
    for layer in range(cfg.n_layers):
        w = backend.block(layer)
        H, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        assert tuple(w.W_Q.shape) == tuple(w.W_K.shape) == tuple(w.W_V.shape) == (H, d, dh)
        assert tuple(w.W_O.shape) == (H, dh, d) and tuple(w.b_O.shape) == (d,)
        assert tuple(w.b_Q.shape) == tuple(w.b_K.shape) == (H, dh)
        assert tuple(w.W_in.shape) == (d, cfg.d_mlp) and tuple(w.W_out.shape) == (cfg.d_mlp, d)
        assert (w.W_gate is not None) == bool(getattr(cfg, "gated_mlp", False))
        assert backend.attn_scale(layer) == pytest.approx(dh ** 0.5)


# --------------------------------------------------------------------------- loading and saving


def test_tiny_models_have_the_same_weights_on_both_versions(golden):
    model = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=5, vocab=B.vocab())
    assert config_hash(model) == json.loads(B.META.read_text())["tiny"]["config_hash"]
    fresh = {"tiny/lens/normed": la.logit_lens(model, la.tokenize(model, B.prompts()), stream="all").normed}
    problems, _ = compare(fresh, {k: v for k, v in golden.items() if k == "tiny/lens/normed"}, "tiny")
    assert not problems


def test_saved_models_load_back_and_in_the_other_versions_layout(tmp_path):
    model = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=1)
    path = la.save_model(model, tmp_path / "m")
    back = la.load_model(path)
    batch = la.tokenize(back, la.build_prompts("capitals", n=3))
    assert torch.equal(la.run_with_interventions(model, batch), la.run_with_interventions(back, batch))
    assert config_hash(back) == config_hash(model) and back.cfg.model_name == "m"
    keys = set(load_file(str(path / "model.safetensors")))
    params = {k for k in keys if not k.endswith((".mask", ".IGNORE"))}
    assert "blocks.0.attn.W_Q" in params and "unembed.W_U" in params and "embed.W_E" in params
    organism = {k for k in load_file(str(data_dir() / "organism" / "model.safetensors"))
                if not k.endswith((".mask", ".IGNORE"))}
    assert {k.split(".", 2)[-1] if k.startswith("blocks.") else k for k in params} == \
           {k.split(".", 2)[-1] if k.startswith("blocks.") else k for k in organism}


def test_config_json_has_the_same_fields_on_both_versions():
    from lensarith.models import cfg_from_json, cfg_to_json

    data = json.loads((data_dir() / "organism" / "config.json").read_text())
    again = cfg_to_json(cfg_from_json(data))
    assert {k: v for k, v in again.items() if k != "n_params"} == \
           {k: v for k, v in data.items() if k in again and k != "n_params"}
    assert set(again) >= {"d_model", "n_layers", "d_mlp", "positional_embedding_type", "default_prepend_bos", "dtype"}


def test_models_the_native_bridge_would_compute_differently_are_refused_clearly(tmp_path):
    """TransformerLens 4's native model rotates adjacent pairs only, has no parallel blocks, ALiBi or
    gated MLPs with biases: a lensarith directory of such a 3.x model loads only on 3.x."""
    from lensarith.models._tl4 import native_problems

    base = json.loads((data_dir() / "organism" / "config.json").read_text())
    cases = {"rotary": dict(positional_embedding_type="rotary", rotary_dim=8),
             "parallel": dict(parallel_attn_mlp=True), "alibi": dict(positional_embedding_type="alibi"),
             "gated": dict(gated_mlp=True)}
    for case, change in cases.items():
        data = {**base, **change}
        assert native_problems(data), case
        folder = tmp_path / case
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(data))
        (folder / "model.safetensors").write_bytes(b"")
        with pytest.raises(ModelNotAvailableError) as exc:
            la.load_model(folder)
        if ON_4:
            assert "TransformerLens 3.9" in str(exc.value) and "native" in str(exc.value), str(exc.value)
        else:  # 3.9 builds the model and then finds the (empty) weights file unreadable
            assert "model.safetensors" in str(exc.value)
    assert native_problems({**base, "positional_embedding_type": "rotary", "rotary_adjacent_pairs": True,
                            "rotary_dim": 8}) == []
    assert native_problems(base) == []


def test_hugging_face_bridges_are_not_saved_in_the_hooked_layout(tmp_path):
    model = B.load("gpt2")
    if not ON_4:
        la.save_model(model, tmp_path / "g")  # a HookedTransformer saves as always
        return
    with pytest.raises(ModelNotAvailableError, match="save_pretrained"):
        la.save_model(model, tmp_path / "g")


def _numbers(x, path=""):
    """Flatten a JSON value to {path: value}."""
    if isinstance(x, dict):
        return {k: v for key in x for k, v in _numbers(x[key], f"{path}/{key}").items()}
    if isinstance(x, list):
        return {k: v for i, item in enumerate(x) for k, v in _numbers(item, f"{path}[{i}]").items()}
    return {path: x}


def test_reproduce_small_matches_the_3_9_golden(tmp_path):
    """The paper's figures on the organism (``lensarith reproduce --small``) on this backend."""
    sys.path.insert(0, str(Path(__file__).parent / "golden"))
    import recipes

    want = _numbers(json.loads((recipes.HERE / "reproduce_small.json").read_text()))
    got = _numbers(json.loads(json.dumps(recipes.reproduce_small(tmp_path), default=str)))
    assert set(want) <= set(got), sorted(set(want) - set(got))[:10]  # the report may add numbers; none disappear
    bad = [k for k in want if (abs(want[k] - got[k]) > TOL if isinstance(want[k], float) else want[k] != got[k])]
    assert not bad, [(k, want[k], got[k]) for k in bad[:5]]


@pytest.mark.parametrize("norm", ["LN", "RMS", None])
def test_the_fast_engine_equals_the_hooks_engine_on_this_backend(norm):
    from lensarith.patching import PatchConfig, activation_patch, pair_examples

    model = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=7, vocab=B.vocab(), normalization_type=norm)
    assert B.engines(model) == ["hooks", "fast"]
    pairs = pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=40), n=4)
    for site in B.PATCH_SITES + ("resid_mid", "resid_post"):
        fast, hooks = (activation_patch(model, pairs, site=site, config=PatchConfig(engine=e)) for e in ("fast", "hooks"))
        assert float((fast.per_example - hooks.per_example).abs().max()) < 1e-5, (norm, site)


@pytest.mark.parametrize("method", ["atp+qk", "atp*", "relp", "relp+qk"])
def test_attribution_methods_recompute_the_base_run_on_this_backend(method):
    from lensarith.patching import activation_patch, attribution_patch, pair_examples

    model = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=0, vocab=B.vocab())
    pairs = pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=40), n=4)
    exact = activation_patch(model, pairs, site="resid_pre")
    res = attribution_patch(model, pairs, site="resid_pre", method=method)
    assert float((res.corrupted - exact.corrupted).abs().max()) < 1e-4  # the recomputed base run is the model's
    assert res.meta["forward_equivalents"] <= 5
    moved = torch.stack([(exact.per_example - exact.corrupted).flatten(), (res.per_example - res.corrupted).flatten()])
    assert float(torch.corrcoef(moved)[0, 1]) > 0.5, method


@pytest.mark.parametrize("name", ["tiny", "gpt2", "bloom", "llama"])
def test_writing_resid_mid_moves_the_residual_stream(name):
    """resid_mid = resid_pre + attn_out, so adding v at resid_mid is adding v to attn_out. (A bridge's
    hook_resid_mid is ln2's input, which alone would reach the MLP but not the residual.)"""
    model = B.load(name)
    batch = la.tokenize(model, B.prompts()[:3])
    v = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    for layer in range(model.cfg.n_layers):
        at_mid = la.run_with_interventions(model, batch, [la.Add(la.Site("resid_mid", layer), v)])
        at_attn = la.run_with_interventions(model, batch, [la.Add(la.Site("attn_out", layer), v)])
        assert float((at_mid - at_attn).abs().max()) < 1e-4, (name, layer)
        got = la.collect(model, batch, [la.Site("resid_post", layer, "last"), la.Site("resid_mid", layer, "last")],
                         interventions=[la.Replace(la.Site("resid_mid", layer, "last"), v)])
        assert torch.allclose(got[la.Site("resid_mid", layer, "last")], v.expand(len(batch), -1))


def test_hub_names_fail_fast_without_the_hub(monkeypatch):
    import time

    monkeypatch.setattr("lensarith.models._hub._probe_hub", lambda official, timeout=1.5: "the hub cannot be reached")
    monkeypatch.setattr("lensarith.models._hub._cache_state", lambda official, cache_dir=None: ("absent", "cache"))
    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="not in the local Hugging Face cache"):
        la.load_model("gpt2")
    assert time.perf_counter() - t0 < 2


def test_device_map_passes_through_to_transformer_lens_4():
    """``load_model(folder, device_map=...)``: TransformerLens 4 boots the folder split by the map
    (here the one map a CPU machine has); 3.9 says what to use instead."""
    if not ON_4:
        with pytest.raises(la.LensarithError, match="device_map needs TransformerLens 4"):
            la.load_model(B.DIR / "gpt2", device_map={"": "cpu"})
        return
    split = la.load_model(B.DIR / "gpt2", device_map={"": "cpu"})
    one = B.load("gpt2")
    batch = la.tokenize(one, B.prompts())
    assert torch.equal(la.run_with_interventions(split, batch), la.run_with_interventions(one, batch))
