"""The operator's loop (lensarith.guard): identities, bad inputs, save/load, the page and the command."""

from __future__ import annotations

import importlib.util
import json
import os
import warnings

import numpy as np
import pytest
import torch

import lensarith as la
from lensarith.core import tokenize
from lensarith.guard import (EffectsConfig, GuardConfig, GuardResult, LocateConfig, Monitor, MonitorConfig, MonitorGate,
                             Policy, auroc, export_spec, fit_monitor, generate, guard, guard_report, locate, make_policy,
                             policy_logits, relation_gate, replay_spec, score_policy, side_effects, spec_policy)
from lensarith.guard._locate import mlp_means
from lensarith.guard._monitor import alert_threshold, leaked, split_by_argument
from lensarith.tasks import build_prompts
from lensarith.vectors import extract_o_vector

from conftest import hooks_left, state_of

LAYER = 5  # organism-planted's relation MLP (the card), located again in test_locate_finds_the_planted_mlp


@pytest.fixture(scope="module")
def planted():
    return la.load_model("organism-planted")


@pytest.fixture(scope="module")
def caps(planted):
    return tokenize(planted, build_prompts("capitals", n=24), drop_multi_token=True)


@pytest.fixture(scope="module")
def past(planted):
    return tokenize(planted, build_prompts("past", n=24), drop_multi_token=True)


@pytest.fixture(scope="module")
def o(planted, caps):
    return extract_o_vector(planted, caps[0:8], LAYER, reduce="mean").vector


@pytest.fixture(scope="module")
def gate(planted):
    return relation_gate(planted, LAYER, "capitals", ["past", "singular_plural", "uppercase_words"], n=12)


@pytest.fixture(scope="module")
def monitor(planted):
    return fit_monitor(planted, "past", LAYER, MonitorConfig(n=200, formats=("one_shot", "zero_shot")))


# --------------------------------------------------------------------------- locate


def test_locate_finds_the_planted_mlp_and_keeps_the_questions_apart(planted):
    res = locate(planted, "capitals", LocateConfig(n=24, n_contexts=12))
    assert res.verdicts[LAYER] == "both" and res.chosen_layer == LAYER
    assert 0 in res.necessary_layers and 0 not in res.sufficient_layers  # MLP 0: needed, but writes no relation
    drop = res.tensors["drop"]
    assert bool((res.tensors["drop_lo"] <= drop + 1e-6).all()) and bool((drop <= res.tensors["drop_hi"] + 1e-6).all())
    # the verdicts follow the stated criterion, recomputed here
    nec = ((drop >= 0.1) & (res.tensors["drop_lo"] > 0)).any(0)
    suf = torch.nan_to_num(res.tensors["transplant_gain"], nan=-1) >= 0.1
    want = ["both" if n and s else "necessary" if n else "sufficient" if s else "neither" for n, s in zip(nec, suf)]
    assert res.verdicts == want
    assert "sufficiency" in res.meta["questions"] and "necessity" in res.meta["questions"]


def test_locate_single_ablation_equals_a_hand_written_knockout(planted, caps):
    res = locate(planted, caps, LocateConfig(n=24, n_contexts=4))
    cond = res.labels["condition"].index("zero@all")
    logits, _ = policy_logits(planted, caps, Policy("zero", 2, position="all"))
    acc = float((logits.argmax(-1) == caps.answer_ids).float().mean())
    assert abs(float(res.tensors["accuracy"][cond, 2]) - acc) < 1e-6


def test_locate_bad_config():
    with pytest.raises(la.LensarithError, match="necessary_drop"):
        LocateConfig(necessary_drop=2.0)


# --------------------------------------------------------------------------- policies


def test_no_op_policy_leaves_logits_bit_equal_and_the_model_unchanged(planted, caps):
    before = state_of(planted)
    plain, _ = policy_logits(planted, caps, None)
    noop, fired = policy_logits(planted, caps, make_policy("none", LAYER))
    assert torch.equal(plain, noop)
    assert hooks_left(planted) == 0
    assert all(torch.equal(v, before[k]) for k, v in planted.state_dict().items())


def test_policies_change_what_they_should(planted, caps, o):
    plain, _ = policy_logits(planted, caps, None)
    for pol in (make_policy("zero", LAYER), make_policy("subtract_o", LAYER, o=o), make_policy("add_o", LAYER, o=o, scale=2.0)):
        got, fired = policy_logits(planted, caps, pol)
        assert bool(fired.all()) and not torch.equal(got, plain)
    zero = score_policy(planted, caps, make_policy("zero", LAYER))
    assert float(zero["correct"].float().mean()) < 0.2  # the planted MLP is necessary


