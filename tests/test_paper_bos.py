"""``reproduce``'s tokenization: the paper's (no BOS) on hub models, the model's own on lensarith models;
``model.cfg.default_prepend_bos`` is restored after the run, also when it fails; the summary records it."""

import importlib
import types

import pytest

import lensarith as la
from lensarith import cli
from lensarith.core import tokenize
from lensarith.paper.tokenization import bos_convention, bos_plan, is_hub_model

rep = importlib.import_module("lensarith.paper.reproduce")  # the module (the package re-exports the function)
fig3_step = importlib.import_module("lensarith.paper.steps._fig3")  # Fig 3's step, the run's first


def fake(original_architecture=None, default_prepend_bos=True):
    return types.SimpleNamespace(cfg=types.SimpleNamespace(original_architecture=original_architecture,
                                                           default_prepend_bos=default_prepend_bos))


def test_plan_follows_the_paper_on_hub_models_and_the_model_elsewhere():
    hub = fake("GPT2LMHeadModel", True)  # what HookedTransformer.from_pretrained("gpt2-medium") carries
    assert is_hub_model(hub) and not is_hub_model(fake())
    assert bos_plan(hub, None)["prepend_bos"] is False and "tokenizer.encode" in bos_plan(hub, None)["source"]
    assert bos_plan(hub, True) == {"prepend_bos": True, "model_default": True, "hub_model": True,
                                   "source": bos_plan(hub, True)["source"]}
    organism = fake(None, True)
    assert bos_plan(organism, None)["prepend_bos"] is True and "own default" in bos_plan(organism, None)["source"]
    assert bos_plan(fake(None, False), None)["prepend_bos"] is False
    assert bos_plan(organism, False)["prepend_bos"] is False


def test_convention_is_restored_on_exit_and_on_error():
    m = fake("GPT2LMHeadModel", True)
    with bos_convention(m, False):
        assert m.cfg.default_prepend_bos is False
    assert m.cfg.default_prepend_bos is True
    with pytest.raises(RuntimeError, match="boom"):
        with bos_convention(m, False):
            raise RuntimeError("boom")
    assert m.cfg.default_prepend_bos is True


@pytest.fixture()
def hub_like():
    """The tiny model dressed as a hub model (TransformerLens records the converted architecture)."""
    model = la.tiny_model(n_layers=4, d_model=64)
    model.cfg.original_architecture = "GPT2LMHeadModel"
    model.cfg.default_prepend_bos = True  # TransformerLens's default for GPT-2
    return model


def test_reproduce_tokenizes_without_bos_on_hub_models_and_restores(hub_like, tmp_path, monkeypatch):
    seen = {}
    real = fig3_step.task_curves

    def spy(model, *a, **k):
        seen["bos"] = model.cfg.default_prepend_bos
        seen["n_tokens"] = len(tokenize(model, ["Q"]).tokens[0])
        raise RuntimeError("stop after looking")

    monkeypatch.setattr(fig3_step, "task_curves", spy)
    with pytest.raises(RuntimeError, match="stop after looking"):
        rep.reproduce(hub_like, tmp_path / "out", rep.ReproduceConfig.small_run())
    assert seen == {"bos": False, "n_tokens": 1}  # no BOS during the run
    assert hub_like.cfg.default_prepend_bos is True  # restored after the failed run
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(fig3_step, "task_curves", real)


def test_cli_flag_asks_for_bos(tmp_path, monkeypatch, capsys):
    got = {}

    def fake_reproduce(model, out, config, **kw):
        got["config"] = config
        return {"tokenization": rep.bos_plan(model, config.prepend_bos), "figures": {}, "n_layers": 4, "model": "tiny",
                "timings_s": {"total": 0.0}}

    monkeypatch.setattr(rep, "reproduce", fake_reproduce)
    assert cli.main(["reproduce", "--model", "tiny", "--small", "--quiet", "--prepend-bos", "--out", str(tmp_path)]) == 0
    assert got["config"].prepend_bos is True and "tokenization: BOS prepended" in capsys.readouterr().out
    assert cli.main(["reproduce", "--model", "tiny", "--small", "--quiet", "--out", str(tmp_path)]) == 0
    assert got["config"].prepend_bos is None
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--help"])
    assert "--prepend-bos" in capsys.readouterr().out


@pytest.mark.slow
def test_small_reproduce_on_a_hub_like_model_records_no_bos(hub_like, tmp_path):
    summary = rep.reproduce(hub_like, tmp_path / "out", rep.ReproduceConfig.small_run(n=8, patching_pairs=0))
    assert summary["tokenization"]["prepend_bos"] is False and summary["tokenization"]["model_default"] is True
    assert hub_like.cfg.default_prepend_bos is True
    # the DLA extra tokenizes the capitals source prompt with the run's convention: no BOS token first
    tokens = summary["figures"]["extras"]["dla_by_position"]["tokens"]
    assert tokens[0].strip() == "Q" and "<bos>" not in tokens
