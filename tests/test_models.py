import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lensarith as la
from lensarith.models import cfg_from_json as _cfg_from_json
from lensarith.models import cfg_to_json as _cfg_to_json


def test_word_tokenizer_end_to_end(model):
    toks = model.to_str_tokens("Q: What is the capital of Poland?\nA:")
    assert toks[0] == "<bos>"  # BOS is one special token, not '<', 'bos', '>'
    assert toks[1:] == ["Q", ":", "What", "is", "the", "capital", "of", "Poland", "?", "\n", "A", ":"]
    assert model.to_single_token(" Warsaw") == model.to_single_token("Warsaw")
    assert model.to_tokens("Warsaw", prepend_bos=False).shape == (1, 1)
    assert model.tokenizer.bos_token_id == 1 and model.tokenizer.pad_token_id == 3
    assert model.to_string(model.to_tokens("Poland", prepend_bos=False)[0]) == "Poland"
    unk = model.to_tokens("Zzyzzxq", prepend_bos=False)[0, 0]
    assert int(unk) == model.tokenizer.unk_token_id


def test_save_load_roundtrip(model, tmp_path):
    path = la.save_model(model, tmp_path / "m", extra={"note": "tiny"})
    assert sorted(p.name for p in path.iterdir()) >= ["config.json", "lensarith.json", "model.safetensors", "tokenizer.json"]
    again = la.load_model(path)
    tokens = model.to_tokens("Q: What is the capital of Poland?\nA:")
    torch.testing.assert_close(again(tokens), model(tokens))
    assert again.to_str_tokens("Poland ?") == model.to_str_tokens("Poland ?")
    la.save_model(model, path)  # overwrite in place, atomically
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_config_dtype_roundtrip(model):
    data = _cfg_to_json(model.cfg)
    assert data["dtype"] == "float32"
    json.dumps(data)
    cfg = _cfg_from_json(data)
    assert cfg.dtype == torch.float32 and cfg.n_layers == model.cfg.n_layers


def test_hub_name_fails_fast_offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("lensarith.models._hub._probe_hub", lambda official, timeout=1.5: "the hub cannot be reached")
    monkeypatch.setattr("lensarith.models._hub._cache_state", lambda official, cache_dir=None: ("absent", "cache"))
    start = time.perf_counter()
    with pytest.raises(la.ModelNotAvailableError, match=r"cannot load 'gpt2-medium'.*organism"):
        la.load_model("gpt2-medium")
    assert time.perf_counter() - start < 10