def test_gated_policy_never_fires_where_the_gate_rejects(planted, past, caps, gate):
    pol = make_policy("zero", LAYER, gate=gate)
    plain, _ = policy_logits(planted, past, None)
    got, fired = policy_logits(planted, past, pol)
    assert not bool(fired.all())  # past prompts: the capitals gate rejects (most of) them
    assert torch.equal(got[~fired], plain[~fired])  # rejected rows are bit-equal
    acc = gate.accepts(torch.zeros(3, planted.cfg.d_model) + gate.centroids[0])
    assert bool(acc.all())
    _, fired_caps = policy_logits(planted, caps, pol)
    assert float(fired_caps.float().mean()) > 0.8


def test_gate_check_can_fail(planted, past, gate):
    """A gate that accepts everything edits rows the capitals gate would reject: the identity above could fail."""
    everything = type(gate)(gate.layer, gate.centroids[:1].repeat(2, 1), ("capitals", "x"), "capitals")
    plain, _ = policy_logits(planted, past, None)
    got, fired = policy_logits(planted, past, make_policy("zero", LAYER, gate=everything))
    assert bool(fired.all()) and not torch.equal(got, plain)


def test_generation_first_token_equals_batched_scoring(planted, caps, o, gate, monitor):
    mon, _ = monitor
    for pol in (None, make_policy("zero", LAYER), make_policy("subtract_o", LAYER, o=o, gate=gate),
                make_policy("zero", LAYER, gate=MonitorGate(mon))):
        logits, fired = policy_logits(planted, caps[0:8], pol)
        gen = generate(planted, caps[0:8], pol, max_new_tokens=3)
        assert torch.equal(gen.tokens[:, 0], logits.argmax(-1))
        if pol is not None:
            assert torch.equal(gen.fired, fired)


def test_core_generation_equals_the_models_own_kv_cache_generate(planted, caps, gate):
    one = caps[0:1]
    for pol in (None, make_policy("zero", LAYER), make_policy("zero", LAYER, gate=gate), make_policy("mean", 3, mean=torch.randn(128))):
        a = generate(planted, one, pol, max_new_tokens=4, engine="core")
        b = generate(planted, one, pol, max_new_tokens=4, engine="model")
        assert torch.equal(a.tokens, b.tokens)
    assert hooks_left(planted) == 0


def test_generation_under_a_monitor_scores_every_step(planted, caps, monitor):
    mon, _ = monitor
    gen = generate(planted, caps[0:4], None, max_new_tokens=3, monitor=mon)
    assert gen.scores["probe"].shape == (3, 4)
    first = mon.score(planted, caps[0:4])
    assert torch.allclose(gen.scores["probe"][0], first["probe"], atol=1e-5)


def test_policy_bad_inputs(planted):
    with pytest.raises(la.LensarithError, match="operation"):
        Policy("erase", 1)
    with pytest.raises(la.LensarithError, match="needs vector"):
        Policy("subtract_o", 1)
    with pytest.raises(la.LensarithError, match="d_model"):
        policy_logits(planted, build_prompts("capitals", n=2), make_policy("add_o", 1, o=torch.ones(7)))
    with pytest.raises(la.LensarithError, match="engine='core'"):
        generate(planted, build_prompts("capitals", n=1) + build_prompts("past", n=1), None, engine="model")  # two lengths


# --------------------------------------------------------------------------- monitor


def test_auroc_and_threshold():
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auroc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5
    assert np.isnan(auroc(np.array([1.0, 2.0]), np.array([1, 1])))
    assert alert_threshold(np.array([0.0, 0.0, 0.0, 1.0]), 0.5) == 1.0
    assert alert_threshold(np.array([0.0, 0.0]), 0.1) > 0.0  # nothing flagged rather than everything


def test_split_is_by_argument_and_leakage_is_detected():
    ex = build_prompts("capitals", n=20) + build_prompts("capitals", n=20, format="zero_shot")
    fit = split_by_argument(ex, 0.5, 0)
    fit_args = {e.argument for e, f in zip(ex, fit) if f}
    held_args = {e.argument for e, f in zip(ex, fit) if not f}
    assert fit_args and held_args and not fit_args & held_args
    assert all(leaked(e) for e in build_prompts("capitals", n=5, format="extractive"))
    assert not any(leaked(e) for e in build_prompts("capitals", n=5, format="zero_shot"))


