"""Every recipe leaves the model and the process as it found them: normally, and interrupted from inside a hook.

Checked after each run: no hook left on any module (TransformerLens hook points and plain
PyTorch hooks), the state dict's hash, every parameter's ``requires_grad`` and ``.grad``,
train/eval mode, the config, and global state (grad mode, default dtype, threads, the
Hugging Face offline flag, environment variables). Interruptions: a user's hook that raises
``KeyboardInterrupt`` on the first or a later forward (the user's own hook must stay), and
an interrupt raised inside lensarith's readout.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest
import torch

import lensarith as la
from lensarith.core import Site
from lensarith.paper import figures

MODEL = None


def _model():
    global MODEL
    if MODEL is None:
        MODEL = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=0)
    return MODEL


def _caps(model):
    return list(la.tokenize(model, la.build_prompts("capitals", n=30), drop_multi_token=True).examples[:8])


def _pairs(model):
    return la.pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=40), n=2)


RECIPES: dict[str, Callable] = {
    "logit_lens": lambda m: la.logit_lens(m, _caps(m)).rank(),
    "decompose_layer": lambda m: la.decompose_resid(m, _caps(m)),
    "decompose_head": lambda m: la.decompose_resid(m, _caps(m), granularity="head", layer=1, stream="resid_mid"),
    "decompose_neuron": lambda m: la.decompose_resid(m, _caps(m), granularity="neuron"),
    "dla": lambda m: la.direct_logit_attribution(m, _caps(m), baselines="argument", granularity="head"),
    "collect": lambda m: la.collect(m, la.tokenize(m, _caps(m)), [Site("z", 1, "last"), Site("pattern", 0)], batch_size=3),
    "run_with_interventions": lambda m: la.run_with_interventions(m, la.tokenize(m, _caps(m)), [la.Ablate(Site("mlp_out", 1))]),
    "patch_fast": lambda m: la.activation_patch(m, _pairs(m), site="resid_mid", config=la.PatchConfig(engine="fast")),
    "patch_hooks": lambda m: la.activation_patch(m, _pairs(m), site="z", config=la.PatchConfig(engine="hooks")),
    "patch_auto_heads_by_pos": lambda m: la.activation_patch(m, _pairs(m), site="z", by_position=True, layers=[1]),
    "attribution_patch": lambda m: la.attribution_patch(m, _pairs(m), site="mlp_out"),
    "extract": lambda m: la.extract_o_vector(m, _caps(m)[:2], layer=1),
    "transplant_replace": lambda m: la.transplant(m, la.extract_o_vector(m, _caps(m)[:1], layer=1), la.transplant_contexts(_caps(m)[1:]),
                                                 layers=[0, 1]),
    "transplant_subtract": lambda m: la.transplant(m, la.extract_o_vector(m, _caps(m)[:1], layer=1), la.transplant_contexts(_caps(m)[1:]),
                                                  mode="subtract", positions="last"),
    "find_layers_screen": lambda m: la.find_layers(m, _caps(m), config=la.SearchConfig(n_prompts=8, n_contexts=6, screen=1)),
    "experiment": lambda m: la.transplant_experiment(m, "capitals", la.TransplantConfig(layer=1, n_contexts=6)),
    "ablation_zero": lambda m: la.ffn_ablation(m, "capitals", n=6, steps=2),
    "ablation_mean": lambda m: la.ffn_ablation(m, "capitals", n=6, steps=2, mode="mean"),
    "decode": lambda m: la.vectors.decode_o_vector(m, la.extract_o_vector(m, _caps(m)[:1], layer=1), k=3),
    "analogy": lambda m: la.vectors.o_vector_analogy(m, la.extract_o_vector(m, _caps(m)[:1], layer=1), _caps(m), n_shuffles=2),
    "task_curves": lambda m: figures.task_curves(m, "capitals", n=8),
    "dla_by_position": lambda m: figures.dla_by_position(m, _caps(m)[0]),
    "attention_patterns": lambda m: la.viz.attention_patterns(m, _caps(m)[0], [(0, 1), (1, 2)]),
    "run_recipe": lambda m: la.run_recipe("logit_lens", m, _caps(m)),
}


def _hooks(model) -> dict[str, tuple[int, int, int]]:
    return {name: (len(mod._forward_hooks), len(mod._forward_pre_hooks), len(mod._backward_hooks))
            for name, mod in model.named_modules()}


def snapshot(model) -> dict:
    import huggingface_hub.constants as hub

    digest = hashlib.sha256()
    for k, v in model.state_dict().items():
        digest.update(k.encode())
        digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    return {
        "hooks": _hooks(model), "state": digest.hexdigest(), "training": [m.training for m in model.modules()],
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": [n for n, p in model.named_parameters() if p.grad is not None], "cfg": repr(model.cfg),
        "grad_enabled": torch.is_grad_enabled(), "dtype": torch.get_default_dtype(), "threads": torch.get_num_threads(),
        "hf_offline": hub.HF_HUB_OFFLINE, "env": dict(os.environ),
    }


def _diff(before: dict, after: dict) -> list[str]:
    return [k for k in before if before[k] != after[k]]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_normal_run_leaves_everything_as_it_was(name):
    model = _model()
    before = snapshot(model)
    RECIPES[name](model)
    assert _diff(before, snapshot(model)) == []


@pytest.mark.parametrize("at_call", [1, 2])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_an_interrupt_inside_a_users_hook_leaves_only_that_hook(name, at_call):
    model = _model()
    calls = {"n": 0}

    def user_hook(act, hook):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return None

    point = model.blocks[1].hook_resid_pre
    point.add_hook(user_hook)
    try:
        before = snapshot(model)
        interrupted = False
        try:
            RECIPES[name](model)
        except KeyboardInterrupt:
            interrupted = True
        except la.LensarithError as exc:  # engine="fast" refuses a model that has hooks on it, before running
            assert "hooks already on the model" in str(exc)
            interrupted = True
        after = snapshot(model)
        assert _diff(before, after) == [], (interrupted, calls)
        assert len(point._forward_hooks) == 1  # the user's hook is still there
    finally:
        model.reset_hooks()
    assert interrupted or calls["n"] < at_call  # a recipe with fewer forwards is not interrupted at the 2nd


@pytest.mark.parametrize("name", ["logit_lens", "patch_fast", "transplant_replace", "ablation_zero", "find_layers_screen",
                                  "experiment", "attribution_patch"])
def test_an_interrupt_inside_the_readout_leaves_everything(name, monkeypatch):
    from lensarith.core import readout

    model = _model()
    before = snapshot(model)
    real = readout.final_norm

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(readout, "final_norm", interrupted)
    with pytest.raises(KeyboardInterrupt):
        RECIPES[name](model)
    monkeypatch.setattr(readout, "final_norm", real)
    assert _diff(before, snapshot(model)) == []


def test_the_snapshot_sees_each_change():
    model = la.tiny_model(n_layers=1, d_model=16, n_heads=2, seed=3)
    base = snapshot(model)
    model.blocks[0].hook_resid_pre.add_hook(lambda a, h: None)
    assert _diff(base, snapshot(model)) == ["hooks"]
    model.reset_hooks()
    model.train()
    assert _diff(base, snapshot(model)) == ["training"]
    model.eval()
    keep = model.W_E[0, 0].item()
    with torch.no_grad():
        model.W_E[0, 0] += 1
    assert _diff(base, snapshot(model)) == ["state"]
    with torch.no_grad():
        model.W_E[0, 0] = keep
    model.W_U.requires_grad_(False)
    assert _diff(base, snapshot(model)) == ["requires_grad"]
    model.W_U.requires_grad_(True)
    model.W_E.grad = torch.zeros_like(model.W_E)
    assert _diff(base, snapshot(model)) == ["grads"]
    model.W_E.grad = None
    torch.set_grad_enabled(False)
    try:
        assert _diff(base, snapshot(model)) == ["grad_enabled"]
    finally:
        torch.set_grad_enabled(True)


# --------------------------------------------------------------------------- global state: RNGs, module mode, tokenizer


def _rng_state() -> tuple:
    import random

    import numpy as np

    return torch.random.get_rng_state().clone(), random.getstate(), repr(np.random.get_state())


def _same_rng(a: tuple, b: tuple) -> bool:
    return bool(torch.equal(a[0], b[0])) and a[1] == b[1] and a[2] == b[2]


def _reseed() -> tuple:
    import random

    import numpy as np

    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    return _rng_state()


def _caps_of(model, n=6):
    return list(la.tokenize(model, la.build_prompts("capitals", n=30), drop_multi_token=True).examples[:n])


V = la.vectors
VECTOR_CALLS: dict[str, Callable] = {
    "head_effects": lambda m: V.head_effects(m, "capitals", n_prompts=3, n_shots=2),
    "extract_function_vector": lambda m: V.extract_function_vector(m, "capitals", n_heads=2, n_prompts=3, n_shots=2),
    "extract_task_vector": lambda m: V.extract_task_vector(m, "capitals", 1, n_prompts=3, n_shots=2),
    "apply_vector": lambda m: V.apply_vector(m, la.extract_o_vector(m, _caps_of(m)[:1], layer=1), _caps_of(m)[1:]),
    "sweep_layers": lambda m: V.sweep_layers(m, {1: la.extract_o_vector(m, _caps_of(m)[:1], layer=1)}, _caps_of(m)[1:],
                                             scales=(1.0, 2.0)),
    "same_norm_random": lambda m: V.same_norm_random(la.extract_o_vector(m, _caps_of(m)[:1], layer=1), seed=3),
    "bootstrap_ci": lambda m: V.bootstrap_ci(torch.arange(5.0), seed=2),
    "few_shot_prompts": lambda m: V.few_shot_prompts("capitals", n_shots=2, n=3, shuffle_labels=True, seed=4),
    "vector_bench": lambda m: V.vector_bench(m, "capitals", V.BenchConfig.small_run(
        kinds=("o", "tv"), contexts=("zero_shot",), n=3, n_dev=3, n_sources=4, n_shots=2, n_boot=10)),
}


@pytest.mark.parametrize("name", sorted(VECTOR_CALLS))
def test_a_vector_function_leaves_the_model(name):
    model = _model()
    before = snapshot(model)
    VECTOR_CALLS[name](model)
    assert _diff(before, snapshot(model)) == []


_RNG_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import torch
import test_side_effects as t
out = {{}}
model = t._model()
for name, call in t.VECTOR_CALLS.items():
    call(model)  # task data and caches first
    rng = t._reseed()
    call(model)
    out["vector:" + name] = t._same_rng(rng, t._rng_state())
for name in ("organism", "organism-planted", "tiny", "organism:nnsight", "wrap_nnsight", "to_hf_gpt2"):
    rng = t._reseed()
    t._load(name)
    out["load:" + name] = t._same_rng(rng, t._rng_state())
nn = t.la.load_model("organism", backend="nnsight")
for name, call in t.NNSIGHT_CALLS.items():
    rng = t._reseed()
    call(nn)
    out["nnsight:" + name] = t._same_rng(rng, t._rng_state())
print(json.dumps(out))
"""


