"""Every bad input in ``tests/bad_inputs.py`` gives a clear error (type and message) or the warned report.

The table runs once in a subprocess, as a user would call lensarith: under pytest the
jaxtyping/beartype hook would reject wrongly-typed arguments before lensarith's own checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs import CASES, Case, Env, run_case

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, list[str]]:
    out = tmp_path_factory.mktemp("bad") / "outcomes.json"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    proc = subprocess.run([sys.executable, str(HERE / "bad_inputs.py"), "--json", str(out)], capture_output=True,
                          text=True, timeout=900, env=env, cwd=HERE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_table_is_wide():
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES)
    assert sum(c.call.__qualname__.startswith("cli_call") for c in CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, outcomes):
    outcome, detail = outcomes[case.name]
    assert outcome == "clear", f"{outcome}: {detail}"


def test_the_classifier_can_fail():
    import lensarith as la

    env = Env()
    assert run_case(Case("silent", lambda e: 1, "x"), env)[0] == "silent"
    assert run_case(Case("traceback", lambda e: 1 / 0, "x"), env)[0] == "traceback"
    assert run_case(Case("unclear", lambda e: la.build_prompts("nope"), "some other words"), env)[0] == "unclear"


# --------------------------------------------------------------------------- what the new guards let through


def test_the_new_part_of_the_table_is_wide():
    from bad_inputs import CASES_SINCE_FIRST_AUDIT

    assert len(CASES_SINCE_FIRST_AUDIT) >= 110
    assert sum(c.call.__qualname__.startswith("cli_call") or "cli_call" in c.name or c.name.startswith("cli ")
               for c in CASES_SINCE_FIRST_AUDIT) >= 15


@pytest.fixture(scope="module")
def tiny():
    import lensarith as la

    return la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=0)


def _pairs(model):
    import lensarith as la

    return la.pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=40), n=2)


@pytest.mark.parametrize("method", ["atp", "relp"])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_attribution_runs_under_a_callers_no_grad(tiny, method, mode):
    import torch

    import lensarith as la

    pairs = _pairs(tiny)
    want = la.attribution_patch(tiny, pairs, site="mlp_out", method=method).values
    with getattr(torch, mode)():
        got = la.attribution_patch(tiny, pairs, site="mlp_out", method=method).values
        assert not torch.is_grad_enabled()  # the caller's mode is back
    assert torch.equal(got, want)


def test_a_folder_without_tokenizer_config_loads_and_tokenizes_as_the_bundled_model(tmp_path):
    import shutil

    import lensarith as la
    from lensarith._paths import data_dir

    shutil.copytree(data_dir() / "organism", tmp_path / "m")
    (tmp_path / "m" / "tokenizer_config.json").unlink()
    copy, bundled = la.load_model(str(tmp_path / "m")), la.load_model("organism")
    text = "Q: What is the capital of Poland?\nA:"
    assert copy.to_tokens(text).tolist() == bundled.to_tokens(text).tolist()


def test_a_save_replaces_its_own_earlier_save_and_keeps_a_refused_target(tmp_path):
    import torch

    import lensarith as la

    res = la.Result({"x": torch.arange(3.0)}, {"x": ("a",)})
    res.save(tmp_path / "r")
    la.Result({"x": torch.zeros(2)}, {"x": ("a",)}).save(tmp_path / "r")  # its own layout: replaced
    assert la.Result.load(tmp_path / "r")["x"].tolist() == [0.0, 0.0]
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(la.LensarithError, match="exists and is not a folder"):
        res.save(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    (tmp_path / "r" / "mine.txt").write_text("keep me too")
    with pytest.raises(la.LensarithError, match=r"holds files lensarith did not write \(mine.txt\)"):
        res.save(tmp_path / "r")
    assert (tmp_path / "r" / "mine.txt").read_text() == "keep me too"


def test_save_model_replaces_a_model_folder_with_its_card(tmp_path, tiny):
    import lensarith as la

    la.save_model(tiny, tmp_path / "m", extra={"a": 1})
    (tmp_path / "m" / "card.md").write_text("the card")
    la.save_model(tiny, tmp_path / "m")
    assert la.load_model(str(tmp_path / "m")).cfg.d_model == 32


def test_sweep_resolves_negative_layer_keys(tiny):
    import lensarith as la

    caps = list(la.tokenize(tiny, la.build_prompts("capitals", n=30), drop_multi_token=True).examples[:6])
    o = la.extract_o_vector(tiny, caps[:1], layer=1)
    a = la.vectors.sweep_layers(tiny, {-1: o}, caps[1:])
    b = la.vectors.sweep_layers(tiny, {1: o}, caps[1:])
    assert a.layers == b.layers == [1]
    assert a.tensors["rank"].tolist() == b.tensors["rank"].tolist()


def test_shuffled_prompts_record_whether_labels_moved():
    import lensarith as la

    same = [{"argument": a, "answer": "x"} for a in ("p", "q", "r", "s")]
    out = la.vectors.few_shot_prompts("capitals", n_shots=2, queries=same[:1], demos=same, shuffle_labels=True)
    assert out[0].meta["shuffled"] is False  # every demonstration answers 'x': nothing moved
    out = la.vectors.few_shot_prompts("capitals", n_shots=3, n=2, shuffle_labels=True)
    assert all(e.meta["shuffled"] for e in out)


def test_function_vectors_need_the_effects_of_the_same_weights(tiny):
    import lensarith as la

    eff = la.vectors.head_effects(tiny, "capitals", n_prompts=3, n_shots=2)
    twin = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=7)
    same = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=0)
    assert la.vectors.function_vector(same, eff, n_heads=2).meta["weights"] == eff.meta["weights"]
    with pytest.raises(la.LensarithError, match="effects were measured on another model"):
        la.vectors.function_vector(twin, eff, n_heads=2)


def test_the_nnsight_backend_runs_head_effects_and_vectors_like_transformer_lens():
    import torch

    import lensarith as la

    tl, nn = la.load_model("organism"), la.load_model("organism", backend="nnsight")
    a = la.vectors.head_effects(tl, "capitals", n_prompts=3, n_shots=2)
    b = la.vectors.head_effects(nn, "capitals", n_prompts=3, n_shots=2)
    assert torch.allclose(a.indirect_effect, b.indirect_effect, atol=1e-4)
    ctx = la.transplant_contexts("capitals", n=6, model=tl)
    tv = la.vectors.extract_task_vector(tl, "capitals", 4, n_prompts=3, n_shots=2)
    ra = la.vectors.apply_vector(tl, tv, ctx, mode="replace")
    rb = la.vectors.apply_vector(nn, la.vectors.OVector.from_tensor(tv.vector, layer=4), ctx, site="resid_pre", mode="replace")
    assert ra.rank("vector").tolist() == rb.rank("vector").tolist()


def test_a_metric_with_a_nan_gradient_names_the_site(tiny):
    import torch

    import lensarith as la

    def sqrt_at_zero(logits):
        return torch.sqrt(logits[:, 0] * 0.0)

    with pytest.raises(la.LensarithError, match=r"gradient of the metric is not finite at blocks\.1\.hook_mlp_out"):
        la.attribution_patch(tiny, _pairs(tiny), site="mlp_out", metric=sqrt_at_zero)
    la.attribution_patch(tiny, _pairs(tiny), site="mlp_out", metric=lambda logits: logits[:, 0])  # finite: runs


def test_a_command_replaces_its_own_outputs_but_not_a_file_added_to_them(tmp_path, capsys):
    from lensarith import cli

    argv = ["ablate", "--model", "tiny", "--n", "6", "--steps", "2", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0  # its own outputs: replaced
    (tmp_path / "ablate-capitals" / "my-notes.txt").write_text("keep me")
    assert cli.main(argv) == 2
    assert "holds files lensarith did not write (my-notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "ablate-capitals" / "my-notes.txt").read_text() == "keep me"