def test_monitor_reports_intervals_on_held_out_arguments(monitor, planted):
    mon, ev = monitor
    rows = ev.table("held_out")
    assert {r["feature"] for r in rows} >= {"confidence", "o_projection", "dla", "lens_agreement", "probe"}
    for r in rows:
        assert 0 <= r["auroc"] <= 1 and r["auroc_lo"] <= r["auroc"] + 1e-9 <= r["auroc_hi"] + 2e-9
    assert ev.meta["n_wrong"] > 0
    # scores reproduce from a saved and loaded monitor
    got = mon.score(planted, build_prompts("past", n=6))
    assert set(got) == set(mon.features)


def test_monitor_save_load_and_other_model(monitor, planted, tmp_path, model):
    mon, ev = monitor
    mon.save(tmp_path / "m")
    back = Monitor.load(tmp_path / "m") if hasattr(Monitor, "load") else None
    assert isinstance(back, Monitor) and torch.equal(back.tensors["probe_w"], mon.tensors["probe_w"])
    with pytest.raises(la.LensarithError, match="fitted on"):
        back.score(model, build_prompts("past", n=2))
    with pytest.raises(la.LensarithError, match="fitted on"):
        make_policy("zero", 1, gate=MonitorGate(back)).check(model)


def test_monitor_rules(planted):
    allowed = {e.answer for e in build_prompts("past")}
    _, ev = fit_monitor(planted, "past", LAYER, MonitorConfig(n=200, formats=("one_shot", "zero_shot")),
                        rules=[allowed, lambda ex, pred: pred.strip() == ex.argument.strip()])
    names = [r["feature"] for r in ev.table()]
    assert any(n.startswith("rule0") for n in names) and any(n.startswith("rule1") for n in names)


def test_monitor_bad_inputs(planted):
    with pytest.raises(la.LensarithError, match="unknown"):
        fit_monitor(planted, "capitalz", LAYER)
    with pytest.raises(la.LensarithError, match="empty"):
        fit_monitor(planted, [], LAYER)
    # capitals on organism-planted: (almost) every answer is right -> one class in a half
    with pytest.raises(la.LensarithError, match="needs both"):
        fit_monitor(planted, "capitals", LAYER, MonitorConfig(n=20, formats=("one_shot",)))
    with pytest.raises(la.LensarithError, match="alert_rate"):
        MonitorConfig(alert_rate=0.0)


# --------------------------------------------------------------------------- side effects, spec


def test_side_effects_paired_against_the_unmodified_model(planted, gate, o):
    pols = {"none": make_policy("none", LAYER), "zero": make_policy("zero", LAYER),
            "gated": make_policy("zero", LAYER, gate=gate)}
    res = side_effects(planted, "capitals", pols, EffectsConfig(n=12, n_windows=4), tasks=["past"])
    sets = res.labels["set"]
    assert sets == ["capitals", "capitals:extractive", "past", "lm_loss"]
    none = res.labels["policy"].index("none")
    assert float(res.tensors["delta"][none].abs().max()) == 0.0  # no-op: nothing changes, paired
    zero = res.labels["policy"].index("zero")
    assert float(res.tensors["delta"][zero, sets.index("capitals")]) < -0.5
    assert float(res.tensors["delta_hi"][zero, sets.index("capitals")]) < 0
    with pytest.raises(la.LensarithError, match="unknown"):
        side_effects(planted, "capitalz", pols)


def test_spec_replay_equals_the_live_hook(planted, caps, o, gate, monitor, tmp_path):
    mon, _ = monitor
    for pol in (make_policy("zero", LAYER), make_policy("mean", LAYER, mean=mlp_means(planted, caps, 16)[0][LAYER]),
                make_policy("subtract_o", LAYER, o=o, scale=1.5), make_policy("subtract_o", LAYER, o=o, gate=gate),
                make_policy("zero", LAYER, gate=MonitorGate(mon)), make_policy("none", LAYER)):
        spec = export_spec(planted, pol, monitor=mon)
        spec = json.loads(json.dumps(spec))  # through JSON, as an engine would read it
        live, _ = policy_logits(planted, caps, pol)
        assert torch.equal(replay_spec(planted, spec, caps), live), pol.operation
    assert export_spec(planted, make_policy("zero", LAYER))["intervention"]["operation"] == "scale"
    spec["model"]["config_hash"] = "deadbeef"
    with pytest.raises(la.LensarithError, match="config hash"):
        spec_policy(planted, spec)