def _load(name: str):
    if name == "tiny":
        return la.tiny_model(n_layers=1, d_model=16, n_heads=2, seed=0)
    if name == "wrap_nnsight":
        return la.models.wrap_nnsight(*_hf_and_tokenizer())
    if name == "to_hf_gpt2":
        return la.models.to_hf_gpt2(_model())
    if name.endswith(":nnsight"):
        return la.load_model(name.split(":")[0], backend="nnsight")
    return la.load_model(name)


def test_vector_functions_loads_and_the_nnsight_backend_leave_the_rngs():
    """Run as a user would, in a subprocess: under pytest, jaxtyping's beartype hook draws from
    Python's ``random`` to spot-check list items, which would hide what lensarith itself does."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
    proc = subprocess.run([sys.executable, "-c", _RNG_SCRIPT.format(tests=str(here))], capture_output=True, text=True,
                          timeout=900, env=env, cwd=here.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = ({f"vector:{n}" for n in VECTOR_CALLS} | {f"nnsight:{n}" for n in NNSIGHT_CALLS}
                | {f"load:{n}" for n in ("organism", "organism-planted", "tiny", "organism:nnsight", "wrap_nnsight", "to_hf_gpt2")})
    assert set(kept) == expected
    assert [name for name, ok in kept.items() if not ok] == []


@pytest.mark.parametrize("name", sorted(set(VECTOR_CALLS) - {"bootstrap_ci", "few_shot_prompts", "same_norm_random"}))
def test_an_interrupt_inside_a_vector_function_leaves_only_the_users_hook(name):  # the others run no forward
    model = _model()
    calls = {"n": 0}

    def user_hook(act, hook):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    point = model.blocks[1].hook_resid_pre
    point.add_hook(user_hook)
    try:
        before = snapshot(model)
        interrupted = False
        try:
            VECTOR_CALLS[name](model)
        except KeyboardInterrupt:
            interrupted = True
        assert _diff(before, snapshot(model)) == []
        assert len(point._forward_hooks) == 1
    finally:
        model.reset_hooks()
    assert interrupted or calls["n"] < 2  # one forward only: nothing interrupted


def test_the_rng_check_can_fail():
    rng = _reseed()
    torch.rand(1)
    assert not _same_rng(rng, _rng_state())
    rng = _reseed()
    import random

    random.random()
    assert not _same_rng(rng, _rng_state())


def _hf_and_tokenizer():
    from lensarith.models import to_hf_gpt2

    import copy

    model = _model()
    return to_hf_gpt2(model), copy.deepcopy(model.tokenizer)


def _module_state(module) -> tuple:
    digest = hashlib.sha256()
    for k, v in module.state_dict().items():
        digest.update(k.encode())
        digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in module.modules()]
    return [m.training for m in module.modules()], digest.hexdigest(), hooks


def test_wrap_nnsight_leaves_the_module_and_the_tokenizer():
    hf, tok = _hf_and_tokenizer()
    tok.padding_side = "left"
    before = _module_state(hf)
    wrapped = la.models.wrap_nnsight(hf, tok)
    assert tok.padding_side == "left"  # the user's tokenizer as it was
    assert wrapped.tokenizer.padding_side == "right"  # lensarith's own copy pads right
    assert _module_state(hf) == before
    la.logit_lens(wrapped, _caps_of(_model())).rank()
    assert _module_state(hf) == before and tok.padding_side == "left"


def test_wrap_nnsight_refuses_a_module_in_train_mode_and_leaves_it_so():
    hf, tok = _hf_and_tokenizer()
    hf.train()
    with pytest.raises(la.LensarithError, match="train mode"):
        la.models.wrap_nnsight(hf, tok)
    assert hf.training and all(m.training for m in hf.modules())


NNSIGHT_CALLS: dict[str, Callable] = {
    "logit_lens": lambda m: la.logit_lens(m, _caps_of(m)).rank(),
    "collect": lambda m: la.collect(m, la.tokenize(m, _caps_of(m)), [Site("mlp_out", 1, "last")]),
    "head_effects": VECTOR_CALLS["head_effects"],
    "extract_task_vector": VECTOR_CALLS["extract_task_vector"],
    "apply_vector": VECTOR_CALLS["apply_vector"],
    "sweep_layers": VECTOR_CALLS["sweep_layers"],
}  # attribution_patch refuses the nnsight backend (it needs gradients): a case of tests/bad_inputs.py


@pytest.fixture(scope="module")
def nnsight_model():
    return la.load_model("organism", backend="nnsight")


@pytest.mark.parametrize("name", sorted(NNSIGHT_CALLS))
def test_the_nnsight_backend_leaves_the_module_and_the_rngs(name, nnsight_model):
    before = _module_state(nnsight_model.module)
    grad = torch.is_grad_enabled()
    NNSIGHT_CALLS[name](nnsight_model)  # the RNGs: test_vector_functions_loads_and_the_nnsight_backend_leave_the_rngs
    assert _module_state(nnsight_model.module) == before
    assert torch.is_grad_enabled() == grad


def test_a_recipe_that_adds_a_hook_with_add_hook_and_raises_leaves_no_hook():
    model = _model()

    @la.register_recipe("adds_a_hook_then_raises", overwrite=True)
    def adds_a_hook_then_raises(model, prompts):
        model.add_hook("blocks.0.hook_resid_pre", lambda act, hook: None)
        model.add_hook("blocks.1.hook_mlp_out", lambda act, hook: None, dir="bwd")
        raise ValueError("the recipe's own mistake")

    before = snapshot(model)
    with pytest.raises(ValueError, match="the recipe's own mistake"):
        la.run_recipe("adds_a_hook_then_raises", model, _caps_of(model))
    assert _diff(before, snapshot(model)) == []
    assert all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())
