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