# --------------------------------------------------------------------------- the loop, the page, the command


def _tiny_config() -> GuardConfig:
    return GuardConfig(locate=LocateConfig(n=12, n_contexts=4), monitor=MonitorConfig(n=100, formats=("one_shot", "zero_shot")),
                       effects=EffectsConfig(n=8, n_windows=3, tasks=("past",)), n_gate=6, gate_relations=("past", "singular_plural"),
                       gen_prompts=2, gen_tokens=2, gen_repeats=1)


def test_guard_loop_saves_loads_and_renders(planted, tmp_path):
    res = guard(planted, "past", _tiny_config())
    assert res.summary["layer"] == res.locate.chosen_layer
    assert {r["condition"] for r in res.overhead} >= {"plain", "monitor", "zero", "subtract_o+relation_gate"}
    res.save(tmp_path / "g")
    back = GuardResult.load(tmp_path / "g")
    assert back.summary["verdicts"] == res.summary["verdicts"]
    assert torch.equal(back.effects.tensors["delta"], res.effects.tensors["delta"])
    page = guard_report(back, tmp_path / "g.html")
    for text in ("Which FFN", "ROC", "Hand-off spec", "Not run here", "Criteria"):
        assert text in page
    assert "http://" not in page and "https://" not in page


def test_guard_monitor_failure_is_stated_not_hidden(planted):
    cfg = _tiny_config()
    import dataclasses

    cfg = dataclasses.replace(cfg, monitor=MonitorConfig(n=20, formats=("one_shot",)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = guard(planted, "capitals", cfg)
    assert res.monitor is None and "needs both" in res.summary["notes"]["monitor"]


def test_gate_that_never_fires_warns(planted):
    import dataclasses

    cfg = dataclasses.replace(_tiny_config(), layer=0, gate_relations=("past",),
                              monitor=MonitorConfig(n=20, formats=("one_shot",)))
    # at MLP 0 the capitals and past centroids are built from the same prompts' last tokens; force a gate that
    # points at another relation by building the loop for capitals with a gate the target can never win
    from lensarith.guard import _loop

    real = _loop.relation_gate

    def never(model, layer, target, others, **kw):
        g = real(model, layer, target, others, **kw)
        return type(g)(g.layer, torch.stack([-g.centroids[1] * 1e3, g.centroids[1]]), g.names, g.target)

    _loop.relation_gate = never
    try:
        with pytest.warns(la.LensarithWarning, match="never fired"):
            res = guard(planted, "capitals", cfg)
    finally:
        _loop.relation_gate = real
    assert any(k.startswith("gate:") for k in res.summary["notes"])


def test_bad_task_for_the_loop(planted):
    with pytest.raises(la.LensarithError, match="unknown"):
        guard(planted, "nope")


@pytest.mark.slow
def test_cli_guard_small(tmp_path):
    from lensarith.cli import main

    assert main(["guard", "--model", "organism-planted", "--task", "capitals", "--small", "--quiet", "--out",
                 str(tmp_path)]) == 0
    folder = tmp_path / "guard-capitals"
    page = (folder / "guard-capitals.html").read_text()
    assert "Which FFN" in page and "data:image/png;base64" in page
    summary = json.loads((folder / "guard-capitals.json").read_text())
    assert summary["layer"] == LAYER
    assert GuardResult.load(folder / "result").locate.chosen_layer == LAYER
    with pytest.raises(SystemExit) as exc:
        main(["guard", "--model", "organism-planted", "--task", "nope", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_policies_on_the_nnsight_backend_match_transformerlens(planted, caps, gate):
    if importlib.util.find_spec("nnsight") is None and not os.environ.get("LENSARITH_REQUIRE_NNSIGHT"):
        pytest.skip("nnsight is not installed (the nnsight extra)")
    nn = la.load_model("organism-planted", backend="nnsight")
    for pol in (None, make_policy("zero", LAYER), make_policy("zero", LAYER, gate=gate)):
        a, fa = policy_logits(planted, caps[0:6], pol)
        b, fb = policy_logits(nn, caps[0:6], pol)
        assert torch.allclose(a, b, atol=1e-4) and torch.equal(fa, fb)
        gen = generate(nn, caps[0:6], pol, max_new_tokens=3)
        assert torch.equal(gen.tokens[:, 0], b.argmax(-1))
        assert torch.equal(gen.tokens, generate(planted, caps[0:6], pol, max_new_tokens=3).tokens)