def test_hub_name_fails_fast_for_real():
    """No monkeypatching: on a machine without network this must still fail within 2 s (timed
    after importing TransformerLens, whose import alone can take longer on a busy machine)."""
    code = ("import time, lensarith as la, transformer_lens.loading_from_pretrained\nt=time.perf_counter()\n"
            "try:\n la.load_model('gpt2')\nexcept la.ModelNotAvailableError as e: print('ERR', time.perf_counter()-t)\n"
            "else: print('LOADED', time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    kind, seconds = out.split()[-2:]
    if kind == "ERR":
        assert float(seconds) < 2


def test_unknown_name_and_missing_directory():
    with pytest.raises(la.ModelNotAvailableError, match="neither a local directory, 'organism', nor a TransformerLens hub name"):
        la.load_model("not-a-model-xyz")
    with pytest.raises(la.ModelNotAvailableError, match="does not exist"):
        la.load_model("./no/such/dir")


def test_directory_in_wrong_format(tmp_path):
    with pytest.raises(la.ModelNotAvailableError, match="not in lensarith's format"):
        la.load_model(tmp_path)


def test_organism_not_bundled_message(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSARITH_DATA", str(tmp_path))
    with pytest.raises(la.ModelNotAvailableError, match="organism is not bundled"):
        la.load_model("organism")


def test_tiny_model_is_deterministic_and_randomises_ln():
    a, b = la.tiny_model(seed=3), la.tiny_model(seed=3)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    assert not torch.allclose(a.ln_final.w, torch.ones_like(a.ln_final.w))


# --------------------------------------------------------------------------- broken local directories


@pytest.fixture(scope="module")
def saved(tmp_path_factory, model):
    """A tiny model in lensarith's format; tests copy it and break the copy."""
    return la.save_model(model, tmp_path_factory.mktemp("saved") / "tiny")


def broken_copy(saved, tmp_path, name="broken"):
    import shutil

    return Path(shutil.copytree(saved, tmp_path / name))


def fails_with(path, *fragments, **kwargs):
    with pytest.raises(la.ModelNotAvailableError) as info:
        la.load_model(path, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message and info.value.__cause__ is None
    return message


def _set_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is _DELETE:
            del cfg[key]
        else:
            cfg[key] = value
    (path / "config.json").write_text(json.dumps(cfg))


_DELETE = object()


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_directory_missing_a_file(saved, tmp_path, missing):
    path = broken_copy(saved, tmp_path)
    (path / missing).unlink()
    fails_with(path, "not in lensarith's format", f"lacks {missing}", "lensarith.save_model")


@pytest.mark.parametrize("content, fragment", [
    (lambda text: text[: len(text) // 2], "is not valid JSON"),  # truncated
    (lambda text: "", "is not valid JSON"),
    (lambda text: text.replace(":", "=", 3), "is not valid JSON"),  # corrupted
    (lambda text: "[1, 2]", "holds a JSON list"),
])
def test_config_truncated_or_corrupted(saved, tmp_path, content, fragment):
    path = broken_copy(saved, tmp_path)
    (path / "config.json").write_text(content((path / "config.json").read_text()))
    fails_with(path, str(path / "config.json"), fragment, "lensarith.save_model")


def test_config_not_text(saved, tmp_path):
    path = broken_copy(saved, tmp_path)
    (path / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    fails_with(path, "config.json", "not UTF-8")


@pytest.mark.parametrize("changes, fragments", [
    ({"n_layers": "two"}, ["n_layers is 'two' (str)", "a positive int"]),
    ({"n_layers": 0}, ["n_layers is 0", "a positive int"]),
    ({"d_model": 32.5}, ["d_model is 32.5 (float)"]),
    ({"n_heads": True}, ["n_heads is True (bool)"]),
    ({"d_mlp": -4}, ["d_mlp is -4", "a positive int or null"]),
    ({"normalization_type": "LayerNorm"}, ["normalization_type is 'LayerNorm'", "'LN', 'LNPre', 'RMS', 'RMSPre'"]),
    ({"positional_embedding_type": "learned"}, ["positional_embedding_type is 'learned'", "'rotary'"]),
    ({"act_fn": "swish"}, ["act_fn is 'swish'", "'gelu_new'"]),
    ({"dtype": "float8"}, ["dtype is 'float8'", "'float32'"]),
    ({"use_attn_result": "yes"}, ["use_attn_result is 'yes' (str)", "of type bool"]),
    ({"eps": "small"}, ["eps is 'small'", "of type float"]),
    ({"d_head": _DELETE}, ["lacks d_head"]),
])
def test_config_with_wrong_values(saved, tmp_path, changes, fragments):
    path = broken_copy(saved, tmp_path)
    _set_config(path, **changes)
    fails_with(path, str(path / "config.json"), *fragments)


def test_weights_truncated(saved, tmp_path):
    path = broken_copy(saved, tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    fails_with(path, str(path / "model.safetensors"), "truncated or corrupted")


@pytest.mark.parametrize("corrupt", [
    lambda data: b"",
    lambda data: b"\xff" * 16 + data[16:],  # header length and start of the header
    lambda data: data[:8] + b"x" + data[9:],  # header JSON
])
def test_weights_corrupted(saved, tmp_path, corrupt):
    path = broken_copy(saved, tmp_path)
    (path / "model.safetensors").write_bytes(corrupt((path / "model.safetensors").read_bytes()))
    fails_with(path, str(path / "model.safetensors"), "cannot be read", "truncated or corrupted")


def test_weights_of_another_width(saved, tmp_path):
    from safetensors.torch import save_file

    path = broken_copy(saved, tmp_path)
    wide = la.tiny_model(n_layers=2, d_model=48, n_heads=4)
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(path / "model.safetensors"))
    fails_with(path, str(path / "model.safetensors"), "does not fit", "another shape", "'embed.W_E' is (",
               ", 48) in the file", ", 32) for the config")


@pytest.mark.parametrize("edit, fragment", [
    (lambda state: state.pop("unembed.W_U"), "1 tensor(s) the config needs are missing ('unembed.W_U')"),
    (lambda state: state.update({"blocks.9.mlp.W_in": state["blocks.0.mlp.W_in"].clone()}),
     "1 tensor(s) have no place in the model ('blocks.9.mlp.W_in')"),
])
def test_weights_with_missing_or_extra_keys(saved, tmp_path, edit, fragment):
    from safetensors.torch import load_file, save_file

    path = broken_copy(saved, tmp_path)
    state = load_file(str(path / "model.safetensors"))
    edit(state)
    save_file(state, str(path / "model.safetensors"))
    fails_with(path, "does not fit", fragment)


@pytest.mark.parametrize("file, content, fragment", [
    ("tokenizer.json", '{"version": "1.0", "model": ', "is not valid JSON"),
    ("tokenizer.json", '{"version": "1.0", "model": {"type": "NoSuchModel"}}', "cannot be loaded"),
    ("tokenizer.json", "[]", "holds a JSON list"),
    ("tokenizer_config.json", "{not json", "is not valid JSON"),
])
def test_unreadable_tokenizer(saved, tmp_path, file, content, fragment):
    path = broken_copy(saved, tmp_path)
    (path / file).write_text(content)
    message = fails_with(path, fragment, "lensarith.save_model")
    assert file in message


def test_tokenizer_larger_than_the_vocabulary(saved, tmp_path):
    small = la.save_model(la.tiny_model(n_layers=1, d_model=8, n_heads=2, vocab=["a", "b"]), tmp_path / "small")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (small / name).write_bytes((saved / name).read_bytes())
    fails_with(small, "tokens but", "d_vocab=6")


def _unchecked_load_model():
    """``load_model`` without the test suite's jaxtyping/beartype wrapper (pyproject's
    ``--jaxtyping-packages``), which rejects a wrong type before lensarith's own check can run:
    this is the function users call."""
    import inspect

    return inspect.unwrap(la.load_model)


@pytest.mark.parametrize("bad", [123, None, "", "   ", b"gpt2", 1.5, ["gpt2"]])
def test_name_or_path_of_the_wrong_type_or_empty(bad):
    load_model = _unchecked_load_model() if not isinstance(bad, str) else la.load_model
    with pytest.raises(la.LensarithError) as info:
        load_model(bad)
    message = str(info.value)
    assert "name_or_path" in message and repr(bad) in message
    assert "'organism'" in message and "lensarith.save_model" in message


def test_name_or_path_that_is_a_file(saved):
    fails_with(saved / "config.json", "is a file, not a model directory")


@pytest.mark.parametrize("device, fragment", [
    (0, "got 0 (int)"),
    (["cpu"], "got ['cpu'] (list)"),
    ("cpuu", "got 'cpuu', which torch does not know"),
])
def test_device_of_the_wrong_type_or_value(saved, device, fragment):
    load_model = _unchecked_load_model() if not isinstance(device, str) else la.load_model
    with pytest.raises(la.LensarithError) as info:
        load_model(saved, device=device)
    assert "device must be None, a str such as 'cpu'" in str(info.value) and fragment in str(info.value)


def test_device_that_is_not_there(saved):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(la.LensarithError, match="CUDA is not available on this machine; use device='cpu'"):
        la.load_model(saved, device="cuda")


def test_device_as_torch_device(saved):
    again = _unchecked_load_model()(saved, device=torch.device("cpu"))
    assert again.cfg.device == "cpu" and again.W_E.device.type == "cpu"


# --------------------------------------------------------------------------- provenance


def test_local_models_are_named_after_their_directory(model, saved, tmp_path):
    from lensarith.core.result import provenance

    assert json.loads((saved / "config.json").read_text())["model_name"] == "custom"
    again = la.load_model(broken_copy(saved, tmp_path, "my-model"))
    assert again.cfg.model_name == "my-model" and provenance(again)["model"] == "my-model"
    named = broken_copy(saved, tmp_path, "other-folder")
    _set_config(named, model_name="tiny-v2")
    assert la.load_model(named).cfg.model_name == "tiny-v2"  # a real name is kept


def test_organism_provenance():
    from lensarith.core.result import provenance

    organism = la.load_model("organism")
    assert organism.cfg.model_name == "organism" and provenance(organism)["model"] == "organism"


# --------------------------------------------------------------------------- no leftovers


def _tok_dirs():
    import tempfile

    return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("lensarith-tok-")}


def test_tiny_models_leave_nothing_in_the_temp_directory(tmp_path):
    before = _tok_dirs()
    models = [la.tiny_model(n_layers=1, d_model=8, n_heads=2, seed=s) for s in range(3)]
    assert _tok_dirs() - before == set()
    m = models[0]
    assert not Path(m.tokenizer.name_or_path).exists()  # the folder it was built in is gone...
    assert m.to_str_tokens("Q: What is the capital of Poland?") == ["<bos>", "Q", ":", "What", "is", "the",
                                                                      "capital", "of", "Poland", "?"]
    assert m.to_tokens("Poland Warsaw", prepend_bos=False).shape == (1, 2)  # ...and it still works
    m.tokenizer.save_pretrained(str(tmp_path / "tok"))
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    again = la.load_model(la.save_model(m, tmp_path / "m"))
    assert again.to_str_tokens("Poland ?") == m.to_str_tokens("Poland ?")
    assert _tok_dirs() - before == set()


def test_new_hooked_transformer_takes_a_tokenizer_whose_folder_is_gone():
    from lensarith.models import new_hooked_transformer

    before = _tok_dirs()
    tiny = la.tiny_model(n_layers=1, d_model=8, n_heads=2)
    other = new_hooked_transformer(tiny.cfg, tiny.tokenizer)
    assert other.to_str_tokens("Poland Warsaw") == ["<bos>", "Poland", "Warsaw"]
    assert _tok_dirs() - before == set()


def test_word_tokenizer_folder_is_removed_at_exit(tmp_path):
    """``word_tokenizer(vocab)`` keeps its folder while the interpreter lives (TransformerLens
    reloads by path) and removes it at exit."""
    import os

    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    code = ("import os, tempfile\nfrom lensarith.models import word_tokenizer\n"
            "tok = word_tokenizer(['Poland'])\n"
            "assert tok.name_or_path.startswith(tempfile.gettempdir()), tok.name_or_path\n"
            "assert os.path.isfile(os.path.join(tok.name_or_path, 'tokenizer.json'))\n"
            "print(sum(n.startswith('lensarith-tok-') for n in os.listdir(tempfile.gettempdir())))\n")
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1"  # the folder existed while the interpreter ran
    assert [p.name for p in tmp.iterdir() if p.name.startswith("lensarith-tok-")] == []
